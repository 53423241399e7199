//! The committed CRDs refuse bad resources the way the API server will: their structural schema
//! (types, enums, required fields, lengths) and their CEL rules, evaluated here with kube's CEL
//! validator. The example manifests in deploy/examples pass both and parse into the types.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use borcelle_crds::{Broadcast, ScheduledReminder};
use kube::core::cel::{Validator, compile_schema};
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The openAPIV3Schema of a committed CRD.
fn schema(file: &str) -> Value {
    let text = std::fs::read_to_string(root().join("deploy/crds").join(file)).unwrap();
    let crd: Value = serde_yaml::from_str(&text).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn reminders() -> Value {
    schema("scheduledreminders.crm.borcelle.io.yaml")
}

fn broadcasts() -> Value {
    schema("broadcasts.crm.borcelle.io.yaml")
}

/// Structural checks of the subset of OpenAPI the CRDs use: type, enum, required, properties
/// (no unknown fields: the schemas do not preserve them), items, lengths, nullable.
fn structural(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema["nullable"] != json!(true) {
            errors.push(format!("{path}: must not be null"));
        }
        return;
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(format!("{path}: expected {ty}, got {value}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    if let Some(s) = value.as_str() {
        let n = s.chars().count() as u64;
        if schema["maxLength"].as_u64().is_some_and(|m| n > m) || schema["minLength"].as_u64().is_some_and(|m| n < m) {
            errors.push(format!("{path}: length {n} is out of bounds"));
        }
    }
    if let Some(items) = value.as_array() {
        if schema["maxItems"].as_u64().is_some_and(|m| items.len() as u64 > m)
            || schema["minItems"].as_u64().is_some_and(|m| (items.len() as u64) < m)
        {
            errors.push(format!("{path}: {} items is out of bounds", items.len()));
        }
        for (i, item) in items.iter().enumerate() {
            structural(&schema["items"], item, &format!("{path}[{i}]"), errors);
        }
    }
    if let Some(map) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !map.contains_key(required) {
                errors.push(format!("{path}.{required}: required"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (key, child) in map {
                match properties.get(key) {
                    Some(child_schema) => structural(child_schema, child, &format!("{path}.{key}"), errors),
                    None if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") => {}
                    None => errors.push(format!("{path}.{key}: unknown field")),
                }
            }
        }
    }
}

/// Every refusal the API server would give: structural errors, then CEL rule messages.
fn refusals(schema: &Value, object: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    structural(schema, object, "", &mut errors);
    if let Err(cel) = Validator::new().validate(schema, object, None) {
        errors.extend(cel.into_vec().into_iter().map(|e| format!("{}: {}", e.field_path, e.message)));
    }
    errors
}

fn reminder(spec: Value) -> Value {
    json!({ "apiVersion": "crm.borcelle.io/v1alpha1", "kind": "ScheduledReminder", "metadata": { "name": "r" }, "spec": spec })
}

fn broadcast(spec: Value) -> Value {
    json!({ "apiVersion": "crm.borcelle.io/v1alpha1", "kind": "Broadcast", "metadata": { "name": "b" }, "spec": spec })
}

/// Counts the compiled rules of a schema tree, failing on any that does not compile.
fn compiled_rules(node: &kube::core::cel::CompiledSchema, path: &str) -> usize {
    let mut count = 0;
    for rule in &node.validations {
        match rule {
            Ok(_) => count += 1,
            Err(err) => panic!("{path}: a CEL rule does not compile: {err:?}"),
        }
    }
    for (name, child) in &node.properties {
        count += compiled_rules(child, &format!("{path}.{name}"));
    }
    if let Some(items) = &node.items {
        count += compiled_rules(items, &format!("{path}[]"));
    }
    count
}

#[test]
fn every_cel_rule_compiles() {
    // ScheduledReminder: body/noteId, a one-line subject, recipients, their emails, three
    // non-negative limits.
    assert_eq!(compiled_rules(&compile_schema(&reminders()), "ScheduledReminder"), 7);
    // Broadcast: a one-line title, at/schedule, timeZone, audience, startingDeadlineSeconds.
    assert_eq!(compiled_rules(&compile_schema(&broadcasts()), "Broadcast"), 5);
    let broken = json!({ "type": "object", "properties": { "a": { "type": "integer" } }, "x-kubernetes-validations": [{ "rule": "self.a >" }] });
    assert!(compile_schema(&broken).validations.iter().all(Result::is_err), "the check itself can fail");
}

#[test]
fn the_example_manifests_are_valid_resources() {
    let dir = root().join("deploy/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let object: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let (schema, parses) = match object["kind"].as_str() {
            Some("ScheduledReminder") => {
                let parsed: Result<ScheduledReminder, _> = serde_json::from_value(object.clone());
                let timing_ok = parsed.as_ref().is_ok_and(|r| r.spec.timing().is_ok());
                (reminders(), parsed.is_ok() && timing_ok)
            }
            Some("Broadcast") => {
                let parsed: Result<Broadcast, _> = serde_json::from_value(object.clone());
                let timing_ok = parsed.as_ref().is_ok_and(|b| b.spec.timing(chrono::Utc::now()).is_ok());
                (broadcasts(), parsed.is_ok() && timing_ok)
            }
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        };
        assert_eq!(refusals(&schema, &object), Vec::<String>::new(), "{}", path.display());
        assert!(parses, "{} parses into the types with a valid schedule", path.display());
        seen += 1;
    }
    assert!(seen >= 3, "the examples are there");
}

#[test]
fn bad_reminders_are_refused_by_the_schema_with_a_reason() {
    let good = json!({ "owner": "a@example.com", "recipients": { "tag": "clients" }, "subject": "Hi", "body": "Text", "schedule": "@daily" });
    assert_eq!(refusals(&reminders(), &reminder(good.clone())), Vec::<String>::new());
    let with = |patch: Value| {
        let mut spec = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                spec.as_object_mut().unwrap().remove(k);
            } else {
                spec[k] = v.clone();
            }
        }
        reminder(spec)
    };
    let cases = [
        (with(json!({ "noteId": "0195f0a1-7c4e-7b1a-9d2e-3f4a5b6c7d8e" })), "set exactly one of body and noteId"),
        (with(json!({ "body": null })), "set exactly one of body and noteId"),
        (with(json!({ "recipients": {} })), "name at least one recipient"),
        (with(json!({ "startingDeadlineSeconds": -1 })), "startingDeadlineSeconds must not be negative"),
        (with(json!({ "successfulRunsHistoryLimit": -3 })), "successfulRunsHistoryLimit must not be negative"),
        (with(json!({ "failedRunsHistoryLimit": -1 })), "failedRunsHistoryLimit must not be negative"),
        (with(json!({ "concurrencyPolicy": "Sometimes" })), "is not one of"),
        (with(json!({ "subject": "" })), "length 0 is out of bounds"),
        (with(json!({ "owner": null })), "spec.owner: required"),
        (with(json!({ "colour": "red" })), "spec.colour: unknown field"),
        (with(json!({ "suspend": "yes" })), "expected boolean"),
        // What would reach a mail header: a second line, or a recipient that is not an address.
        (with(json!({ "subject": "Hi\r\nBcc: victim@example.org" })), "subject must be one line"),
        (with(json!({ "recipients": { "emails": ["a@b"] } })), "must be an address"),
        (with(json!({ "recipients": { "emails": ["@example.com"] } })), "must be an address"),
        (
            with(json!({ "recipients": { "emails": ["a@example.com\r\nBcc: victim@example.org"] } })),
            "must be an address",
        ),
    ];
    for (object, expected) in cases {
        let got = refusals(&reminders(), &object);
        assert!(got.iter().any(|e| e.contains(expected)), "{}: expected {expected:?}, got {got:?}", object["spec"]);
    }
}

