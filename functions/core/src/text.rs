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

#[cfg(test)]
mod tests {
    use super::prefix;

    #[test]
    fn cuts_on_a_character_boundary() {
        assert_eq!(prefix("abcdef", 3), "abc");
        assert_eq!(prefix("abc", 10), "abc");
        // "é" is two bytes: a cut through it keeps the character out.
        assert_eq!(prefix("aé", 2), "a");
        assert_eq!(prefix("", 5), "");
    }
}
