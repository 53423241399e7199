//! Borcelle's custom resources (`ScheduledReminder`, `Broadcast`) and their pure semantics.
//!
//! The resource types and the schedule decisions (cron + time zone → occurrences, missed runs,
//! concurrency) land with the operator issue; this crate holds the identifiers they share.

/// API group of every Borcelle custom resource.
pub const GROUP: &str = "crm.borcelle.io";
/// API version served for the resources.
pub const VERSION: &str = "v1alpha1";

/// `group/version`, as written in a manifest's `apiVersion`.
pub fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_joins_group_and_version() {
        assert_eq!(api_version(), "crm.borcelle.io/v1alpha1");
    }
}
