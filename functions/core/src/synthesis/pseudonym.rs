//! Pseudonymisation before anything reaches an external model: internal host names, users,
//! e-mail addresses, internal IPs and internal domains become stable per-case tokens (HOST-1,
//! USER-1, EMAIL-1, IP-1, DOMAIN-1), everywhere they appear, command lines included. The answer is
//! re-identified with the same table.

use crate::domain::Case;
use crate::domain::IndicatorKind;
use crate::domain::DEFANGED_SEPARATORS;
use crate::text::{fold, replace_ignore_case};

#[derive(Clone, Debug, Default)]
pub struct Pseudonyms {
    /// (real, token), longest real value first so that a longer name is replaced before a part of it.
    pairs: Vec<(String, String)>,
}

impl Pseudonyms {
    pub fn for_case(case: &Case) -> Pseudonyms {
        let mut counters = [0usize; 5];
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut add = |real: &str, slot: usize, prefix: &str, pairs: &mut Vec<(String, String)>| {
            let real = real.trim();
            if real.len() < 3 || pairs.iter().any(|(r, _)| r.eq_ignore_ascii_case(real)) {
                return;
            }
            counters[slot] += 1;
            pairs.push((real.to_string(), format!("{prefix}-{}", counters[slot])));
        };
        let mut hosts: Vec<String> = Vec::new();
        for ind in case.indicators.iter().filter(|i| i.internal) {
            match ind.kind {
                IndicatorKind::Hostname => {
                    add(&ind.value, 0, "HOST", &mut pairs);
                    hosts.push(ind.value.clone());
                }
                IndicatorKind::User => {
                    add(&ind.value, 1, "USER", &mut pairs);
                    // `DOMAIN\user` also appears bare (profile paths, e-mail local parts).
                    if let Some((_, bare)) = ind.value.rsplit_once('\\') {
                        let token = pairs.iter().find(|(r, _)| r == &ind.value).map(|(_, t)| t.clone());
                        if let Some(t) = token {
                            if bare.len() >= 3 && !pairs.iter().any(|(r, _)| r.eq_ignore_ascii_case(bare)) {
                                pairs.push((bare.to_string(), t));
                            }
                        }
                    }
                }
                IndicatorKind::Email => add(&ind.value, 2, "EMAIL", &mut pairs),
                IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => add(&ind.value, 3, "IP", &mut pairs),
                IndicatorKind::Domain => add(&ind.value, 4, "DOMAIN", &mut pairs),
                IndicatorKind::Url | IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 | IndicatorKind::Process => {}
            }
        }
        // The short form of fully qualified internal host names (`fin-ws-0231.corp.example`).
        for h in hosts {
            if let Some((short, _)) = h.split_once('.') {
                let token = pairs.iter().find(|(r, _)| *r == h).map(|(_, t)| t.clone());
                if let Some(t) = token {
                    if short.len() >= 3 && !pairs.iter().any(|(r, _)| r.eq_ignore_ascii_case(short)) {
                        pairs.push((short.to_string(), t));
                    }
                }
            }
        }
        for e in &case.endpoints {
            if let Some(h) = &e.host_name {
                add(h, 0, "HOST", &mut pairs);
            }
        }
        pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Pseudonyms { pairs }
    }

    /// Learns internal values that appear only in free text (an owner's e-mail in CMDB facts, an
    /// internal address in a command line): internal IPs, internal domains and e-mails whose
    /// domain is internal or whose local part is a known user get tokens too.
    pub fn learn(&mut self, text: &str, names: &crate::domain::InternalNames) {
        let users = self.user_names();
        self.learn_values(text, names, &users);
        self.sort();
    }

