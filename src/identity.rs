//! Who is asking: the viewer of a request.
//!
//! Adapters turn transport details (headers, query string, websocket init
//! payload) into an [`Identity`]; the domain only ever sees a checked user id.
//! While legacy identity is on, a bare user id (`?user_id=N`, `X-User-Id: N`)
//! names the viewer, as the old service allowed.

use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

use sea_orm::ConnectionTrait;

use crate::{
    domain::{auth, users},
    error::{AppError, AppResult},
};

/// The identity a request claims, before it is checked against the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Nothing identifies the caller.
    Anonymous,
    /// A bearer token issued by `login`.
    Bearer(String),
    /// A user id given the legacy way.
    LegacyUserId(i64),
    /// The caller tried to identify but the value is unusable; the reason says why.
    Invalid(String),
}

/// Remembers for a few seconds which user ids exist, so that a legacy id
/// does not cost a query on every request. Deleting a user forgets it here
/// at once; other instances notice within the time to live, and a send
/// accepted in that window fails in its task (the user no longer exists).
pub struct KnownUsers {
    ttl: Duration,
    seen: RwLock<HashMap<i64, Instant>>,
}

/// Entries kept at most; the map is cleared when it is full.
const KNOWN_USERS_MAX: usize = 100_000;

impl KnownUsers {
    pub fn new(ttl: Duration) -> Self {
        KnownUsers {
            ttl,
            seen: RwLock::new(HashMap::new()),
        }
    }

    fn recently_seen(&self, id: i64) -> bool {
        self.seen
            .read()
            .ok()
            .and_then(|seen| seen.get(&id).copied())
            .is_some_and(|at| at.elapsed() < self.ttl)
    }

    fn remember(&self, id: i64) {
        if let Ok(mut seen) = self.seen.write() {
            if seen.len() >= KNOWN_USERS_MAX {
                seen.clear();
            }
            seen.insert(id, Instant::now());
        }
    }

    /// Forget a user (they were deleted).
    pub fn forget(&self, id: i64) {
        if let Ok(mut seen) = self.seen.write() {
            seen.remove(&id);
        }
    }

    /// Does the user exist?
    pub async fn exists(&self, db: &impl ConnectionTrait, id: i64) -> AppResult<bool> {
        if self.recently_seen(id) {
            return Ok(true);
        }
        let exists = users::exists(db, id).await?;
        if exists {
            self.remember(id);
        }
        Ok(exists)
    }
}

/// Parse a legacy user id: a positive integer.
pub fn parse_user_id(raw: &str) -> Option<i64> {
    raw.trim().parse::<i64>().ok().filter(|id| *id > 0)
}

impl Identity {
    /// The identity of a request: a bearer token when there is an
    /// `Authorization` header, else the legacy user id, if any.
    pub fn from_parts(
        authorization: Option<&str>,
        legacy_header: Option<&str>,
        legacy_query: Option<&str>,
        legacy_enabled: bool,
    ) -> Self {
        match authorization {
            Some(value) => Self::from_authorization(value),
            None => Self::from_legacy(legacy_header, legacy_query, legacy_enabled),
        }
    }

    /// Parse an `Authorization` value: `Bearer <token>`.
    pub fn from_authorization(value: &str) -> Self {
        let value = value.trim();
        match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                Identity::Bearer(token.trim().to_owned())
            }
            _ => Identity::Invalid("The Authorization header must be `Bearer <token>`".to_owned()),
        }
    }

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
    pub async fn require(&self, db: &impl ConnectionTrait, known: &KnownUsers) -> AppResult<i64> {
        match self {
            Identity::Anonymous => Err(AppError::Unauthenticated(
                "This operation needs a signed-in user".to_owned(),
            )),
            Identity::Invalid(reason) => Err(AppError::Unauthenticated(reason.clone())),
            Identity::Bearer(token) => auth::user_for_token(db, token).await?.ok_or_else(|| {
                AppError::Unauthenticated("The token is invalid or has expired".to_owned())
            }),
            Identity::LegacyUserId(id) => {
                if known.exists(db, *id).await? {
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
    fn bearer_tokens() {
        assert_eq!(
            Identity::from_parts(Some("Bearer abc"), Some("3"), None, true),
            Identity::Bearer("abc".into())
        );
        assert_eq!(
            Identity::from_authorization("bearer  abc "),
            Identity::Bearer("abc".into())
        );
        assert!(matches!(
            Identity::from_authorization("Basic dXNlcjpwdw=="),
            Identity::Invalid(_)
        ));
        assert!(matches!(
            Identity::from_authorization("Bearer "),
            Identity::Invalid(_)
        ));
    }

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
