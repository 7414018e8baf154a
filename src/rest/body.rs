//! Request bodies of the legacy API: JSON objects, or form-encoded fields
//! (as `curl -d a=b` sends them). Both become a JSON object.

use axum::{
    body::Bytes,
    http::{HeaderMap, header},
};
use serde_json::{Map, Value};

use crate::input::FormError;

/// Why a body could not be read as an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// No body at all (or only white space).
    Empty,
    /// JSON, but not an object; the JSON type's name (`list`, `str`, ...).
    NotAnObject(&'static str),
    /// Not JSON.
    Malformed(String),
    /// A form field (named) that is not UTF-8 once percent-decoded.
    NotUtf8(String),
}

/// The message the chat paths answer for any unusable body.
pub const EMPTY_OR_WRONG: &str = "Body is empty or wrong format";

/// A non-empty object, as the chat paths require.
pub fn chat_object(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, String> {
    match object(headers, body) {
        Ok(map) if !map.is_empty() => Ok(map),
        Err(BodyError::NotUtf8(field)) => Err(format!("{field}: {}", FormError::MESSAGE)),
        _ => Err(EMPTY_OR_WRONG.to_owned()),
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with("application/x-www-form-urlencoded"))
}

/// Read a body as a JSON object. Form fields become strings; a repeated
/// field becomes a list; `a.b=c` becomes `{"a": {"b": "c"}}`.
pub fn object(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    if is_form(headers) {
        let mut fields = Map::new();
        let pairs = crate::input::decode_form(body).map_err(|e| BodyError::NotUtf8(e.field))?;
        for (key, value) in pairs {
            let key: std::borrow::Cow<str> = std::borrow::Cow::Owned(key);
            let value = Value::String(value);
            // `profile[status]`, as OpenAPI's deepObject style writes it,
            // is the same field as `profile.status`.
            let key = match key.strip_suffix(']').and_then(|k| k.split_once('[')) {
                Some((parent, child)) => std::borrow::Cow::Owned(format!("{parent}.{child}")),
                None => key,
            };
            let (target, key) = match key.split_once('.') {
                Some((parent, child)) => {
                    let parent = fields
                        .entry(parent.to_owned())
                        .or_insert_with(|| Value::Object(Map::new()));
                    match parent {
                        Value::Object(map) => (map, child.to_owned()),
                        _ => continue,
                    }
                }
                None => (&mut fields, key.into_owned()),
            };
            match target.get_mut(&key) {
                Some(Value::Array(list)) => list.push(value),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, value]);
                }
                None => {
                    target.insert(key, value);
                }
            }
        }
        return Ok(fields);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Array(_)) => Err(BodyError::NotAnObject("list")),
        Ok(Value::String(_)) => Err(BodyError::NotAnObject("str")),
        Ok(Value::Number(_)) => Err(BodyError::NotAnObject("int")),
        Ok(Value::Bool(_)) => Err(BodyError::NotAnObject("bool")),
        Ok(Value::Null) => Err(BodyError::NotAnObject("NoneType")),
        Err(e) => Err(BodyError::Malformed(e.to_string())),
    }
}

/// Why a text field was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// Not a string (nor a number): the message for the field.
    Type(&'static str),
    /// A string that breaks [`crate::input`]'s rules: the message.
    Bad(String),
}

impl TextError {
    pub fn message(&self) -> &str {
        match self {
            TextError::Type(message) => message,
            TextError::Bad(message) => message,
        }
    }
}

/// A text field as DRF's CharField takes it: strings, and numbers as their
/// text; checked against [`crate::input`] (no NUL, not over-long).
pub fn text(value: &Value) -> Result<String, TextError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Null => return Err(TextError::Type("This field may not be null.")),
        _ => return Err(TextError::Type("Not a valid string.")),
    };
    match crate::input::problem(&text) {
        Some(message) => Err(TextError::Bad(message)),
        None => Ok(text),
    }
}

/// A positive integer id, given as a number (`7`, or `7.0` as JSON
/// allows for an integer) or as text.
pub fn positive_id(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn form() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers
    }

    #[test]
    fn json_objects_only() {
        let headers = HeaderMap::new();
        assert_eq!(
            object(&headers, &Bytes::from_static(b"")),
            Err(BodyError::Empty)
        );
        assert_eq!(
            object(&headers, &Bytes::from_static(b"[]")),
            Err(BodyError::NotAnObject("list"))
        );
        assert!(object(&headers, &Bytes::from_static(b"{nope")).is_err());
        assert!(
            object(&headers, &Bytes::from_static(b"{}"))
                .unwrap()
                .is_empty()
        );
        assert!(chat_object(&headers, &Bytes::from_static(b"{}")).is_err());
        assert!(chat_object(&headers, &Bytes::from_static(b"[{\"a\":1}]")).is_err());
        let map = object(&headers, &Bytes::from_static(b"{\"from\": 2}")).unwrap();
        assert_eq!(map["from"], json!(2));
    }

    #[test]
    fn forms() {
        let map = object(
            &form(),
            &Bytes::from_static(
                b"from=2&text=hey+man&profile.status=Busy&profile[status_msg]=x&m=a&m=b",
            ),
        )
        .unwrap();
        assert_eq!(map["from"], json!("2"));
        assert_eq!(map["text"], json!("hey man"));
        assert_eq!(map["profile"], json!({"status": "Busy", "status_msg": "x"}));
        assert_eq!(map["m"], json!(["a", "b"]));
    }

    #[test]
    fn coercions() {
        assert_eq!(text(&json!(5)).unwrap(), "5");
        assert!(text(&json!(true)).is_err());
        assert!(matches!(text(&json!("a\u{0}")), Err(TextError::Bad(_))));
        assert_eq!(positive_id(&json!("7")), Some(7));
        assert_eq!(positive_id(&json!(1375.0)), Some(1375));
        assert_eq!(positive_id(&json!(1.5)), None);
        assert_eq!(positive_id(&json!(0)), None);
        assert_eq!(positive_id(&json!("x")), None);
    }
}
