//! The rules the server enforces on input, declared in the OpenAPI document, so that what the
//! document calls valid is accepted and what it calls invalid is refused (`scripts/api-fuzz` holds
//! the server to both): text patterns (one line, no control characters, email addresses), which
//! recipients a send needs, and the typed specs of reminders and broadcasts, taken from the custom
//! resources' own schemas with the API's differences.
//!
//! The patterns mirror the validators (`borcelle_crds::text`, `borcelle_engine::validate` and the
//! contact rules); a test checks each against its validator over generated text.

use serde_json::{Map, Value, json};

/// C0 and C1 control characters and DEL: what Rust's `char::is_control` refuses.
const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";
/// Controls but tab, line feed and carriage return: what multi-line text may not hold.
const CONTROL_BUT_LINES: &str = r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F";

/// One line with at least one character that is not a space (surrounding spaces are trimmed).
pub fn one_line() -> String {
    format!(r"^[^{CONTROL}]*[^\s{CONTROL}][^{CONTROL}]*$")
}

/// One line, possibly blank (blank reads as absent).
pub fn one_line_or_blank() -> String {
    format!(r"^[^{CONTROL}]*$")
}

/// Text over several lines with at least one character that is not a space.
pub fn text() -> String {
    format!(r"^[^{CONTROL_BUT_LINES}]*[^\s{CONTROL_BUT_LINES}][^{CONTROL_BUT_LINES}]*$")
}

/// Text over several lines, possibly blank.
pub fn text_or_blank() -> String {
    format!(r"^[^{CONTROL_BUT_LINES}]*$")
}

/// Anything PostgreSQL can store (no NUL).
pub const NO_NUL: &str = r"^[^\u0000]*$";

/// An email address as `borcelle_crds::text::email_address` reads it (surrounding spaces trimmed,
/// any case): a dot-atom of at most 64 characters, `@`, DNS labels with a top level that is not
/// all digits.
pub fn email() -> String {
    let atom = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";
    let label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    format!(r"^\s*(?=[^@\s]{{1,64}}@){atom}(?:\.{atom})*@(?:{label}\.)+(?![0-9]+\s*$){label}\s*$")
}

/// A phone number with its country code, as the contact rules read it: separators (spaces, dots,
/// dashes, parentheses) anywhere, `+` or `00`, then 7 to 15 digits not starting with 0; or blank.
pub fn phone() -> String {
    let sep = r"[ .()\u00A0-]*";
    format!(r"^\s*$|^\s*{sep}(?:\+|0{sep}0){sep}[1-9](?:{sep}[0-9]){{6,14}}{sep}\s*$")
}

/// The schedules the document promises: five fields of single values, `*` and `*/step` (within
/// each field's range, and days of month up to 28 so that every schedule runs), or a macro. The
/// server reads the whole cron syntax (ranges `a-b`, lists of them, month and weekday names, 7 for
/// Sunday); this is the part that any schema-valid value can be, so that no valid-looking
/// schedule is refused.
pub fn schedule() -> String {
    let field = |value: &str, step: &str| format!(r"(?:\*(?:/(?:{step}))?|{value})");
    let minute = field("[0-5]?[0-9]", "[1-9]|[1-5][0-9]");
    let hour = field("[01]?[0-9]|2[0-3]", "[1-9]|1[0-9]|2[0-3]");
    let day = field("[1-9]|1[0-9]|2[0-8]", "[1-9]|[12][0-9]|30");
    let month = field("[1-9]|1[0-2]", "[1-9]|1[01]");
    let weekday = field("[0-6]", "[1-6]");
    format!(r"^(?:@(?:hourly|daily|weekly|monthly|yearly|annually|midnight)|{minute} {hour} {day} {month} {weekday})$")
}

/// Sets `rules` (merged) on the schema of `property` in the component `schema`.
fn set(doc: &mut Value, schema: &str, property: &str, rules: Value) {
    let Some(target) = doc.pointer_mut(&format!("/components/schemas/{schema}/properties/{property}")) else {
        return;
    };
    merge_into(target, rules);
}

fn merge_into(target: &mut Value, rules: Value) {
    if let (Some(target), Value::Object(rules)) = (target.as_object_mut(), rules) {
        target.extend(rules);
    }
}

/// A one-line text rule of at most `max` characters.
fn line(max: usize) -> Value {
    json!({ "pattern": one_line(), "minLength": 1, "maxLength": max })
}

