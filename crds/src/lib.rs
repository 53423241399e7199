//! Borcelle's custom resources (`ScheduledReminder`, `Broadcast`) and their pure semantics.
//!
//! [`schedule`] turns cron + time zone into occurrences (DST-correct); [`decide`] applies the
//! CronJob rules (missed runs, deadline, concurrency, suspend) at an instant. Both are pure: time is
//! a parameter, there is no I/O, so the operator and the in-process scheduler decide alike.

pub mod decide;
pub mod schedule;

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
