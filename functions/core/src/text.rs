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

#[cfg(test)]
mod tests {
    use super::{csv_records, prefix};

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
