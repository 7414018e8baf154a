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
    Ok(auth_token::Entity::find()
        .filter(auth_token::Column::TokenHash.eq(digest(token)))
        .filter(auth_token::Column::ExpiresAt.gt(now()))
        .one(db)
        .await?
        .map(|t| t.user_id))
}

/// Revoke a token. Returns whether it existed.
pub async fn logout(db: &impl ConnectionTrait, token: &str) -> AppResult<bool> {
    let result = auth_token::Entity::delete_many()
        .filter(auth_token::Column::TokenHash.eq(digest(token)))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
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