/// Who a send goes to: contact ids (at least one) or a tag that is not blank, not both.
fn recipients_rule() -> Value {
    json!({
        "oneOf": [
            {
                "required": ["contact_ids"],
                "properties": {
                    "contact_ids": { "type": "array", "minItems": 1 },
                    "tag": { "type": ["string", "null"], "pattern": r"^\s*$" }
                }
            },
            {
                "required": ["tag"],
                "properties": { "tag": { "type": "string", "pattern": one_line() }, "contact_ids": { "type": "null" } }
            }
        ]
    })
}

/// Declares the rules in `doc`, the document the routes produced.
pub fn declare(doc: &mut Value) {
    let email = json!({ "pattern": email(), "maxLength": 254 });
    for (schema, property) in
        [("ContactInput", "email"), ("RegisterBody", "email"), ("LoginBody", "email"), ("EmailBody", "email")]
    {
        set(doc, schema, property, email.clone());
    }
    // Contacts: the same rules on create and on a partial update (where `null` is "no change").
    for schema in ["ContactInput", "ContactPatch"] {
        set(doc, schema, "name", line(200));
        for names in ["first_name", "last_name"] {
            set(doc, schema, names, json!({ "pattern": one_line_or_blank(), "maxLength": 100 }));
        }
        set(doc, schema, "email", email.clone());
        set(doc, schema, "company", json!({ "pattern": one_line_or_blank(), "maxLength": 200 }));
        set(doc, schema, "tax_id", json!({ "pattern": one_line_or_blank(), "maxLength": 64 }));
        set(doc, schema, "address", json!({ "pattern": text_or_blank(), "maxLength": 1000 }));
        set(doc, schema, "notes", json!({ "pattern": text_or_blank(), "maxLength": 10000 }));
        set(doc, schema, "phone", json!({ "pattern": phone() }));
        set(
            doc,
            schema,
            "tags",
            json!({ "maxItems": 50, "items": { "type": "string", "maxLength": 50, "pattern": format!(r"^[^,{CONTROL}]*$") } }),
        );
    }
    set(doc, "RegisterBody", "display_name", line(100));
    set(doc, "CreateBody", "name", line(100));
    for (schema, property) in [("LoginBody", "password"), ("ChangePasswordBody", "current_password")] {
        set(doc, schema, property, json!({ "minLength": 1 }));
    }
    for schema in ["TokenBody", "ResetBody"] {
        set(doc, schema, "token", json!({ "minLength": 1, "maxLength": 200 }));
    }
    for (schema, subject) in
        [("SendBody", "subject"), ("NoteBody", "title"), ("NotePatch", "title"), ("PreviewBody", "subject")]
    {
        set(doc, schema, subject, line(200));
    }
    set(doc, "SuppressionBody", "email", email.clone());
    set(doc, "SuppressionBody", "detail", json!({ "pattern": one_line_or_blank(), "maxLength": 1000 }));
    for schema in ["SendBody", "NoteBody", "NotePatch", "PreviewBody"] {
        set(doc, schema, "body", json!({ "pattern": text(), "minLength": 1, "maxLength": 100_000 }));
    }
    for schema in ["SendBody", "NoteSendBody"] {
        set(doc, schema, "contact_ids", json!({ "maxItems": 10_000 }));
        set(doc, schema, "tag", json!({ "maxLength": 50 }));
        set(doc, schema, "attachment_ids", json!({ "maxItems": 50 }));
        if let Some(body) = doc.pointer_mut(&format!("/components/schemas/{schema}")) {
            merge_into(body, recipients_rule());
        }
    }
    if let Some(upload) = doc.pointer_mut("/components/schemas/UploadForm") {
        merge_into(upload, json!({ "additionalProperties": false }));
    }
    // An empty file is refused (nothing to send).
    set(doc, "UploadForm", "file", json!({ "minLength": 1 }));
    for (path, name, rules) in [
        ("/api/v1/reminders/preview", "schedule", json!({ "pattern": schedule(), "maxLength": 200 })),
        ("/api/v1/reminders/preview", "timeZone", json!({ "enum": time_zones() })),
    ] {
        set_parameter(doc, path, name, rules);
    }
    typed_specs(doc);
}

