//! Names and label values derived from a resource: deterministic, valid, and short enough.
//!
//! A Job's name becomes the `batch.kubernetes.io/job-name` label of its pods, so it must be a
//! DNS-1123 label of at most 63 characters. Resource names may be DNS subdomains of up to 253
//! characters: long or dotted names are shortened and disambiguated by a hash of the full name.

use chrono::{DateTime, Utc};

use crate::kinds::Kind;

/// Longest label value and DNS-1123 label.
pub const MAX_LABEL: usize = 63;
/// Length of [`short_hash`]'s output.
const HASH_LEN: usize = 8;

/// FNV-1a, 64 bits: stable across builds and platforms (unlike `std`'s hasher).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Eight lowercase hex digits identifying `text`.
pub fn short_hash(text: &str) -> String {
    let hash = fnv1a(text);
    format!("{:08x}", (hash ^ (hash >> 32)) & 0xffff_ffff)
}

fn is_dns_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// The first `max` characters of `text` made DNS-label safe ('.' and anything else become '-'),
/// without trailing '-'.
fn label_head(text: &str, max: usize) -> String {
    let head: String = text
        .chars()
        .take(max)
        .map(|c| if is_dns_label_char(c.to_ascii_lowercase()) { c.to_ascii_lowercase() } else { '-' })
        .collect();
    head.trim_end_matches('-').to_owned()
}

/// The Job that runs `kind`'s resource `name` at `scheduled`: `{name}-{unix minutes}` (Broadcasts:
/// `{name}-bc-{unix minutes}`, so a Broadcast and a ScheduledReminder of the same name never share
/// a Job). A name that is too long or not a DNS label is shortened to
/// `{head}-{hash of name}-…`. The same inputs always give the same name, which is what makes
/// creation idempotent: a second attempt meets 409 AlreadyExists and adopts the Job.
pub fn job_name(kind: Kind, name: &str, scheduled: DateTime<Utc>) -> String {
    let minutes = scheduled.timestamp().div_euclid(60);
    let suffix = match kind {
        Kind::ScheduledReminder => format!("-{minutes}"),
        Kind::Broadcast => format!("-bc-{minutes}"),
    };
    let budget = MAX_LABEL.saturating_sub(suffix.len());
    let plain =
        !name.is_empty() && name.chars().all(is_dns_label_char) && !name.starts_with('-') && name.len() <= budget;
    if plain {
        return format!("{name}{suffix}");
    }
    let head = label_head(name, budget.saturating_sub(HASH_LEN + 1));
    let hash = short_hash(name);
    if head.is_empty() { format!("{hash}{suffix}") } else { format!("{head}-{hash}{suffix}") }
}

/// `name` as a label value: itself when it fits, else a head and a hash of the full name.
pub fn label_value(name: &str) -> String {
    if name.len() <= MAX_LABEL {
        return name.to_owned();
    }
    let head: String = name.chars().take(MAX_LABEL - HASH_LEN - 1).collect();
    let head = head.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{head}-{}", short_hash(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).single().unwrap_or_default()
    }

    fn is_dns_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= MAX_LABEL
            && s.chars().all(is_dns_label_char)
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    }

    #[test]
    fn a_short_name_gets_the_unix_minute_of_the_occurrence() {
        assert_eq!(job_name(Kind::ScheduledReminder, "weekly-report", at()), "weekly-report-29925180");
        assert_eq!(job_name(Kind::Broadcast, "maintenance", at()), "maintenance-bc-29925180");
    }

    #[test]
    fn long_or_dotted_names_are_shortened_deterministically_and_stay_distinct() {
        let long = "a".repeat(253);
        let other = format!("{}b", "a".repeat(252));
        for name in [long.as_str(), other.as_str(), "team.alpha.reminder", "x".repeat(54).as_str()] {
            for kind in [Kind::ScheduledReminder, Kind::Broadcast] {
                let job = job_name(kind, name, at());
                assert!(is_dns_label(&job), "{job}");
                assert_eq!(job, job_name(kind, name, at()));
            }
        }
        assert_ne!(job_name(Kind::Broadcast, &long, at()), job_name(Kind::Broadcast, &other, at()));
        assert_ne!(job_name(Kind::ScheduledReminder, "a.b", at()), job_name(Kind::ScheduledReminder, "a-b", at()));
    }

    #[test]
    fn label_values_fit_in_63_characters() {
        assert_eq!(label_value("daily"), "daily");
        let long = format!("{}.{}", "a".repeat(60), "b".repeat(60));
        let value = label_value(&long);
        assert!(value.len() <= MAX_LABEL);
        assert!(value.ends_with(&short_hash(&long)));
    }
}
