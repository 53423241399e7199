//! Timestamps in JSON without `core::fmt`: the same text as chrono's own `Serialize` for
//! `DateTime<Utc>` (`2026-11-24T13:05:09.123456Z`: a fraction of 0, 3, 6 or 9 digits, as few as
//! hold it), written digit by digit. chrono's goes through the formatting machinery, which took
//! about a tenth of serve's CPU for a page of 50 contacts (two timestamps each).

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

/// For `#[serde(serialize_with = "crate::rfc3339::serialize")]`.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 30];
    match write(at, &mut buf).and_then(|len| std::str::from_utf8(&buf[..len]).ok()) {
        Some(text) => serializer.serialize_str(text),
        // Years outside 0–9999 and leap seconds, which PostgreSQL never returns: chrono's text.
        None => at.serialize(serializer),
    }
}

/// Writes `at` as a JSON string into `out`: the same bytes as [`serialize`] through `serde_json`.
pub fn write_json(at: &DateTime<Utc>, out: &mut Vec<u8>) {
    let mut buf = [0u8; 30];
    match write(at, &mut buf) {
        Some(len) => {
            out.push(b'"');
            out.extend_from_slice(&buf[..len]);
            out.push(b'"');
        }
        // chrono's text, as `serialize` falls back to it (digits and signs: nothing to escape).
        None => crate::json::write_str(out, &at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
    }
}

/// Writes the instant `micros` microseconds after 1970-01-01 (UTC) as [`write_json`] writes it,
/// without making a chrono date on the way (a page of contacts holds a hundred of them). `false`,
/// and nothing written, when no `DateTime<Utc>` holds it.
pub fn write_json_micros(micros: i64, out: &mut Vec<u8>) -> bool {
    let secs = micros.div_euclid(1_000_000);
    let nanos = micros.rem_euclid(1_000_000) as u32 * 1_000;
    let (year, month, day) = civil(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400) as u32;
    let mut buf = [0u8; 30];
    let written = u32::try_from(year).ok().filter(|year| *year <= 9999).and_then(|year| {
        write_parts(year, [month, day, of_day / 3600, of_day / 60 % 60, of_day % 60], nanos, &mut buf)
    });
    match written {
        Some(len) => {
            out.push(b'"');
            out.extend_from_slice(&buf[..len]);
            out.push(b'"');
            true
        }
        None => match DateTime::from_timestamp_micros(micros) {
            Some(at) => {
                write_json(&at, out);
                true
            }
            None => false,
        },
    }
}

/// The proleptic Gregorian year, month and day of the day `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`: March-based years of 400-year eras).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let of_era = z.rem_euclid(146_097);
    let year_of_era = (of_era - of_era / 1_460 + of_era / 36_524 - of_era / 146_096) / 365;
    let of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * of_year + 2) / 153;
    let day = (of_year - (153 * march_month + 2) / 5 + 1) as u32;
    let month = if march_month < 10 { march_month + 3 } else { march_month - 9 } as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// Writes the text into `buf` and returns its length, or `None` when chrono must do it.
fn write(at: &DateTime<Utc>, buf: &mut [u8; 30]) -> Option<usize> {
    let year = u32::try_from(at.year()).ok().filter(|year| *year <= 9999)?;
    write_parts(year, [at.month(), at.day(), at.hour(), at.minute(), at.second()], at.nanosecond(), buf)
}

