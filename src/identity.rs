//! Who is asking: the viewer of a request.
//!
//! Adapters turn transport details (headers, query string, websocket init
//! payload) into an [`Identity`]; the domain only ever sees a checked user id.
//! While legacy identity is on, a bare user id (`?user_id=N`, `X-User-Id: N`)
//! names the viewer, as the old service allowed.

use sea_orm::ConnectionTrait;

use crate::{
    domain::users,
    error::{AppError, AppResult},
};

/// The identity a request claims, before it is checked against the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Nothing identifies the caller.
    Anonymous,
    /// A user id given the legacy way.
    LegacyUserId(i64),
    /// The caller tried to identify but the value is unusable; the reason says why.
    Invalid(String),
}

/// Parse a legacy user id: a positive integer.
pub fn parse_user_id(raw: &str) -> Option<i64> {
    raw.trim().parse::<i64>().ok().filter(|id| *id > 0)
}

impl Identity {
    /// The identity named by a legacy `X-User-Id` header or `user_id` query
    /// parameter; the header wins when both are present.
    pub fn from_legacy(header: Option<&str>, query: Option<&str>, enabled: bool) -> Self {
        let (source, raw) = match (header, query) {
            (Some(raw), _) => ("X-User-Id", raw),
            (None, Some(raw)) => ("user_id", raw),
            (None, None) => return Identity::Anonymous,
        };
        if !enabled {
            return Identity::Invalid(format!(
                "{source} is not accepted: legacy identity is turned off; use a bearer token"
            ));
        }
        match parse_user_id(raw) {
            Some(id) => Identity::LegacyUserId(id),
            None => Identity::Invalid(format!("{source} must be a positive integer")),
        }
    }

    /// The viewer's user id, checked to exist.
    pub async fn require(&self, db: &impl ConnectionTrait) -> AppResult<i64> {
        match self {
            Identity::Anonymous => Err(AppError::Unauthenticated(
                "This operation needs a signed-in user".to_owned(),
            )),
            Identity::Invalid(reason) => Err(AppError::Unauthenticated(reason.clone())),
            Identity::LegacyUserId(id) => {
                if users::exists(db, *id).await? {
                    Ok(*id)
                } else {
                    Err(AppError::Unauthenticated(format!("No user with id {id}")))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_ids() {
        assert_eq!(
            Identity::from_legacy(Some("3"), None, true),
            Identity::LegacyUserId(3)
        );
        assert_eq!(
            Identity::from_legacy(None, Some("4"), true),
            Identity::LegacyUserId(4)
        );
        assert_eq!(Identity::from_legacy(None, None, true), Identity::Anonymous);
        assert!(matches!(
            Identity::from_legacy(Some("0"), None, true),
            Identity::Invalid(_)
        ));
        assert!(matches!(
            Identity::from_legacy(None, Some("abc"), true),
            Identity::Invalid(_)
        ));
        assert!(matches!(
            Identity::from_legacy(Some("3"), None, false),
            Identity::Invalid(_)
        ));
    }
}
