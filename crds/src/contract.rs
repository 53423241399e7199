//! The contract between the operator and the `borcelle worker occurrence` its Jobs run: the
//! command, the environment, the exit codes and the report the worker leaves in its termination
//! message. Both sides use these definitions, so they cannot drift apart.

use serde::{Deserialize, Serialize};

/// The environment variable carrying the resource's spec as JSON.
pub const ENV_SPEC: &str = "BORCELLE_OCCURRENCE_SPEC";
/// The environment variable naming the file the report is written to.
pub const ENV_TERMINATION_LOG: &str = "BORCELLE_TERMINATION_LOG";
/// Where Kubernetes reads a container's termination message.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// The occurrence ran (some recipients may have failed for good; they are counted).
pub const EXIT_DONE: u8 = 0;
/// A retry may succeed (the database was unreachable, the process was stopped): the Job retries.
pub const EXIT_RETRY: u8 = 1;
/// The occurrence can never run (an unknown owner, a deleted note): the Job fails at once.
pub const EXIT_PERMANENT: u8 = 3;

/// What a run reports in its termination message (`{"delivered":N,"failed":M,"recipients":R}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TerminationReport {
    /// Emails sent (reminder), or users reached (broadcast without emails).
    #[serde(default)]
    pub delivered: i64,
    /// Emails that failed for good.
    #[serde(default)]
    pub failed: i64,
    /// Emails queued or users reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<i64>,
    /// Recipients named in the spec that were not found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// Why the occurrence could not run (with [`EXIT_PERMANENT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TerminationReport {
    /// The report of an occurrence that can never run.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self { recipients: Some(0), error: Some(reason.into()), ..Self::default() }
    }

    /// Reads a termination message; `None` when it is not a report (a crash left logs instead).
    pub fn parse(message: &str) -> Option<Self> {
        serde_json::from_str(message.trim()).ok()
    }

    /// The message to write.
    pub fn to_message(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_older_shapes_still_read() {
        let report = TerminationReport {
            delivered: 4,
            failed: 1,
            recipients: Some(5),
            skipped: vec!["nobody@example.com".into()],
            error: None,
        };
        assert_eq!(TerminationReport::parse(&report.to_message()), Some(report));
        let old = TerminationReport::parse(r#"{"delivered":2,"failed":0,"recipients":2}"#);
        assert_eq!(old.map(|r| (r.delivered, r.recipients)), Some((2, Some(2))));
        assert_eq!(TerminationReport::parse("panicked at main.rs"), None);
        let permanent = TerminationReport::permanent("no Borcelle account has the owner's email");
        assert_eq!(
            permanent.to_message(),
            r#"{"delivered":0,"failed":0,"recipients":0,"error":"no Borcelle account has the owner's email"}"#
        );
    }
}
