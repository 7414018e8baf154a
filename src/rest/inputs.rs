//! Every string a legacy request carries, checked before any handler runs:
//! query parameters and form fields must be UTF-8 once percent-decoded, and
//! every query value, form value and JSON string must pass
//! [`crate::input`]. A bad one is a 400 naming the field, in the shape of
//! the path's family (`{"field": [...]}` under `/users/`, the chat error
//! envelope under `/chat/`).

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde_json::Value;

use super::reply::{ChatError, UsersError};
use crate::{
    error::FieldErrors,
    input::{self, FormError},
};

fn refuse(users: bool, field: &str, message: &str) -> Response {
    if users {
        let mut errors = FieldErrors::new();
        errors.insert(field.to_owned(), vec![message.to_owned()]);
        UsersError::fields(&errors).into_response()
    } else {
        ChatError::bad_request(format!("{field}: {message}")).into_response()
    }
}

/// The first bad string of a form (query string or body), with its field.
fn form_problem(raw: &[u8]) -> Option<(String, String)> {
    match input::decode_form(raw) {
        Err(FormError { field }) => Some((field, FormError::MESSAGE.to_owned())),
        Ok(pairs) => pairs.into_iter().find_map(|(name, value)| {
            input::problem(&name)
                .or_else(|| input::problem(&value))
                .map(|message| (name, message))
        }),
    }
}

/// The first bad string of a JSON value, with its dotted path.
fn json_problem(path: &str, value: &Value) -> Option<(String, String)> {
    match value {
        Value::String(text) => input::problem(text).map(|message| (path.to_owned(), message)),
        Value::Array(items) => items.iter().find_map(|item| json_problem(path, item)),
        Value::Object(fields) => fields.iter().find_map(|(name, item)| {
            let field = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            input::problem(name)
                .map(|message| (field.clone(), message))
                .or_else(|| json_problem(&field, item))
        }),
        _ => None,
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with("application/x-www-form-urlencoded"))
}

pub async fn check(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let users = request.uri().path().starts_with("/users");
    if let Some((field, message)) = request
        .uri()
        .query()
        .and_then(|query| form_problem(query.as_bytes()))
    {
        return refuse(users, &field, &message);
    }
    let (parts, body) = request.into_parts();
    // The transport has read the body already (within its deadline and
    // size limit): this only takes it out of its buffer.
    let bytes: Bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    if !bytes.is_empty() {
        let problem = if is_form(&parts.headers) {
            form_problem(&bytes)
        } else {
            // Bodies that are not JSON are the handlers' to refuse.
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|value| json_problem("", &value))
        };
        if let Some((field, message)) = problem {
            return refuse(users, &field, &message);
        }
    }
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_strings_are_found_with_their_field() {
        assert_eq!(
            json_problem("", &json!({"profile": {"status_msg": "a\u{0}"}})).map(|p| p.0),
            Some("profile.status_msg".to_owned())
        );
        assert_eq!(
            json_problem(
                "",
                &json!({"room_member": [{"username": "ok"}, {"username": "\u{0}"}]})
            )
            .map(|p| p.0),
            Some("room_member.username".to_owned())
        );
        assert!(json_problem("", &json!({"from": 2, "text": "fine"})).is_none());
        assert_eq!(
            form_problem(b"username=%00").map(|p| p.0),
            Some("username".into())
        );
        assert_eq!(
            form_problem(b"username=%C3").map(|p| p.0),
            Some("username".into())
        );
        assert!(form_problem(b"username=user_1&x=%C3%A9").is_none());
    }
}
