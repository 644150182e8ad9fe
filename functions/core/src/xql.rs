//! XQL helpers.

/// Quotes a value for an XQL string literal.
pub fn xql_quote(s: &str) -> String {
    let cleaned: String = s.chars().filter(|c| !c.is_control()).take(512).collect();
    format!("\"{}\"", cleaned.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `config timeframe between "<from>" and "<to>"` around an incident: `before` ahead of its
/// first alert to `after` past its last (XQL's exact-time form; it must open the query). An
/// analyst running the query next month still sees the incident's own window.
pub fn timeframe(window: (i64, i64), before: std::time::Duration, after: std::time::Duration) -> String {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
    format!(
        "config timeframe between \"{}\" and \"{}\"",
        crate::timefmt::format_xql(window.0.saturating_sub(ms(before))),
        crate::timefmt::format_xql(window.1.saturating_add(ms(after)))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timeframes_are_anchored_to_the_incident() {
        let t = timeframe((1_701_757_403_327, 1_701_761_835_156), Duration::from_secs(3600), Duration::from_secs(3600));
        assert_eq!(t, "config timeframe between \"2023-12-05 05:23:23 +0000\" and \"2023-12-05 08:37:15 +0000\"");
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(xql_quote("CORP\\j\"doe"), "\"CORP\\\\j\\\"doe\"");
    }
}