    /// The bare names of the case's users (`j.doe` of `CORP\j.doe`), lower case.
    fn user_names(&self) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(_, t)| t.starts_with("USER-"))
            .map(|(r, _)| r.rsplit_once('\\').map_or(r.as_str(), |(_, u)| u).to_ascii_lowercase())
            .collect()
    }

    /// [`Pseudonyms::learn`] without restoring the longest-first order (the caller sorts once).
    fn learn_values(&mut self, text: &str, names: &crate::domain::InternalNames, users: &[String]) {
        // An address, a domain or an e-mail needs a dot or a colon, or a defanged `[dot]`.
        if !text.contains(['.', ':']) && !text.contains("dot") && !text.contains("DOT") {
            return;
        }
        let mut c = crate::extract::Collector::new(names);
        c.scan_text(text, "pack");
        let (found, _) = c.finish();
        for ind in found {
            if self.token_of(&ind.value).is_some() {
                continue;
            }
            let (prefix, hide) = match ind.kind {
                IndicatorKind::Email => {
                    let local = ind.value.split('@').next().unwrap_or("");
                    ("EMAIL", ind.internal || users.iter().any(|u| u == local))
                }
                IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => ("IP", ind.internal),
                IndicatorKind::Domain => ("DOMAIN", ind.internal),
                _ => continue,
            };
            if hide && ind.value.len() >= 3 {
                self.push_next(prefix, ind.value);
            }
        }
    }

    /// Adds `real` under the next free token of its kind.
    fn push_next(&mut self, prefix: &str, real: String) {
        let n = self.pairs.iter().filter(|(_, t)| t.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('-'))).count() + 1;
        self.pairs.push((real, format!("{prefix}-{n}")));
    }

    /// Longest real value first (stable: equal lengths keep the order they were learned in).
    fn sort(&mut self) {
        self.pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }

    /// Learns the identifiers free text carries without an extracted indicator: UNC servers,
    /// `DOMAIN\user` and profile-path accounts, SIDs, addresses cut by truncation, and names under
    /// an internal domain whatever their top-level domain (`dc01.corp.local`).
    pub fn learn_identifiers(&mut self, text: &str, names: &crate::domain::InternalNames) {
        self.learn_identifier_values(text, names);
        self.sort();
    }

    /// [`Pseudonyms::learn_identifiers`] without restoring the longest-first order.
    fn learn_identifier_values(&mut self, text: &str, names: &crate::domain::InternalNames) {
        use crate::redact::Identifier;
        let mut found: Vec<(&str, String)> = crate::redact::identifiers(text)
            .into_iter()
            .map(|(kind, value)| {
                let prefix = match kind {
                    Identifier::Host => "HOST",
                    Identifier::User => "USER",
                    Identifier::Sid => "SID",
                    Identifier::CutEmail => "EMAIL",
                };
                (prefix, value)
            })
            .collect();
        let lower = text.to_ascii_lowercase();
        for suffix in names.all_suffixes() {
            let suffix = format!(".{suffix}");
            let mut from = 0;
            while let Some(i) = lower[from..].find(&suffix) {
                let end = from + i + suffix.len();
                let start = lower[..from + i].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-')).map_or(0, |p| p + 1);
                let boundary_after = lower[end..].chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'));
                if boundary_after && start < end {
                    let name = text[start..end].trim_start_matches('.');
                    if name.len() > suffix.len() {
                        found.push(("HOST", name.to_string()));
                    }
                }
                from = end;
            }
        }
        for (prefix, value) in found {
            if value.len() < 3 || self.token_of(&value).is_some() {
                continue;
            }
            self.push_next(prefix, value);
        }
    }

    /// Masks every string of a JSON value in place, before it is serialised (so escaping cannot
    /// hide a value from the table): credentials redacted, identifiers learned, then every known
    /// value replaced by its token. Truncated text was cut after collect's credential redaction,
    /// and cut addresses are caught as such. A string seen before teaches nothing new: each
    /// distinct one is read once.
    pub fn mask_json(&mut self, value: &mut serde_json::Value, names: &crate::domain::InternalNames) {
        fn strings(v: &mut serde_json::Value, f: &mut dyn FnMut(&mut String)) {
            match v {
                serde_json::Value::String(s) => f(s),
                serde_json::Value::Array(items) => items.iter_mut().for_each(|i| strings(i, f)),
                serde_json::Value::Object(map) => map.values_mut().for_each(|i| strings(i, f)),
                _ => {}
            }
        }
        // Each distinct string, as found, to its redacted form.
        let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        // Users learned from one string count for the e-mails of the next.
        let (mut users, mut known) = (self.user_names(), self.pairs.len());
        strings(value, &mut |s: &mut String| {
            if let Some(redacted) = seen.get(s.as_str()) {
                s.clone_from(redacted);
                return;
            }
            let redacted = crate::redact::credentials(s);
            if self.pairs.len() != known {
                (users, known) = (self.user_names(), self.pairs.len());
            }
            self.learn_values(&redacted, names, &users);
            self.learn_identifier_values(&redacted, names);
            seen.insert(std::mem::replace(s, redacted.clone()), redacted);
        });
        self.sort();
        let needles = self.needles();
        strings(value, &mut |s: &mut String| {
            if let Some(hidden) = self.hide_with(&needles, s) {
                *s = hidden;
            }
        });
    }

    /// Replaces every internal value (case-insensitive) with its token.
    pub fn hide(&self, text: &str) -> String {
        self.hide_with(&self.needles(), text).unwrap_or_else(|| text.to_string())
    }

    /// The real values folded (`text::fold`), in the table's order.
    fn needles(&self) -> Vec<String> {
        self.pairs.iter().map(|(real, _)| fold(real)).collect()
    }

    /// `text` with every real value replaced, longest first, or `None` when it holds none. In
    /// ASCII text each value is first looked for in one lower-cased copy, and only one found is
    /// replaced (elsewhere lower-casing can change lengths: every value is tried).
    fn hide_with(&self, needles: &[String], text: &str) -> Option<String> {
        let mut out: Option<String> = None;
        let ascii = text.is_ascii();
        let mut lower = if ascii { text.to_ascii_lowercase() } else { String::new() };
        for ((real, token), needle) in self.pairs.iter().zip(needles) {
            if ascii && !lower.contains(needle.as_str()) {
                continue;
            }
            let replaced = replace_ignore_case(out.as_deref().unwrap_or(text), real, token);
            if ascii {
                lower = replaced.to_ascii_lowercase();
            }
            out = Some(replaced);
        }
        // A value written defanged (`10[.]20[.]31[.]46`) is learned refanged: find it that way too.
        match self.hide_defanged(out.as_deref().unwrap_or(text)) {
            Some(hidden) => Some(hidden),
            None => out,
        }
    }

    /// `text` with every real value written in defanged notation replaced, or `None` when it has
    /// none: each value is looked for in a refanged copy and the span it came from replaced.
    fn hide_defanged(&self, text: &str) -> Option<String> {
        if !DEFANGED_SEPARATORS.iter().any(|(marker, _)| text.contains(marker)) {
            return None;
        }
        let mut current = text.to_string();
        let mut changed = false;
        for (real, token) in &self.pairs {
            let needle = real.to_ascii_lowercase();
            let (plain, origin) = refanged_with_origin(&current);
            let plain = plain.to_ascii_lowercase();
            let spans: Vec<(usize, usize)> = plain.match_indices(needle.as_str()).map(|(i, m)| (origin[i], origin[i + m.len()])).collect();
            if spans.is_empty() {
                continue;
            }
            let mut next = String::with_capacity(current.len());
            let mut last = 0;
            for (start, end) in spans {
                next.push_str(&current[last..start]);
                next.push_str(token);
                last = end;
            }
            next.push_str(&current[last..]);
            current = next;
            changed = true;
        }
        changed.then_some(current)
    }

    /// Puts the real values back. Longest token first, so HOST-12 is not read as HOST-1.
    pub fn reveal(&self, text: &str) -> String {
        let mut by_token: Vec<(&str, &str)> = Vec::new();
        for (real, token) in &self.pairs {
            // The first real value listed for a token is its canonical form.
            if !by_token.iter().any(|(t, _)| t == token) {
                by_token.push((token.as_str(), real.as_str()));
            }
        }
        by_token.sort_by_key(|t| std::cmp::Reverse(t.0.len()));
        let mut out = text.to_string();
        for (token, real) in by_token {
            out = out.replace(token, real);
        }
        out
    }

    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(_, t)| t.as_str())
    }

    pub fn token_of(&self, real: &str) -> Option<&str> {
        self.pairs.iter().find(|(r, _)| r.eq_ignore_ascii_case(real)).map(|(_, t)| t.as_str())
    }

    /// The real values (for the leak test and for checks).
    pub fn real_values(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(r, _)| r.as_str())
    }
}

