//! The legacy answers: the `/chat/...` envelope, the DRF-style bodies of
//! `/users/...`, and the timestamp formats.

use axum::{
    body::Bytes,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::{AppError, AppResult, FieldErrors};

/// `2026-11-29T10:00:00.123456Z`.
pub fn iso(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `2026-11-29 10:00:00`, the format of `last_login`.
pub fn plain(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// JSON bytes as a response.
pub fn json_bytes(status: StatusCode, bytes: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

pub fn json_value(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => json_bytes(status, Bytes::from(bytes)),
        Err(e) => ChatError::from(AppError::internal(e)).into_response(),
    }
}

#[derive(Serialize)]
struct ChatOkEnvelope<T> {
    status: u16,
    message: &'static str,
    data: T,
}

/// A `/chat/...` success: `{"status": 200, "message": "HTTP_200_OK", "data": ...}`.
pub fn chat_ok(data: impl Serialize) -> Response {
    match chat_ok_bytes(data) {
        Ok(bytes) => json_bytes(StatusCode::OK, bytes),
        Err(e) => ChatError::from(e).into_response(),
    }
}

/// The body of [`chat_ok`], to keep.
pub fn chat_ok_bytes(data: impl Serialize) -> AppResult<Bytes> {
    let envelope = ChatOkEnvelope {
        status: 200,
        message: "HTTP_200_OK",
        data,
    };
    Ok(Bytes::from(
        serde_json::to_vec(&envelope).map_err(AppError::internal)?,
    ))
}

/// A `/chat/...` error: `{"status": <code>, "msg": "<reason>"}`.
#[derive(Debug)]
pub struct ChatError {
    pub status: StatusCode,
    pub msg: String,
    /// Seconds for `Retry-After` (a rate limit).
    pub retry_after: Option<u64>,
}

/// Seconds to wait, when the error is a rate limit.
fn retry_after(error: &AppError) -> Option<u64> {
    match error {
        AppError::RateLimited { retry_after, .. } => Some(retry_after.as_secs().max(1)),
        _ => None,
    }
}

fn with_retry_after(mut response: Response, seconds: Option<u64>) -> Response {
    if let Some(seconds) = seconds {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
    }
    response
}

impl ChatError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        ChatError {
            status,
            msg: msg.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, msg)
    }
}

/// The HTTP status legacy clients expect for an error.
pub fn status_of(error: &AppError) -> StatusCode {
    match error {
        AppError::NotFound(_) => StatusCode::NOT_FOUND,
        AppError::Forbidden(_) => StatusCode::FORBIDDEN,
        AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        AppError::Validation(_) | AppError::BadInput(_) | AppError::Conflict(_) => {
            StatusCode::BAD_REQUEST
        }
        AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn capitalized(text: String) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

impl From<AppError> for ChatError {
    fn from(error: AppError) -> Self {
        let status = status_of(&error);
        let msg = match &error {
            // A message that names its field already is shown as it is.
            AppError::Validation(fields) => fields
                .iter()
                .map(|(field, messages)| {
                    let text = messages.join(" ");
                    if text.starts_with(field.as_str()) {
                        text
                    } else {
                        format!("{field}: {text}")
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => capitalized(error.public_message()),
        };
        ChatError {
            status,
            msg,
            retry_after: retry_after(&error),
        }
    }
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        let body = json!({"status": self.status.as_u16(), "msg": self.msg});
        let response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        with_retry_after(response, self.retry_after)
    }
}

/// A `/users/...` error, shaped like Django REST Framework's.
#[derive(Debug)]
pub struct UsersError {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<u64>,
}

impl UsersError {
    pub fn not_found() -> Self {
        UsersError {
            status: StatusCode::NOT_FOUND,
            body: json!({"detail": "Not found."}),
            retry_after: None,
        }
    }

    pub fn detail(status: StatusCode, detail: impl Into<String>) -> Self {
        UsersError {
            status,
            body: json!({"detail": detail.into()}),
            retry_after: None,
        }
    }

    pub fn fields(errors: &FieldErrors) -> Self {
        UsersError {
            status: StatusCode::BAD_REQUEST,
            body: nest(errors),
            retry_after: None,
        }
    }
}

/// Per-field errors with dotted names (`profile.status`) nested the way DRF
/// reports nested serializers: `{"profile": {"status": [...]}}`.
pub fn nest(errors: &FieldErrors) -> Value {
    let mut root = Map::new();
    for (field, messages) in errors {
        let list = Value::Array(messages.iter().cloned().map(Value::String).collect());
        match field.split_once('.') {
            Some((parent, child)) => {
                let entry = root
                    .entry(parent.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(children) = entry {
                    children.insert(child.to_owned(), list);
                }
            }
            None => {
                root.insert(field.clone(), list);
            }
        }
    }
    Value::Object(root)
}

impl From<AppError> for UsersError {
    fn from(error: AppError) -> Self {
        match &error {
            AppError::NotFound(_) => UsersError::not_found(),
            AppError::Validation(fields) => UsersError::fields(fields),
            // Unexpected failures answer the same envelope on every path.
            AppError::Internal(_) => UsersError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: json!({"status": 500, "msg": error.public_message()}),
                retry_after: None,
            },
            _ => UsersError {
                retry_after: retry_after(&error),
                ..UsersError::detail(status_of(&error), error.public_message())
            },
        }
    }
}

impl IntoResponse for UsersError {
    fn into_response(self) -> Response {
        let response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body.to_string(),
        )
            .into_response();
        with_retry_after(response, self.retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps() {
        let at = Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap()
            + chrono::Duration::microseconds(123_456);
        assert_eq!(iso(at), "2026-11-29T10:00:00.123456Z");
        assert_eq!(plain(at), "2026-11-29 10:00:00");
        let whole = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(iso(whole), "2026-01-02T03:04:05.000000Z");
    }

    #[test]
    fn nested_errors() {
        let mut errors = FieldErrors::new();
        errors.insert("username".into(), vec!["taken".into()]);
        errors.insert("profile.status".into(), vec!["bad".into()]);
        assert_eq!(
            nest(&errors),
            json!({"profile": {"status": ["bad"]}, "username": ["taken"]})
        );
    }
}