fn set_parameter(doc: &mut Value, path: &str, name: &str, rules: Value) {
    let Some(parameters) = doc.pointer_mut(&format!("/paths/{}/get/parameters", path.replace('/', "~1"))) else {
        return;
    };
    for parameter in parameters.as_array_mut().into_iter().flatten() {
        if parameter["name"] == name
            && let Some(schema) = parameter.get_mut("schema")
        {
            merge_into(schema, rules.clone());
        }
    }
}

/// Every IANA time zone name the server knows.
fn time_zones() -> Vec<&'static str> {
    borcelle_crds::schedule::time_zone_names().collect()
}

/// The CRD schema of a spec as the API reads it: OpenAPI 3.1 types (`nullable` becomes a `null`
/// type only where the API takes `null`, which it never does in a spec), no unknown fields, no
/// Kubernetes extensions.
fn api_schema(mut schema: Value) -> Value {
    fn walk(value: &mut Value) {
        if let Some(object) = value.as_object_mut() {
            object.retain(|key, _| !key.starts_with("x-kubernetes-") && key != "nullable" && key != "default");
            if object.get("type") == Some(&json!("object")) && object.contains_key("properties") {
                object.insert("additionalProperties".into(), json!(false));
            }
            for child in object.values_mut() {
                walk(child);
            }
        } else if let Some(items) = value.as_array_mut() {
            items.iter_mut().for_each(walk);
        }
    }
    walk(&mut schema);
    schema
}

fn properties(schema: &mut Value) -> &mut Map<String, Value> {
    if schema.get("properties").is_none() {
        schema["properties"] = json!({});
    }
    match schema["properties"].as_object_mut() {
        Some(properties) => properties,
        None => unreachable!("set just above"),
    }
}

fn reminder_spec(crd: Value) -> Value {
    let mut spec = api_schema(crd);
    spec.as_object_mut().map(|s| s.remove("description"));
    spec["description"] = json!(
        "A ScheduledReminder's spec. `owner` is left out: it is the caller. Ids are the caller's \
         (another user's answer 404)."
    );
    let uuid = json!({ "type": "string", "format": "uuid", "minLength": 36, "maxLength": 36 });
    let props = properties(&mut spec);
    props.remove("owner");
    props["subject"]["pattern"] = json!(one_line_or_blank());
    props["body"]["pattern"] = json!(NO_NUL);
    props["noteId"] = uuid.clone();
    props["attachments"]["items"] = uuid.clone();
    props["schedule"] = json!({ "type": "string", "pattern": schedule(), "maxLength": 200,
        "description": props["schedule"]["description"].clone() });
    props["timeZone"] = json!({ "type": "string", "enum": time_zones() });
    props["startingDeadlineSeconds"]["minimum"] = json!(0);
    for limit in ["successfulRunsHistoryLimit", "failedRunsHistoryLimit"] {
        props[limit]["minimum"] = json!(0);
        props[limit]["maximum"] = json!(i32::MAX);
    }
    let recipients = &mut props["recipients"];
    recipients["properties"]["contactIds"]["items"] = uuid;
    recipients["properties"]["emails"]["items"] = json!({ "type": "string", "pattern": email(), "maxLength": 254 });
    recipients["properties"]["tag"]["pattern"] = json!(NO_NUL);
    recipients["anyOf"] = json!([
        { "required": ["contactIds"], "properties": { "contactIds": { "minItems": 1 } } },
        { "required": ["emails"], "properties": { "emails": { "minItems": 1 } } },
        { "required": ["tag"] }
    ]);
    spec["required"] = json!(["recipients", "schedule", "subject"]);
    spec["oneOf"] = json!([{ "required": ["body"] }, { "required": ["noteId"] }]);
    spec
}

fn broadcast_spec(crd: Value) -> Value {
    let mut spec = api_schema(crd);
    let props = properties(&mut spec);
    props["title"]["pattern"] = json!(one_line_or_blank());
    props["message"]["pattern"] = json!(NO_NUL);
    props["schedule"] = json!({ "type": "string", "pattern": schedule(), "maxLength": 200,
        "description": props["schedule"]["description"].clone() });
    props["timeZone"] = json!({ "type": "string", "enum": time_zones() });
    props["startingDeadlineSeconds"]["minimum"] = json!(0);
    props["channels"]["uniqueItems"] = json!(true);
    let audience = &mut props["audience"];
    audience["properties"]["users"]["items"]["pattern"] = json!(NO_NUL);
    audience["oneOf"] = json!([
        {
            "required": ["group", "users"],
            "properties": { "group": { "const": "users" }, "users": { "minItems": 1 } }
        },
        { "properties": { "group": { "enum": ["all", "admins"] }, "users": { "maxItems": 0 } } }
    ]);
    // At most one of `at` and `schedule`; `timeZone` only with `schedule`.
    spec["dependentSchemas"] = json!({ "at": { "properties": { "schedule": false } } });
    spec["dependentRequired"] = json!({ "timeZone": ["schedule"] });
    spec
}