/// `text` with its defanged separators written plainly, and for each byte of that the byte of
/// `text` it came from (one more entry: the end), so a match maps back to its span.
fn refanged_with_origin(text: &str) -> (String, Vec<usize>) {
    let mut plain = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len() + 1);
    let mut i = 0;
    while i < text.len() {
        if let Some((marker, plainly)) = DEFANGED_SEPARATORS.iter().find(|(marker, _)| text[i..].starts_with(marker)) {
            plain.push_str(plainly);
            origin.extend(std::iter::repeat_n(i, plainly.len()));
            i += marker.len();
            continue;
        }
        let Some(c) = text[i..].chars().next() else { break };
        plain.push(c);
        origin.extend(std::iter::repeat_n(i, c.len_utf8()));
        i += c.len_utf8();
    }
    origin.push(text.len());
    (plain, origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{normalise, InternalNames};
    use crate::domain::{CaseKey, IncidentHint, Trigger};

    #[test]
    fn hides_everywhere_and_reveals_exactly() {
        let mut c = Case::new(CaseKey::new("t", "1").unwrap(), Trigger::Local, IncidentHint::default(), 0, &Default::default());
        let names = InternalNames { domain_suffixes: vec!["corp.example".into()] };
        for (k, v) in [
            (IndicatorKind::Hostname, "fin-ws-0231"),
            (IndicatorKind::User, "CORP\\j.doe"),
            (IndicatorKind::Ipv4, "10.20.31.45"),
            (IndicatorKind::Domain, "intranet.corp.example"),
            (IndicatorKind::Ipv4, "8.8.8.8"),
        ] {
            c.indicators.push(normalise(k, v, &names).unwrap());
        }
        let p = Pseudonyms::for_case(&c);
        let text = r#"FIN-WS-0231 ran "C:\Users\j.doe\AppData\x.exe" from 10.20.31.45 to intranet.corp.example and 8.8.8.8 as CORP\j.doe"#;
        let hidden = p.hide(text);
        for real in ["fin-ws-0231", "j.doe", "10.20.31.45", "intranet.corp.example"] {
            assert!(!hidden.to_lowercase().contains(real), "{real} leaked: {hidden}");
        }
        assert!(hidden.contains("8.8.8.8"), "external values stay");
        assert!(
            hidden.contains("HOST-1") && hidden.contains("USER-1") && hidden.contains("IP-1") && hidden.contains("DOMAIN-1"),
            "{hidden}"
        );
        let revealed = p.reveal("HOST-1 and USER-1 talked to IP-1");
        assert_eq!(revealed, "fin-ws-0231 and CORP\\j.doe talked to 10.20.31.45");
    }

    /// Masking the evidence: forms found only in free text, strings seen more than once, an
    /// e-mail read before the user it names, and non-ASCII text leave nothing internal; a string
    /// seen again is masked as it was.
    #[test]
    fn masking_json_leaves_nothing_internal_in_any_form() {
        let mut c = Case::new(CaseKey::new("t", "1").unwrap(), Trigger::Local, IncidentHint::default(), 0, &Default::default());
        let names = InternalNames { domain_suffixes: vec!["corp.example".into()] };
        for (k, v) in [(IndicatorKind::User, "CORP\\j.doe"), (IndicatorKind::Hostname, "fin-ws-0231")] {
            c.indicators.push(normalise(k, v, &names).unwrap());
        }
        let mut p = Pseudonyms::for_case(&c);
        let mut v = serde_json::json!({
            "sid": "S-1-5-21-1004336348-1177238915-682003330-1001",
            "unc": "copied from \\\\FILESRV01\\payroll",
            "accented": "Zugriff von FIN-WS-0231 auf dc01.corp.local über 8.8.8.8, Größe 3 MB",
            "a_first": "mail from m.smith@gmail.com",
            "mail": "owner j.doe@gmail.com and a.admin@corp.example",
            "again": ["CORP\\m.smith copied from 10.20.31.46", "CORP\\m.smith copied from 10.20.31.46"],
            "nested": {"list": [{"text": "ssh to build01.corp.example from fin-ws-0231"}]},
            "defanged": "beacon to 10[.]20[.]31[.]47, files[dot]corp[.]example and a.admin[@]corp(.)example",
        });
        p.mask_json(&mut v, &names);
        let out = v.to_string().to_lowercase();
        for real in [
            "1004336348",
            "filesrv01",
            "fin-ws-0231",
            "dc01",
            "j.doe",
            "a.admin",
            "m.smith",
            "10.20.31.46",
            "build01",
            "10[.]20",
            "files[dot]corp",
        ] {
            assert!(!out.contains(real), "{real} reached the model: {out}");
        }
        assert_eq!(v["again"][0], v["again"][1], "a string seen again is masked as it was");
        assert!(out.contains("8.8.8.8") && out.contains("größe"), "what is not internal stays: {out}");
    }
}
