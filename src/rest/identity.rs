//! The acting user of a legacy request: `?user_id=N` (or `from` in a body).
//!
//! While legacy identity is on, the id alone names the user (it must be a
//! positive integer, 400, and exist, 404). When it is off, a bearer token is
//! required and the id must be the token's user (403 otherwise).

use axum::http::{HeaderMap, StatusCode};

use super::reply::ChatError;
use crate::{
    app::AppState,
    error::{AppError, AppResult},
    identity::Identity,
};

/// The value of a query parameter.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Check a claimed user id (already parsed, or raw text) as the acting user.
pub async fn acting_user(
    state: &AppState,
    headers: &HeaderMap,
    field: &str,
    claimed: Option<i64>,
) -> Result<i64, ChatError> {
    let Some(id) = claimed else {
        return Err(ChatError::bad_request(format!(
            "{field} must be a positive integer"
        )));
    };
    let known = state.accounts.known_users();
    if state.config.legacy_identity {
        return match known.exists(&state.db, id).await {
            Ok(true) => Ok(id),
            Ok(false) => Err(ChatError::not_found("User not found")),
            Err(e) => Err(e.into()),
        };
    }
    if signed_in(state, headers).await? == id {
        Ok(id)
    } else {
        Err(ChatError::new(
            StatusCode::FORBIDDEN,
            format!("{field} is not the signed-in user"),
        ))
    }
}

/// The bearer token's user, for the chat paths while legacy identity is
/// off: a 401 envelope without a valid token.
pub async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<i64, ChatError> {
    signed_in_user(state, headers).await.map_err(|e| match e {
        AppError::Internal(_) => ChatError::from(e),
        other => ChatError::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "{} (legacy identity is off: send a bearer token)",
                other.public_message()
            ),
        ),
    })
}

/// The user a request's bearer token belongs to (legacy identity off).
pub async fn signed_in_user(state: &AppState, headers: &HeaderMap) -> AppResult<i64> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(Identity::from_authorization)
        .unwrap_or(Identity::Anonymous)
        .require(&state.db, state.accounts.known_users())
        .await
}

/// The acting user named by `?user_id=` (required).
pub async fn user_id_param(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<i64, ChatError> {
    let raw = query_param(query, "user_id")
        .ok_or_else(|| ChatError::bad_request("Attribute/s user_id missing"))?;
    let id = crate::identity::parse_user_id(&raw);
    acting_user(state, headers, "user_id", id).await
}
