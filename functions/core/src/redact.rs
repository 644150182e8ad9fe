//! Credentials in alert text (a password on a `net use` command line, a bearer token in a
//! script, an AWS key, a private key) are removed as soon as the text is read: they are never
//! stored on the case, shown in the dossier, sent to a model or re-identified. Identifiers (host
//! names, accounts, SIDs) are not credentials: they are pseudonymised for the model instead
//! (`synthesis::pseudonym`), found by [`identifiers`].

use regex::{Captures, Regex};
use std::sync::OnceLock;

/// What a credential becomes.
pub const REDACTED: &str = "[REDACTED-CREDENTIAL]";

struct Rule {
    re: Regex,
    /// The capture group holding the secret; 0 = the whole match.
    group: usize,
}

fn rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        let rule = |pattern: &str, group: usize| Rule { re: Regex::new(pattern).expect("credential pattern compiles"), group };
        vec![
            // PEM private keys, whole (or to the end of a cut text).
            rule(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", 0),
            // `net use \\srv\share <password> /user:X` and `net use … /user:X <password>`.
            rule(r#"(?i)\bnet(?:\.exe)?\s+use\b[^\n]*?/u(?:ser)?:\S+\s+("[^"]*"|[^\s/"][^\s]*)"#, 1),
            rule(r#"(?i)\bnet(?:\.exe)?\s+use\s+\\\\\S+\s+("[^"]*"|[^\s/*"][^\s]*)\s+/u(?:ser)?:"#, 1),
            // PowerShell: `-Password x`, `ConvertTo-SecureString "x" -AsPlainText`.
            rule(r#"(?i)[\s(]-(?:password|pass|pwd|passwd)\s*[\s:]\s*("[^"]*"|'[^']*'|[^\s)]+)"#, 1),
            rule(r#"(?i)convertto-securestring\s+(?:-string\s+)?("[^"]*"|'[^']*'|\S+)"#, 1),
            // `password=x`, `pwd: x`, `api_key=x`, `client_secret=x`, `aws_secret_access_key = x`.
            rule(
                r#"(?i)\b(?:password|passwd|pwd|passphrase|secret|client_secret|api[_-]?key|access[_-]?token|secret_access_key|aws_secret_access_key)\s*[=:]\s*("[^"]*"|'[^']*'|[^\s&;,"']+)"#,
                1,
            ),
            // HTTP credentials.
            rule(r"(?i)\bauthorization\s*:\s*((?:basic|bearer|digest|negotiate|ntlm|aws4-hmac-sha256)\s+[^\s,]+|[^\s,]+)", 1),
            rule(r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{8,})", 1),
            // user:password@ in URLs.
            rule(r"(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@]+:([^/\s@]+)@", 1),
            // AWS access key ids, JWTs.
            rule(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0),
            rule(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}", 0),
        ]
    })
}

/// The text with every credential replaced by [`REDACTED`].
pub fn credentials(text: &str) -> String {
    let mut out = text.to_string();
    for rule in rules() {
        if !rule.re.is_match(&out) {
            continue;
        }
        out = rule
            .re
            .replace_all(&out, |c: &Captures| {
                let whole = c.get(0).map_or("", |m| m.as_str());
                match c.get(rule.group) {
                    Some(secret) if rule.group > 0 => {
                        let start = secret.start() - c.get(0).map_or(0, |m| m.start());
                        format!("{}{REDACTED}{}", &whole[..start], &whole[start + secret.len()..])
                    }
                    _ => REDACTED.to_string(),
                }
            })
            .into_owned();
    }
    out
}

/// Kinds of identifier found in free text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identifier {
    Host,
    User,
    Sid,
    /// An e-mail address cut by truncation (`j.doe@corp.exa…`).
    CutEmail,
}

fn identifier_patterns() -> &'static [(Identifier, Regex)] {
    static RE: OnceLock<Vec<(Identifier, Regex)>> = OnceLock::new();
    RE.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("identifier pattern compiles");
        vec![
            // `\\FILESRV01\payroll`: the server of a UNC path.
            (Identifier::Host, re(r"\\\\([A-Za-z0-9][A-Za-z0-9._-]{0,62})\\")),
            // `CORP\j.doe` (a NetBIOS domain is upper case), not `C:\Users` or `Windows\System32`.
            (Identifier::User, re(r#"(?:^|[\s"'=,(;:])[A-Z][A-Z0-9-]{1,14}\\([A-Za-z0-9._$-]{2,64})"#)),
            // Profile paths: `C:\Users\<name>`, `/home/<name>`, `/Users/<name>`.
            (Identifier::User, re(r#"(?i)\b[a-z]:\\users\\([^\\/"'\s]{2,64})"#)),
            (Identifier::User, re(r#"(?:^|[\s"'=])/(?:home|Users)/([A-Za-z0-9._-]{2,64})"#)),
            // Windows SIDs of domain and local accounts.
            (Identifier::Sid, re(r"\bS-1-5-21-\d{1,10}-\d{1,10}-\d{1,10}(?:-\d{1,10})?\b")),
            // An address the text was cut in the middle of.
            (Identifier::CutEmail, re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]*…$")),
        ]
    })
}

/// Profile folders that are not people.
const NOT_PEOPLE: &[&str] = &["public", "default", "default user", "all users", "defaultapppool", "desktop.ini"];

/// Identifiers in free text, with the text each was found as.
pub fn identifiers(text: &str) -> Vec<(Identifier, String)> {
    let mut out: Vec<(Identifier, String)> = Vec::new();
    // Every pattern needs a backslash, a slash, an `@` or a SID's prefix.
    if !text.contains(['\\', '/', '@']) && !text.contains("S-1-5-21-") {
        return out;
    }
    for (kind, re) in identifier_patterns() {
        for c in re.captures_iter(text) {
            let Some(m) = c.get(1).or_else(|| c.get(0)) else { continue };
            let value = m.as_str().trim_end_matches('…').to_string();
            if *kind == Identifier::User && NOT_PEOPLE.contains(&value.to_ascii_lowercase().as_str()) {
                continue;
            }
            // An address written as a UNC server is an address, handled with the others.
            if *kind == Identifier::Host && value.parse::<std::net::IpAddr>().is_ok() {
                continue;
            }
            if !out.iter().any(|(k, v)| k == kind && v.eq_ignore_ascii_case(&value)) {
                out.push((*kind, value));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_survive() {
        let cases = [
            (r"net use \\FILESRV01\payroll /user:CORP\j.doe Summer2026!", "Summer2026!"),
            (r"net use \\FILESRV01\payroll Summer2026! /user:CORP\j.doe", "Summer2026!"),
            (r#"net.exe use Z: \\srv\c$ /u:admin "p@ss word""#, "p@ss word"),
            ("Invoke-Thing -Password Hunter2x -User bob", "Hunter2x"),
            (r#"$p = ConvertTo-SecureString "S3cr3t!" -AsPlainText -Force"#, "S3cr3t!"),
            ("curl https://x/api?password=letmein123&x=1", "letmein123"),
            ("Authorization: Bearer abcdefghijklmnop.qrstu", "abcdefghijklmnop"),
            ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
            ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
            ("key AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
            ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl", "eyJhbGciOiJIUzI1NiJ9"),
            ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----", "MIIEowIBAAKCAQEA7"),
            ("ftp://backup:Tr0ub4dor@files.example.com/x", "Tr0ub4dor"),
        ];
        for (text, secret) in cases {
            let out = credentials(text);
            assert!(!out.contains(secret), "{secret} survived: {out}");
            assert!(out.contains(REDACTED), "{out}");
        }
        // The rest of the command line stays readable.
        assert_eq!(
            credentials(r"net use \\FILESRV01\payroll /user:CORP\j.doe Summer2026!"),
            format!(r"net use \\FILESRV01\payroll /user:CORP\j.doe {REDACTED}")
        );
        // Nothing to redact: unchanged.
        assert_eq!(credentials("powershell.exe -nop -w hidden -enc SQBFAFgA"), "powershell.exe -nop -w hidden -enc SQBFAFgA");
    }

    #[test]
    fn identifiers_in_free_text_are_found() {
        let found = identifiers(
            r#"copy \\FILESRV01\payroll\x.xlsx C:\Users\m.smith\AppData\ as CORP\j.doe (S-1-5-21-3623811015-3361044348-30300820-1013) /home/alice/.ssh mail bob@corp.exa…"#,
        );
        for expected in [
            (Identifier::Host, "FILESRV01"),
            (Identifier::User, "m.smith"),
            (Identifier::User, "j.doe"),
            (Identifier::User, "alice"),
            (Identifier::Sid, "S-1-5-21-3623811015-3361044348-30300820-1013"),
            (Identifier::CutEmail, "bob@corp.exa"),
        ] {
            assert!(found.iter().any(|(k, v)| *k == expected.0 && v == expected.1), "{expected:?} not in {found:?}");
        }
        let none = identifiers(r"C:\Windows\System32\cmd.exe C:\Users\Public\x");
        assert!(none.is_empty(), "{none:?}");
    }
}
