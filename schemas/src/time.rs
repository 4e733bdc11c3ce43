//! Capture time: microseconds since the Unix epoch, UTC, everywhere.
//!
//! One integer type for every timestamp that crosses a boundary (chunk capture time, window
//! start and end, archive columns), and the two conversions people need: RFC 3339 text for
//! events, and the calendar date for the archive's `date=` partition.

use chrono::{DateTime, SecondsFormat};

/// Microseconds since 1970-01-01T00:00:00Z.
pub type TimestampUs = i64;

/// Microseconds in one second.
pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// RFC 3339 UTC text with microseconds, e.g. `2026-11-25T10:00:01.500000Z`.
pub fn rfc3339(timestamp_us: TimestampUs) -> String {
    match DateTime::from_timestamp_micros(timestamp_us) {
        Some(time) => time.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => format!("out-of-range-timestamp-{timestamp_us}us"),
    }
}

/// The UTC calendar date, `YYYY-MM-DD`.
pub fn utc_date(timestamp_us: TimestampUs) -> String {
    match DateTime::from_timestamp_micros(timestamp_us) {
        Some(time) => time.format("%Y-%m-%d").to_string(),
        None => "out-of-range".to_owned(),
    }
}

/// Parses RFC 3339 text into microseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<TimestampUs> {
    DateTime::parse_from_rfc3339(text).ok().map(|time| time.timestamp_micros())
}

/// Samples to microseconds at a rate, rounded down; exact for whole seconds.
pub fn samples_to_us(samples: u64, sample_rate_hz: u32) -> i64 {
    let micros = u128::from(samples) * MICROS_PER_SECOND as u128 / u128::from(sample_rate_hz.max(1));
    i64::try_from(micros).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = 1_795_000_000_123_456;
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        assert!(rfc3339(t).ends_with('Z'));
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(86_400 * MICROS_PER_SECOND - 1), "1970-01-01");
        assert_eq!(utc_date(86_400 * MICROS_PER_SECOND), "1970-01-02");
    }

    #[test]
    fn sample_counts_convert_exactly() {
        assert_eq!(samples_to_us(16_000, 16_000), 1_000_000);
        assert_eq!(samples_to_us(512, 16_000), 32_000);
    }
}