#[test]
fn bad_broadcasts_are_refused_by_the_schema_with_a_reason() {
    let good = json!({ "title": "T", "message": "M" });
    assert_eq!(refusals(&broadcasts(), &broadcast(good)), Vec::<String>::new());
    let cases = [
        (
            json!({ "title": "T", "message": "M", "at": "2030-01-01T00:00:00Z", "schedule": "@daily" }),
            "set at most one of at and schedule",
        ),
        (json!({ "title": "T", "message": "M", "timeZone": "Europe/Berlin" }), "timeZone applies to schedule only"),
        (
            json!({ "title": "T", "message": "M", "audience": { "group": "users" } }),
            "list users exactly when group is users",
        ),
        (
            json!({ "title": "T", "message": "M", "audience": { "group": "all", "users": ["a@example.com"] } }),
            "list users exactly when group is users",
        ),
        (json!({ "title": "T", "message": "M", "channels": [] }), "0 items is out of bounds"),
        (json!({ "title": "T", "message": "M", "channels": ["fax"] }), "is not one of"),
        (json!({ "title": "T", "message": "M", "severity": "panic" }), "is not one of"),
        (json!({ "title": "T", "message": "M", "startingDeadlineSeconds": -10 }), "must not be negative"),
        (json!({ "message": "M" }), "spec.title: required"),
        (json!({ "title": "T\nBcc: victim@example.org", "message": "M" }), "title must be one line"),
    ];
    for (spec, expected) in cases {
        let got = refusals(&broadcasts(), &broadcast(spec.clone()));
        assert!(got.iter().any(|e| e.contains(expected)), "{spec}: expected {expected:?}, got {got:?}");
    }
}
