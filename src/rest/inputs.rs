//! Query strings of legacy requests, checked before any handler runs:
//! every parameter must be UTF-8 once percent-decoded and pass
//! [`crate::input`]. A bad one is a 400 naming the parameter, in the shape
//! of the path's family (`{"param": [...]}` under `/users/`, the chat
//! error envelope under `/chat/`). Body fields are checked where the
//! handlers read them (`body::text`), so a field nobody reads is ignored
//! as before.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use futures::future::{Either, Ready, ready};
use tower::{Layer, Service};

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

/// The answer refusing a request whose query string holds a bad value.
fn refusal(request: &Request) -> Option<Response> {
    let users = request.uri().path().starts_with("/users");
    let (field, message) = form_problem(request.uri().query()?.as_bytes())?;
    Some(refuse(users, &field, &message))
}

/// Checks the query string of every legacy request before its handler
/// (a service of its own, so a request costs no boxed future for it).
#[derive(Clone, Copy)]
pub struct CheckQueryLayer;

impl<S> Layer<S> for CheckQueryLayer {
    type Service = CheckQuery<S>;

    fn layer(&self, inner: S) -> CheckQuery<S> {
        CheckQuery { inner }
    }
}

#[derive(Clone)]
pub struct CheckQuery<S> {
    inner: S,
}

impl<S> Service<Request> for CheckQuery<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match refusal(&request) {
            Some(refused) => Either::Left(ready(Ok(refused))),
            None => Either::Right(self.inner.call(request)),
        }
    }
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
