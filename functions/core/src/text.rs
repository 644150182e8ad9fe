//! Small text helpers shared by the stages.

/// The longest prefix of `s` of at most `max_bytes` bytes that ends on a character boundary.
pub fn prefix(s: &str, max_bytes: usize) -> &str {
    let mut end = s.len().min(max_bytes);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Removes control characters and bounds the length of untrusted text before rendering.
pub fn clean_text(s: &str, max_chars: usize) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(max_chars).collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// The records of a CSV text (RFC 4180: quoted fields may hold commas, quotes and line breaks),
/// each with the line it starts on and its fields trimmed; blank lines and `#` comments skipped.
/// A CSV record: the line it starts on and its fields.
pub type CsvRow = (usize, Vec<String>);

/// Where and why a CSV text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError {
    pub line: usize,
    pub reason: String,
}

pub fn csv_records(text: &str) -> Result<Vec<CsvRow>, CsvError> {
    // Comment lines become blank lines before parsing, so byte offsets still fall on the
    // file's own lines (the reader's comment handling would leave them out of the count).
    let uncommented: String = text.lines().map(|l| if l.trim_start().starts_with('#') { "" } else { l }).collect::<Vec<_>>().join("\n");
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(uncommented.as_bytes());
    // A record's position is where the previous one ended, before the blank lines the reader
    // skips: step over them, then count newlines to get the line a person finds in an editor.
    // Records come in order, so the count carries on from the previous record's (counting from
    // the start each time made the embedded ATT&CK tables cost most of a second to read).
    let bytes = uncommented.as_bytes();
    let mut counted_to = 0usize;
    let mut newlines = 0usize;
    let mut line_of = |p: &csv::Position| {
        let mut at = usize::try_from(p.byte()).unwrap_or(usize::MAX).min(bytes.len());
        while at < bytes.len() && matches!(bytes[at], b'\n' | b'\r') {
            at += 1;
        }
        if at < counted_to {
            counted_to = 0;
            newlines = 0;
        }
        newlines += bytes[counted_to..at].iter().filter(|b| **b == b'\n').count();
        counted_to = at;
        newlines + 1
    };
    let mut out = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, &mut line_of);
                return Err(CsvError { line, reason: e.to_string() });
            }
        };
        let line = record.position().map_or(0, &mut line_of);
        let fields: Vec<String> = record.iter().map(str::to_string).collect();
        if fields.iter().all(String::is_empty) {
            continue;
        }
        out.push((line, fields));
    }
    Ok(out)
}

/// Appends `c` as a reader compares names: lower case, with the letters that lower-case apart
/// from their plain twin brought back to it — the Turkish dotted `İ` and dotless `ı` to `i` (a
/// Turkish-locale tool writes `fin-ws-0231` as `FİN-WS-0231`), the long `ſ` to `s`, the final
/// `ς` to `σ`.
fn push_folded(out: &mut String, c: char) {
    match c {
        'İ' | 'ı' => out.push('i'),
        'ſ' => out.push('s'),
        'ς' => out.push('σ'),
        _ => out.extend(c.to_lowercase()),
    }
}

/// A name as a reader compares it (`push_folded` over the whole string): what masking matches.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    s.chars().for_each(|c| push_folded(&mut out, c));
    out
}