/// Writes year, `[month, day, hour, minute, second]` and the fraction (`nanos`) into `buf`.
fn write_parts(
    year: u32,
    [month, day, hour, minute, second]: [u32; 5],
    nanos: u32,
    buf: &mut [u8; 30],
) -> Option<usize> {
    if nanos >= 1_000_000_000 {
        return None;
    }
    let fraction = match nanos {
        0 => None,
        n if n % 1_000_000 == 0 => Some((3, n / 1_000_000)),
        n if n % 1_000 == 0 => Some((6, n / 1_000)),
        n => Some((9, n)),
    };
    let mut len = 0;
    // `before`, then `value` in `digits` decimal digits.
    let mut put = |before: Option<u8>, digits: usize, mut value: u32| {
        if let Some(separator) = before {
            buf[len] = separator;
            len += 1;
        }
        for i in (0..digits).rev() {
            buf[len + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        len += digits;
    };
    put(None, 4, year);
    put(Some(b'-'), 2, month);
    put(Some(b'-'), 2, day);
    put(Some(b'T'), 2, hour);
    put(Some(b':'), 2, minute);
    put(Some(b':'), 2, second);
    if let Some((digits, value)) = fraction {
        put(Some(b'.'), digits, value);
    }
    put(Some(b'Z'), 0, 0);
    Some(len)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone;

    use super::*;

    #[derive(Serialize)]
    struct Ours(#[serde(serialize_with = "serialize")] DateTime<Utc>);

    /// Through serde and written straight into a buffer alike.
    fn same_as_chrono(at: DateTime<Utc>) {
        let chrono = serde_json::to_string(&at).unwrap();
        assert_eq!(serde_json::to_string(&Ours(at)).unwrap(), chrono, "{at:?}");
        let mut written = Vec::new();
        write_json(&at, &mut written);
        assert_eq!(String::from_utf8(written).unwrap(), chrono, "{at:?}");
        // Whole microseconds, as PostgreSQL holds them: from the count alone too.
        if at.nanosecond().is_multiple_of(1_000) {
            let mut written = Vec::new();
            assert!(write_json_micros(at.timestamp_micros(), &mut written), "{at:?}");
            assert_eq!(String::from_utf8(written).unwrap(), chrono, "{at:?}");
        }
    }

    #[test]
    fn every_fraction_width_and_the_edges_match_chrono() {
        let base = Utc.with_ymd_and_hms(2026, 11, 24, 13, 5, 9).unwrap();
        for nanos in [0, 1, 7, 1_000, 123_000, 123_456_000, 5_000_000, 120_000_000, 999_999_999, 100_000_000] {
            same_as_chrono(base + chrono::Duration::nanoseconds(nanos));
        }
        same_as_chrono(Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap());
        same_as_chrono(Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap());
        same_as_chrono(Utc.with_ymd_and_hms(2024, 2, 29, 0, 0, 0).unwrap());
        // chrono writes these itself.
        same_as_chrono(Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap());
        same_as_chrono(Utc.with_ymd_and_hms(-1, 6, 1, 0, 0, 0).unwrap());
    }

    #[test]
    fn every_day_of_the_years_written_without_chrono_matches_chrono() {
        // Each day of the years around the edges of those written digit by digit (and of the
        // Unix and PostgreSQL epochs, and of the leap-year rules: 1900, 2000, 2100), every 29th
        // day between them; each at a time of day and fraction that move with the day.
        let day = 86_400_000_000_i64;
        let start = |year: i32| Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap().timestamp_micros();
        for (from, to, step) in [(-2, 3, 1), (3, 1899, 29), (1899, 2102, 1), (2102, 9998, 29), (9998, 10_002, 1)] {
            let mut micros = start(from);
            while micros < start(to) {
                let at = micros + (micros / day).rem_euclid(86_400) * 1_000_037 % day;
                same_as_chrono(DateTime::from_timestamp_micros(at).unwrap());
                micros += step * day;
            }
        }
    }

    #[test]
    fn instants_no_date_holds_are_refused_without_writing() {
        let mut written = Vec::new();
        assert!(!write_json_micros(i64::MAX, &mut written));
        assert!(!write_json_micros(i64::MIN, &mut written));
        assert!(written.is_empty());
    }

    #[test]
    fn a_spread_of_instants_matches_chrono() {
        // Microseconds over 1970–2100, as PostgreSQL's timestamptz holds them, and nanoseconds.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let micros = (state >> 11) % 4_102_444_800_000_000;
            same_as_chrono(DateTime::from_timestamp_micros(micros as i64).unwrap());
            let nanos = (state >> 3) % 1_000_000_000;
            same_as_chrono(DateTime::from_timestamp((micros / 1_000_000) as i64, nanos as u32).unwrap());
        }
    }
}
