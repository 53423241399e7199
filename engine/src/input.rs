//! Reading structured input (a JSON body, a resource's spec) into typed values, with an error
//! that names the field to fix.

use serde::de::DeserializeOwned;

use crate::Error;

/// Reads a JSON value (a part of a body) into `T`, naming offending fields under `prefix`.
pub fn parse_value<T: DeserializeOwned>(value: serde_json::Value, prefix: &str) -> Result<T, Error> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." || path.is_empty() { prefix.to_owned() } else { format!("{prefix}.{path}") };
        let (field, message) = field_error(path, &err.into_inner());
        Error::invalid(field, message)
    })
}

/// The field a data error is about and a message without serde's position (`at line 1 column 9`):
/// a missing field's path is its parent's, so its name is added; an unknown field's path already
/// ends with it.
pub fn field_error(path: String, err: &serde_json::Error) -> (String, String) {
    let message = err.to_string();
    let top_level = path == "." || path.is_empty();
    let field = match backticked(&message) {
        Some(name) if message.starts_with("missing field") && top_level => name.to_owned(),
        Some(name) if message.starts_with("missing field") => format!("{path}.{name}"),
        Some(name) if message.starts_with("unknown field") && top_level => name.to_owned(),
        _ => path,
    };
    let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
    (field, message)
}

/// The first name between backticks in a serde message (`missing field `email``).
pub fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(&message[start..end])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Spec {
        title: String,
        audience: Audience,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Audience {
        group: String,
    }

    fn field_of(value: serde_json::Value) -> String {
        match parse_value::<Spec>(value, "spec") {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field_under_the_prefix() {
        assert_eq!(field_of(json!({"audience": {"group": "all"}})), "spec.title");
        assert_eq!(field_of(json!({"title": 3, "audience": {"group": "all"}})), "spec.title");
        assert_eq!(field_of(json!({"title": "t", "audience": {}})), "spec.audience.group");
        assert_eq!(field_of(json!({"title": "t", "audience": {"group": "all"}, "x": 1})), "spec.x");
        assert_eq!(field_of(json!([1])), "spec.[0]", "an array is read as the fields in order");
    }
}
