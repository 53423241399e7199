//! Conversions between the API's timestamps (`jiff`, in k8s-openapi) and the crds' (`chrono`).

use chrono::{DateTime, Utc};
use k8s_openapi::jiff::Timestamp;

/// A `jiff` timestamp as `chrono`; out-of-range values (not produced by an API server) become the epoch.
pub fn to_chrono(ts: Timestamp) -> DateTime<Utc> {
    i64::try_from(ts.as_nanosecond()).map(DateTime::from_timestamp_nanos).unwrap_or_default()
}

/// A `chrono` instant as `jiff`; out-of-range values become the epoch.
pub fn to_jiff(t: DateTime<Utc>) -> Timestamp {
    t.timestamp_nanos_opt()
        .and_then(|nanos| Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

pub use borcelle_crds::status::whole_seconds;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_keep_nanoseconds() {
        let t = DateTime::from_timestamp(1_795_000_000, 123_456_789).unwrap_or_default();
        assert_eq!(to_chrono(to_jiff(t)), t);
        assert_eq!(whole_seconds(t).timestamp_subsec_nanos(), 0);
    }
}