/// A merge patch of `spec`: every field optional, `null` removes one; what the patched spec must
/// be is the spec's own schema (checked after merging, against what is stored).
fn patch_of(spec: &Value, description: &str) -> Value {
    let mut fields = Map::new();
    for (name, schema) in spec["properties"].as_object().into_iter().flatten() {
        let mut schema = schema.clone();
        if let Some(object) = schema.as_object_mut() {
            // Nested objects merge too: their fields are optional as well.
            object.remove("required");
            object.remove("anyOf");
            object.remove("oneOf");
        }
        fields.insert(name.clone(), json!({ "anyOf": [schema, { "type": "null" }] }));
    }
    json!({ "type": "object", "description": description, "properties": fields, "additionalProperties": false })
}

/// Replaces the untyped `spec` of the reminder and broadcast operations with typed ones.
fn typed_specs(doc: &mut Value) {
    let [reminder, broadcast] = borcelle_crds::spec_schemas();
    let reminder = reminder_spec(reminder);
    let broadcast = broadcast_spec(broadcast);
    let name = doc.pointer("/components/schemas/ScheduleCreate/properties/name").cloned().unwrap_or(json!({}));
    let create = |spec: &str, what: &str, max_name: usize| {
        let mut name = name.clone();
        name["maxLength"] = json!(max_name);
        json!({ "type": "object", "description": format!("`{{name, spec}}`: a new {what}."),
            "required": ["name", "spec"], "additionalProperties": false,
            "properties": { "name": name, "spec": { "$ref": format!("#/components/schemas/{spec}") } } })
    };
    let patch = |spec: &str| {
        json!({ "type": "object", "description": "`{spec}`: a JSON merge patch (RFC 7386) of the spec.",
            "required": ["spec"], "additionalProperties": false,
            "properties": { "spec": { "$ref": format!("#/components/schemas/{spec}") } } })
    };
    let patch_description = "A JSON merge patch of the spec: a field sent replaces the stored one, `null` removes it, \
        objects merge; the patched spec must then be valid as a whole.";
    let schemas = [
        ("ReminderSpec", reminder.clone()),
        ("ReminderSpecPatch", patch_of(&reminder, patch_description)),
        ("BroadcastSpec", broadcast.clone()),
        ("BroadcastSpecPatch", patch_of(&broadcast, patch_description)),
        // A reminder's name leaves room for the owner's part of the resource name in Kubernetes.
        ("ReminderCreate", create("ReminderSpec", "reminder", 54)),
        ("ReminderPatch", patch("ReminderSpecPatch")),
        ("BroadcastCreate", create("BroadcastSpec", "broadcast", 63)),
        ("BroadcastPatch", patch("BroadcastSpecPatch")),
    ];
    if let Some(components) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        for (name, schema) in schemas {
            components.insert(name.to_owned(), schema);
        }
        components.remove("ScheduleCreate");
        components.remove("SchedulePatch");
    }
    for (path, method, body) in [
        ("/api/v1/reminders", "post", "ReminderCreate"),
        ("/api/v1/reminders/{name}", "patch", "ReminderPatch"),
        ("/api/v1/admin/broadcasts", "post", "BroadcastCreate"),
        ("/api/v1/admin/broadcasts/{name}", "patch", "BroadcastPatch"),
    ] {
        let pointer =
            format!("/paths/{}/{method}/requestBody/content/application~1json/schema", path.replace('/', "~1"));
        if let Some(schema) = doc.pointer_mut(&pointer) {
            *schema = json!({ "$ref": format!("#/components/schemas/{body}") });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use fancy_regex::Regex;
    use proptest::prelude::*;

    use super::*;

    fn matches(pattern: &str, value: &str) -> bool {
        Regex::new(pattern).unwrap().is_match(value).unwrap()
    }

    /// Text built from the characters the rules care about.
    fn texts() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "a", "Z", "é", " ", "\t", "\n", "\r", "\u{0}", "\u{7}", "\u{7f}", "\u{85}", "\u{9f}", "\u{a0}", ",", "@",
            ".", "-", "+", "0", "1", "9", "(", ")", "x", "中", "😀", "\u{2028}",
        ]);
        prop::collection::vec(pieces, 0..12).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn one_line_patterns_agree_with_the_validator(value in texts()) {
            let valid = borcelle_engine::validate::one_line("f", &value, 1000).is_ok();
            prop_assert_eq!(matches(&one_line(), &value), valid, "{:?}", value);
            // An optional one-line field (a company): blank reads as absent, a control anywhere is refused.
            let input = borcelle_engine::contacts::ContactInput {
                name: "N".into(),
                email: "n@example.com".into(),
                company: Some(value.clone()),
                ..Default::default()
            };
            prop_assert_eq!(matches(&one_line_or_blank(), &value), input.validate().is_ok(), "{:?}", value);
        }

        #[test]
        fn the_email_pattern_agrees_with_the_validator(value in texts(), local in "[a-z0-9.+-]{0,70}", domain in "[a-z0-9.-]{0,20}") {
            for candidate in [value.clone(), format!("{local}@{domain}"), format!(" {local}@{domain}.com "), format!("{local}@x.{domain}")] {
                let valid = borcelle_crds::text::email_address(&candidate).is_ok() && candidate.chars().count() <= 254;
                prop_assert_eq!(matches(&email(), &candidate), valid, "{:?}", candidate);
            }
        }

        #[test]
        fn the_phone_pattern_agrees_with_the_contact_rules(value in texts(), digits in "[0-9 .()-]{0,20}") {
            for candidate in [value.clone(), format!("+{digits}"), format!("00{digits}"), format!(" +{digits} ")] {
                let trimmed = candidate.trim();
                let valid = trimmed.is_empty() || borcelle_engine::contacts::phone(trimmed).is_ok();
                prop_assert_eq!(matches(&phone(), &candidate), valid, "{:?}", candidate);
            }
        }

        #[test]
        fn every_schedule_the_pattern_allows_parses_and_runs(minute in 0u32..60, hour in 0u32..24, day in 1u32..29, month in 1u32..13, weekday in 0u32..7, step in 1u32..60, star in 0usize..5) {
            let mut fields = [minute.to_string(), hour.to_string(), day.to_string(), month.to_string(), weekday.to_string()];
            let spans = [59, 23, 30, 11, 6];
            fields[star] = if step <= spans[star] { format!("*/{step}") } else { "*".to_owned() };
            let schedule_text = fields.join(" ");
            prop_assert!(matches(&schedule(), &schedule_text), "{}", schedule_text);
            let parsed = schedule_text.parse::<borcelle_crds::schedule::Schedule>();
            prop_assert!(parsed.is_ok(), "{}: {:?}", schedule_text, parsed.err());
        }
    }

    #[test]
    fn text_patterns_keep_lines_and_refuse_other_controls() {
        assert!(matches(&text(), "line one\r\n\tline two"));
        assert!(!matches(&text(), "bell \u{7}"));
        assert!(!matches(&text(), " \n\t "));
        assert!(matches(&text_or_blank(), " \n\t "));
        assert!(!matches(NO_NUL, "a\u{0}b"));
    }

    #[test]
    fn typed_specs_replace_the_untyped_bodies() {
        let mut doc = json!({
            "components": { "schemas": {
                "ScheduleCreate": { "properties": { "name": { "type": "string" } } },
                "SchedulePatch": {}
            } },
            "paths": { "/api/v1/reminders": { "post": { "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ScheduleCreate" } } } } } } }
        });
        typed_specs(&mut doc);
        assert_eq!(
            doc.pointer("/paths/~1api~1v1~1reminders/post/requestBody/content/application~1json/schema/$ref"),
            Some(&json!("#/components/schemas/ReminderCreate"))
        );
        let spec = &doc["components"]["schemas"]["ReminderSpec"];
        assert!(spec["properties"].get("owner").is_none(), "the owner is the caller");
        assert_eq!(spec["additionalProperties"], json!(false));
        assert!(!doc.to_string().contains("x-kubernetes"));
        assert!(doc["components"]["schemas"].get("ScheduleCreate").is_none());
    }
}
