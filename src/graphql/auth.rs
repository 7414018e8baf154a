//! Sign-in and sign-out.

use async_graphql::{Context, Object, Result, ResultExt, SimpleObject};
use chrono::{DateTime, Utc};

use super::{ContextExt, users::User};
use crate::identity::Identity;

/// A signed-in session: send `token` as `Authorization: Bearer <token>`.
#[derive(SimpleObject)]
pub struct AuthPayload {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Exchange a username and password for a bearer token.
    async fn login(
        &self,
        ctx: &Context<'_>,
        username: String,
        password: String,
    ) -> Result<AuthPayload> {
        let session = ctx
            .accounts()
            .login(
                &username,
                &password,
                ctx.limits().token_ttl,
                ctx.client_ip(),
            )
            .await
            .extend()?;
        Ok(AuthPayload {
            token: session.token,
            expires_at: session.expires_at,
            user: User::record(session.user),
        })
    }

    /// Revoke the bearer token this request was made with. True when a token
    /// was revoked. Every live connection (websocket) that used it ends, on
    /// every instance.
    async fn logout(&self, ctx: &Context<'_>) -> Result<bool> {
        match ctx.viewer().map(|v| v.identity()) {
            Some(Identity::Bearer(token)) => ctx.accounts().logout(token).await.extend(),
            _ => Ok(false),
        }
    }
}
