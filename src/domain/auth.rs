//! Sign-in: password check, bearer tokens with expiry, sign-out.
//!
//! A token is 32 random bytes, shown once to the client; the database keeps
//! only its SHA-256 digest, so every gateway instance can check any token.

use std::sync::OnceLock;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use entity::auth_token;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QuerySelect,
};
use sha2::{Digest, Sha256};

use super::{
    now, passwords,
    users::{self, UserRecord},
};
use crate::error::{AppError, AppResult};

const INVALID_CREDENTIALS: &str = "Invalid username or password";

/// A signed-in session as `login` returns it.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: UserRecord,
}

fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A hash to verify against when the username is unknown, so that a wrong
/// username takes as long as a wrong password and does not reveal itself.
async fn decoy_hash() -> AppResult<String> {
    static DECOY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DECOY.get() {
        return Ok(hash.clone());
    }
    let hash = passwords::hash(uuid::Uuid::new_v4().to_string()).await?;
    Ok(DECOY.get_or_init(|| hash).clone())
}

/// Check a username and password and issue a token valid for `ttl`.
#[tracing::instrument(skip(db, password))]
pub async fn login(
    db: &impl ConnectionTrait,
    username: &str,
    password: &str,
    ttl: Duration,
) -> AppResult<Session> {
    let user = users::find_by_username(db, username).await?;
    let (hash, user) = match user {
        Some(user) if user.is_active => (user.password.clone(), Some(user)),
        _ => (decoy_hash().await?, None),
    };
    let verified = passwords::verify(password.to_owned(), hash).await?;
    let Some(user) = user.filter(|_| verified) else {
        return Err(AppError::Unauthenticated(INVALID_CREDENTIALS.to_owned()));
    };

    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let created_at = now();
    let expires_at = created_at + ttl;
    auth_token::ActiveModel {
        token_hash: Set(digest(&token)),
        user_id: Set(user.id),
        created_at: Set(created_at),
        expires_at: Set(expires_at),
        ..Default::default()
    }
    .insert(db)
    .await?;
    users::touch_last_login(db, user.id).await?;
    // Expired tokens are useless; sweep the user's old ones now and then.
    auth_token::Entity::delete_many()
        .filter(auth_token::Column::UserId.eq(user.id))
        .filter(auth_token::Column::ExpiresAt.lt(created_at))
        .exec(db)
        .await?;
    Ok(Session {
        token,
        expires_at,
        user: users::get(db, user.id).await?,
    })
}

/// The user a bearer token belongs to, if it is known and not expired.
pub async fn user_for_token(db: &impl ConnectionTrait, token: &str) -> AppResult<Option<i64>> {
    Ok(token_session(db, token).await?.map(|t| t.user_id))
}

/// A live token, as a long-lived connection keeps it: whose it is, until
/// when, and its digest (what the database keeps), to check it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSession {
    pub user_id: i64,
    pub expires_at: DateTime<Utc>,
    pub digest: String,
}

/// The session of a bearer token, if it is known and not expired.
pub async fn token_session(
    db: &impl ConnectionTrait,
    token: &str,
) -> AppResult<Option<TokenSession>> {
    let digest = digest(token);
    Ok(auth_token::Entity::find()
        .filter(auth_token::Column::TokenHash.eq(digest.as_str()))
        .filter(auth_token::Column::ExpiresAt.gt(now()))
        .one(db)
        .await?
        .map(|t| TokenSession {
            user_id: t.user_id,
            expires_at: t.expires_at,
            digest,
        }))
}

/// Which of these token digests are still live (not revoked, not
/// expired), in one statement.
pub async fn live_digests(
    db: &impl ConnectionTrait,
    digests: &[&str],
) -> AppResult<std::collections::HashSet<String>> {
    if digests.is_empty() {
        return Ok(Default::default());
    }
    let live: Vec<String> = auth_token::Entity::find()
        .select_only()
        .column(auth_token::Column::TokenHash)
        .filter(auth_token::Column::TokenHash.is_in(digests.iter().copied()))
        .filter(auth_token::Column::ExpiresAt.gt(now()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(live.into_iter().collect())
}

/// Revoke a token. Returns whose it was, if it existed (the caller ends
/// that user's live sessions that used it).
pub async fn logout(db: &impl ConnectionTrait, token: &str) -> AppResult<Option<i64>> {
    let digest = digest(token);
    let Some(owner) = auth_token::Entity::find()
        .filter(auth_token::Column::TokenHash.eq(digest.as_str()))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let result = auth_token::Entity::delete_many()
        .filter(auth_token::Column::TokenHash.eq(digest))
        .exec(db)
        .await?;
    Ok((result.rows_affected > 0).then_some(owner.user_id))
}

#[cfg(test)]
mod tests {
    use super::digest;

    #[test]
    fn digests_are_hex_sha256() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
