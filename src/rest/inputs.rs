//! Query strings of legacy requests, checked before any handler runs:
//! every parameter must be UTF-8 once percent-decoded and pass
//! [`crate::input`]. A bad one is a 400 naming the parameter, in the shape
//! of the path's family (`{"param": [...]}` under `/users/`, the chat
//! error envelope under `/chat/`). Body fields are checked where the
//! handlers read them (`body::text`), so a field nobody reads is ignored
//! as before.

use axum::response::{IntoResponse, Response};

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

pub async fn check(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let users = request.uri().path().starts_with("/users");
    if let Some((field, message)) = request
        .uri()
        .query()
        .and_then(|query| form_problem(query.as_bytes()))
    {
        return refuse(users, &field, &message);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_strings_are_found_with_their_field() {
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