/// `haystack` with every occurrence of `needle`, compared folded (`fold`), replaced by `with`.
pub fn replace_ignore_case(haystack: &str, needle: &str, with: &str) -> String {
    let lower_n = fold(needle);
    if lower_n.is_empty() {
        return haystack.to_string();
    }
    if haystack.is_ascii() {
        // ASCII lower-casing keeps every offset: the lower-cased copy's matches are the original's.
        let lower_h = haystack.to_ascii_lowercase();
        let mut out = String::with_capacity(haystack.len());
        let mut last = 0;
        for (at, _) in lower_h.match_indices(&lower_n) {
            out.push_str(&haystack[last..at]);
            out.push_str(with);
            last = at + lower_n.len();
        }
        out.push_str(&haystack[last..]);
        return out;
    }
    // Lower-casing changes byte lengths outside ASCII (`İ` 2 → 3 bytes, `ẞ` 3 → 2, the Kelvin
    // sign 3 → 1), so a match in the lower-cased copy is mapped back through the original
    // offset of the character each of its bytes came from; a match that starts or ends inside
    // one character's lower-cased form is not a match of whole characters and is skipped.
    let mut lower_h = String::with_capacity(haystack.len());
    let mut origin: Vec<usize> = Vec::with_capacity(haystack.len() + 1);
    for (at, c) in haystack.char_indices() {
        let before = lower_h.len();
        push_folded(&mut lower_h, c);
        origin.resize(lower_h.len(), at);
        debug_assert!(lower_h.len() > before, "every character lower-cases to at least one");
    }
    origin.push(haystack.len());
    let starts_a_char = |i: usize| i == 0 || origin[i - 1] != origin[i];
    let mut out = String::with_capacity(haystack.len());
    let (mut last, mut from) = (0, 0);
    while let Some(found) = lower_h[from..].find(&lower_n) {
        let (start, end) = (from + found, from + found + lower_n.len());
        if starts_a_char(start) && starts_a_char(end) {
            out.push_str(&haystack[last..origin[start]]);
            out.push_str(with);
            last = origin[end];
            from = end;
        } else {
            from = start + lower_h[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out.push_str(&haystack[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::{csv_records, fold, prefix, replace_ignore_case};

    /// Lower-casing that changes a character's byte length (`İ` grows, `ẞ` and the Kelvin sign
    /// shrink) once shifted the match offsets into the middle of a character: a panic in
    /// masking on alert text such as `İfin-ws-0231ẞ`, and values next to such letters were
    /// replaced only as spelled, not in any case.
    #[test]
    fn values_beside_letters_whose_lower_case_changes_length_are_hidden_without_a_panic() {
        for (haystack, needle) in [
            ("İfin-ws-0231ẞ", "fin-ws-0231"),
            ("ẞFIN-WS-0231İ and \u{212A}fin-ws-0231", "fin-ws-0231"),
            ("İİİ FIN-WS-0231 ẞẞẞ fin-ws-0231", "FIN-WS-0231"),
            ("Zugriff von FIN-WS-0231 über İstanbul", "fin-ws-0231"),
            ("ΣΑΣ and σας", "ΣΑΣ"),
            // A Turkish-locale tool upper-cases `fin` as `FİN` and lower-cases `FIN` as `fın`.
            ("copied by FİN-WS-0231 from fın-ws-0231", "fin-ws-0231"),
            ("ALİ logged on", "ali"),
            ("ΟΔΟΣ and οδος", "ΟΔΟΣ"),
        ] {
            let out = replace_ignore_case(haystack, needle, "HOST-1");
            assert!(!fold(&out).contains(&fold(needle)), "{needle} left in {out:?}");
            assert!(out.contains("HOST-1"), "{out:?}");
        }
        // `İ` is read as `i` (Unicode lower-cases it to `i` and a combining dot: a match of the
        // `i` alone would have ended inside the letter, and been skipped).
        assert_eq!(replace_ignore_case("İ", "i", "X"), "X");
        // A match must cover whole letters: `ǈ` (one letter, `Lj`) lower-cases to `ǉ`, not `lj`.
        assert_eq!(replace_ignore_case("ǈ", "lj", "X"), "ǈ");
        assert_eq!(replace_ignore_case("no match here", "fin-ws-0231", "X"), "no match here");
        assert_eq!(replace_ignore_case("", "a", "X"), "");
    }

    #[test]
    fn csv_fields_may_hold_quoted_commas() {
        let rows = csv_records("hostname,used_for\n# a comment\n\nfin-ws-1,\"Accounts Payable, EMEA\"\n").unwrap();
        assert_eq!(rows[1], (4, vec!["fin-ws-1".to_string(), "Accounts Payable, EMEA".to_string()]));
        assert_eq!(rows.len(), 2);
        let quoted_break = csv_records("a,\"two\nlines\"\nb,c\n").unwrap();
        assert_eq!(quoted_break, vec![(1, vec!["a".to_string(), "two\nlines".to_string()]), (3, vec!["b".to_string(), "c".to_string()])]);
    }

    #[test]
    fn cuts_on_a_character_boundary() {
        assert_eq!(prefix("abcdef", 3), "abc");
        assert_eq!(prefix("abc", 10), "abc");
        // "é" is two bytes: a cut through it keeps the character out.
        assert_eq!(prefix("aé", 2), "a");
        assert_eq!(prefix("", 5), "");
    }
}
