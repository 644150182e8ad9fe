//! XQL helpers.

/// Quotes a value for an XQL string literal.
pub fn xql_quote(s: &str) -> String {
    let cleaned: String = s.chars().filter(|c| !c.is_control()).take(512).collect();
    format!("\"{}\"", cleaned.replace('\\', "\\\\").replace('"', "\\\""))
}
