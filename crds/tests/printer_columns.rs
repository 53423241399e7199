//! The CRDs' printer columns (what `kubectl get` shows) never show a future time as a date.
//!
//! kubectl renders a `date` column as the age of the time ("5m"), and the age of a time still to
//! come as `<invalid>`. A column holding a future time (the next occurrence, a broadcast's `at`, its
//! expiry) must therefore be a `string`, which kubectl prints as stored (RFC 3339). Every time
//! field of the schemas is listed below as past or future, so that a new one has to be placed
//! before a column may show it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::Value;

/// Time fields that hold a time still to come (or one set by a person, which may be either).
/// Paths as in a printer column's jsonPath; `[]` stands for any array index or filter.
const FUTURE: &[&str] = &[".spec.at", ".spec.expiresAt", ".status.nextScheduleTime"];

/// Time fields that only ever hold a time that has passed: a `date` column may show them.
const PAST: &[&str] = &[
    ".metadata.creationTimestamp",
    ".metadata.deletionTimestamp",
    ".status.lastScheduleTime",
    ".status.lastSuccessfulTime",
    ".status.deliveredAt",
    ".status.lastRun.occurrence",
    ".status.lastRun.finishedAt",
    ".status.active[].scheduledTime",
    ".status.conditions[].lastTransitionTime",
];

/// Every CRD, as generated from the types and as committed in both places it is installed from,
/// named by where it comes from.
fn crds() -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifests = borcelle_crds::crd_manifests().expect("the CRDs render");
    let mut crds = Vec::new();
    for (name, yaml) in &manifests {
        crds.push((format!("generated {name}"), serde_yaml::from_str(yaml).unwrap()));
        for dir in ["deploy/crds", "charts/borcelle/crds"] {
            let path = root.join(dir).join(name);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            crds.push((path.display().to_string(), serde_yaml::from_str(&text).unwrap()));
        }
    }
    crds
}

/// The served versions of a CRD.
fn versions(crd: &Value) -> &Vec<Value> {
    crd["spec"]["versions"].as_array().expect("spec.versions is a list")
}

/// A jsonPath with each bracketed part (`[0]`, `[*]`, `[?(@.type=="Ready")]`) written `[]`.
fn normalize(json_path: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in json_path.chars() {
        match c {
            '[' => {
                if depth == 0 {
                    out.push_str("[]");
                }
                depth += 1;
            }
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The paths (jsonPath style) of every `date-time` field under `schema`.
fn time_fields(schema: &Value, path: &str, out: &mut Vec<String>) {
    if schema["format"] == "date-time" {
        out.push(path.to_owned());
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            time_fields(property, &format!("{path}.{name}"), out);
        }
    }
    if schema["items"].is_object() {
        time_fields(&schema["items"], &format!("{path}[]"), out);
    }
}

#[test]
fn the_path_normalization_drops_indices_and_filters() {
    assert_eq!(normalize(".status.nextScheduleTime"), ".status.nextScheduleTime");
    assert_eq!(normalize(".status.active[0].scheduledTime"), ".status.active[].scheduledTime");
    assert_eq!(
        normalize(r#".status.conditions[?(@.type=="Ready")].lastTransitionTime"#),
        ".status.conditions[].lastTransitionTime"
    );
}

#[test]
fn every_time_field_is_known_to_be_past_or_future() {
    for (source, crd) in crds() {
        for version in versions(&crd) {
            let mut fields = Vec::new();
            time_fields(&version["schema"]["openAPIV3Schema"], "", &mut fields);
            assert!(fields.iter().any(|f| f == ".status.nextScheduleTime"), "{source}: no nextScheduleTime found");
            let unknown: Vec<_> =
                fields.iter().filter(|f| !FUTURE.contains(&f.as_str()) && !PAST.contains(&f.as_str())).collect();
            assert!(
                unknown.is_empty(),
                "{source}: list these time fields in PAST or FUTURE (crds/tests/printer_columns.rs): {unknown:?}"
            );
        }
    }
}

#[test]
fn no_date_column_shows_a_future_time() {
    for (source, crd) in crds() {
        for version in versions(&crd) {
            for column in version["additionalPrinterColumns"].as_array().into_iter().flatten() {
                if column["type"] != "date" {
                    continue;
                }
                let name = column["name"].as_str().unwrap_or_default();
                let path = normalize(column["jsonPath"].as_str().expect("a printer column has a jsonPath"));
                assert!(
                    !FUTURE.contains(&path.as_str()),
                    "{source}: column {name} shows the future time {path} as a date, which kubectl prints as <invalid>: make it a string"
                );
                assert!(
                    PAST.contains(&path.as_str()),
                    "{source}: date column {name} shows {path}, which is not known to hold a past time"
                );
            }
        }
    }
}

#[test]
fn the_next_columns_show_the_time_as_a_string() {
    for (source, crd) in crds() {
        for version in versions(&crd) {
            let columns = version["additionalPrinterColumns"].as_array().expect("printer columns");
            let next =
                columns.iter().find(|c| c["name"] == "Next").unwrap_or_else(|| panic!("{source}: no Next column"));
            assert_eq!(next["jsonPath"], ".status.nextScheduleTime", "{source}");
            assert_eq!(next["type"], "string", "{source}");
            // The past times keep their age: "Last 5m" reads better than a timestamp.
            for column in columns.iter().filter(|c| c["name"] == "Last" || c["name"] == "Age") {
                assert_eq!(column["type"], "date", "{source}: column {}", column["name"]);
            }
        }
    }
}
