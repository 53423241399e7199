//! Reading structured input (a JSON body, a resource's spec) into typed values, with an error
//! that names the field to fix.

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::Error;

/// Reads a JSON value (a part of a body) into `T`, naming offending fields under `prefix`. An
/// object is read only from an object: serde would also take an array as the fields in order,
/// which no document promises (`[["id"], ["a@example.com"]]` for a reminder's recipients).
pub fn parse_value<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, Error> {
    serde_path_to_error::deserialize::<_, T>(Strict(&value)).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." || path.is_empty() { prefix.to_owned() } else { format!("{prefix}.{path}") };
        let (field, message) = field_error(path, &err.into_inner());
        Error::invalid(field, message)
    })
}

/// A JSON value read as serde_json reads one, except that a struct comes only from an object.
struct Strict<'a>(&'a Value);

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("a number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

impl<'de> Deserializer<'de> for Strict<'_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            // A whole number written with a fraction (`3.0`) is an integer to JSON Schema, so here too.
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => visitor.visit_i64(f as i64),
                _ => n.deserialize_any(visitor).map_err(de::Error::custom),
            },
            Value::String(s) => visitor.visit_str(s),
            Value::Array(items) => visitor.visit_seq(Items(items.iter())),
            Value::Object(map) => visitor.visit_map(Fields { entries: map.iter(), value: None }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Fields { entries: map.iter(), value: None }),
            other => Err(de::Error::invalid_type(unexpected(other), &"an object")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            // The specs' enums are unit variants, written as their name.
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            other => other.clone().deserialize_enum(name, variants, visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        seq tuple tuple_struct map identifier ignored_any
    }
}

struct Items<'a>(std::slice::Iter<'a, Value>);

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = serde_json::Error;

    fn next_element_seed<S: de::DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>, Self::Error> {
        self.0.next().map(|item| seed.deserialize(Strict(item))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Fields<'a> {
    entries: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = serde_json::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(key.as_str().into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: de::DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Self::Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(Strict(value)),
            None => Err(de::Error::custom("a value without its key")),
        }
    }
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
        assert_eq!(field_of(json!([1])), "spec", "an array is not an object");
        assert_eq!(field_of(json!({"title": "t", "audience": ["all"]})), "spec.audience", "nor at any depth");
    }
}
