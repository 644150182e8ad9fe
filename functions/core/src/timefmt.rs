//! Wall-clock helpers on the `time` crate. Time always travels as Unix epoch milliseconds (`i64`);
//! a value outside what a calendar can show (an attacker's `-9223372036854775808`) is clamped, never
//! a panic.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// The moment, clamped to what `time` represents (years -9999..=9999).
fn at(epoch_ms: i64) -> OffsetDateTime {
    const MIN_MS: i64 = -377_705_116_800_000; // -9999-01-01
    const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999
    let ms = i128::from(epoch_ms.clamp(MIN_MS, MAX_MS));
    OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Formats epoch milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(epoch_ms: i64) -> String {
    at(epoch_ms).format(format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC")).unwrap_or_else(|_| "time unknown".into())
}

/// Formats epoch milliseconds as an XQL exact time: `2019-12-08 12:08:29 +0000`.
pub fn format_xql(epoch_ms: i64) -> String {
    at(epoch_ms)
        .format(format_description!("[year]-[month]-[day] [hour]:[minute]:[second] +0000"))
        .unwrap_or_else(|_| "1970-01-01 00:00:00 +0000".into())
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds: `2019-12-08T12:08:29.185Z`.
pub fn format_rfc3339(epoch_ms: i64) -> String {
    at(epoch_ms)
        .format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"))
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// Parses RFC 3339 (`2019-12-08T12:08:29.185Z`, `…+02:00`) into epoch milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Normalises an XDR-style timestamp that may be seconds or milliseconds into milliseconds.
pub fn normalise_epoch(value: i64) -> i64 {
    // Anything below 10^11 is seconds (10^11 ms is 1973; 10^11 s is year 5138).
    if value.unsigned_abs() < 100_000_000_000 {
        value * 1000
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        assert_eq!(format_utc(1_575_806_909_185), "2019-12-08 12:08:29 UTC");
        assert_eq!(parse_rfc3339("2019-12-08T12:08:29.185Z"), Some(1_575_806_909_185));
        assert_eq!(parse_rfc3339("2019-12-08T14:08:29+02:00"), Some(1_575_806_909_000));
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_rfc3339(1_575_806_909_185), "2019-12-08T12:08:29.185Z");
        assert_eq!(parse_rfc3339(&format_rfc3339(1_575_806_909_185)), Some(1_575_806_909_185));
    }

    #[test]
    fn rejects_garbage_dates() {
        for bad in ["", "yesterday", "2019-13-01T00:00:00Z", "2019-12-08T12:08:29", "2019-12-08T12:08:29.Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn extreme_values_never_panic() {
        for v in [i64::MIN, i64::MAX, -1, 253_402_300_800_000] {
            assert!(!format_utc(v).is_empty());
            assert!(!format_rfc3339(v).is_empty());
            let _ = normalise_epoch(v);
        }
        assert_eq!(format_utc(i64::MIN), "-9999-01-01 00:00:00 UTC");
    }

    #[test]
    fn seconds_become_milliseconds() {
        assert_eq!(normalise_epoch(1_575_806_909), 1_575_806_909_000);
        assert_eq!(normalise_epoch(1_575_806_909_185), 1_575_806_909_185);
    }
}
