//! The one error type of the service.
//!
//! Domain functions return [`AppError`]. Each variant has a stable
//! [`AppError::code`]; the GraphQL layer turns it into `extensions.code`, the
//! legacy REST layer into its envelopes. Internal errors are logged here, in
//! full, and reach clients only as a generic message.

use std::collections::BTreeMap;

use sea_orm::{DbErr, SqlErr};

/// Per-field validation messages, keyed by field name, in a stable order.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The thing named does not exist (or is not visible to the viewer).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The viewer is known but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// The viewer could not be identified, and the operation needs one.
    #[error("{0}")]
    Unauthenticated(String),
    /// One or more input fields are invalid.
    #[error("invalid input: {}", summarize(.0))]
    Validation(FieldErrors),
    /// The request as a whole is invalid.
    #[error("{0}")]
    BadInput(String),
    /// The request clashes with existing state (a taken name, a duplicate membership).
    #[error("{0}")]
    Conflict(String),
    /// Too many requests of this kind from this user or address.
    #[error("Too many requests ({rule}); retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        rule: &'static str,
        retry_after: std::time::Duration,
    },
    /// Anything the client cannot fix: database down, a bug. Never shown in detail.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Validation(_) | AppError::BadInput(_) => "BAD_USER_INPUT",
            AppError::Conflict(_) => "CONFLICT",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    /// A single-field validation error.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut errors = FieldErrors::new();
        errors.insert(field.to_owned(), vec![message.into()]);
        AppError::Validation(errors)
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(error.into())
    }

    /// The message a client may see. Internal errors are logged (once, here)
    /// and replaced by a generic sentence.
    pub fn public_message(&self) -> String {
        match self {
            AppError::Internal(source) => {
                tracing::error!(error = ?source, "internal error");
                "Internal server error".to_owned()
            }
            other => other.to_string(),
        }
    }
}

fn summarize(errors: &FieldErrors) -> String {
    errors
        .iter()
        .map(|(field, messages)| format!("{field}: {}", messages.join(" ")))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<DbErr> for AppError {
    fn from(error: DbErr) -> Self {
        AppError::Internal(error.into())
    }
}

/// True when the error is a violation of a unique constraint: a race lost to
/// a concurrent writer, to be reported as a conflict rather than a failure.
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// True when the error is a violated foreign key: a row this one refers to
/// was deleted meanwhile.
pub fn is_foreign_key_violation(error: &DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    )
}

/// A short, single-line reason for a database error, for start-up messages.
pub fn db_error_reason(error: &DbErr) -> String {
    let text = match error {
        DbErr::Conn(inner) => inner.to_string(),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or_default().trim().to_owned()
}

impl async_graphql::ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        let mut error = async_graphql::Error::new(self.public_message());
        error = error.extend_with(|_, ext| {
            ext.set("code", self.code());
            if let AppError::Validation(fields) = self {
                let mut map = async_graphql::indexmap::IndexMap::new();
                for (field, messages) in fields {
                    map.insert(
                        async_graphql::Name::new(field),
                        async_graphql::Value::List(
                            messages
                                .iter()
                                .map(|m| async_graphql::Value::String(m.clone()))
                                .collect(),
                        ),
                    );
                }
                ext.set("fields", async_graphql::Value::Object(map));
            }
            if let AppError::RateLimited { retry_after, .. } = self {
                ext.set("retryAfter", retry_after.as_secs().max(1));
            }
        });
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(AppError::NotFound("user").code(), "NOT_FOUND");
        assert_eq!(AppError::field("username", "x").code(), "BAD_USER_INPUT");
        assert_eq!(AppError::Conflict("x".into()).code(), "CONFLICT");
        assert_eq!(
            AppError::internal(anyhow::anyhow!("SELECT secret")).code(),
            "INTERNAL"
        );
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let error = AppError::internal(anyhow::anyhow!("relation \"users\" does not exist"));
        assert_eq!(error.public_message(), "Internal server error");
    }
}
