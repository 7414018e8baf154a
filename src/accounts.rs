//! User accounts with their side effects, for every adapter.
//!
//! A user or profile write must invalidate the cached user lists (on every
//! instance) before it answers, and a deleted user must stop being
//! recognised at once. These wrappers around `domain::users` and
//! `domain::auth` make sure no adapter forgets either.

use std::{net::IpAddr, sync::Arc};

use axum::body::Bytes;
use sea_orm::DatabaseConnection;

use crate::{
    cache::UserListCache,
    domain::{
        auth::{self, Session},
        pagination::{Page, PageRequest},
        users::{self, PublicUser, UserFilter, UserInput, UserRecord, WriteMode},
    },
    error::{AppError, AppResult},
    events::{Event, EventBus},
    identity::KnownUsers,
    ratelimit::Throttle,
    versions::Key,
};

#[derive(Clone)]
pub struct Accounts {
    db: DatabaseConnection,
    lists: Arc<UserListCache>,
    known: Arc<KnownUsers>,
    throttle: Arc<Throttle>,
    events: Arc<dyn EventBus>,
}

impl Accounts {
    pub fn new(
        db: DatabaseConnection,
        lists: Arc<UserListCache>,
        known: Arc<KnownUsers>,
        throttle: Arc<Throttle>,
        events: Arc<dyn EventBus>,
    ) -> Self {
        Accounts {
            db,
            lists,
            known,
            throttle,
            events,
        }
    }

    pub fn known_users(&self) -> &KnownUsers {
        &self.known
    }

    /// Create an account (a sign-up from `client`, counted per address).
    pub async fn create(&self, input: UserInput, client: Option<IpAddr>) -> AppResult<UserRecord> {
        self.throttle.signup(client).await?;
        let user = users::create(&self.db, input).await?;
        self.lists.invalidate(&[]).await;
        Ok(user)
    }

    pub async fn update(
        &self,
        id: i64,
        input: UserInput,
        mode: WriteMode,
    ) -> AppResult<UserRecord> {
        let renamed = input.username.is_some();
        let user = users::update(&self.db, id, input, mode).await?;
        // A new username shows in every room the user is in.
        let also: &[Key] = if renamed { &[Key::Names] } else { &[] };
        self.lists.invalidate(also).await;
        Ok(user)
    }

    pub async fn delete(&self, id: i64) -> AppResult<()> {
        users::delete(&self.db, id).await?;
        self.known.forget(id);
        // Gone from every room (its members, its messages' senders), and
        // every live session of the account ends.
        self.lists
            .invalidate(&[Key::Names, Key::Memberships, Key::Sessions])
            .await;
        self.events.publish(Event::SessionsEnded { user_id: id });
        Ok(())
    }

    /// Revoke a bearer token; the connections that used it end, on every
    /// instance. True when the token was live.
    pub async fn logout(&self, token: &str) -> AppResult<bool> {
        let Some(user) = auth::logout(&self.db, token).await? else {
            return Ok(false);
        };
        self.events.versions().bump(&[(Key::Sessions, 1)]).await;
        self.events.publish(Event::SessionsEnded { user_id: user });
        Ok(true)
    }

    /// Sign in; the user's `last_login` changes, so lists are invalidated.
    /// Failed attempts are counted per username and address: past the
    /// limit, attempts are refused without checking the password.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        ttl: chrono::Duration,
        client: Option<IpAddr>,
    ) -> AppResult<Session> {
        self.throttle.login_allowed(username, client).await?;
        let session = match auth::login(&self.db, username, password, ttl).await {
            Ok(session) => session,
            Err(AppError::Unauthenticated(reason)) => {
                self.throttle.login_failed(username, client).await;
                return Err(AppError::Unauthenticated(reason));
            }
            Err(other) => return Err(other),
        };
        self.lists.invalidate(&[]).await;
        Ok(session)
    }

    /// Lists changed behind the cache's back (seeding at start-up).
    pub async fn lists_changed(&self) {
        self.lists.invalidate(&[]).await;
    }

    /// A page of users' public columns, served from the cache.
    pub async fn public_page(
        &self,
        filter: &UserFilter,
        request: PageRequest,
    ) -> AppResult<Arc<Page<PublicUser>>> {
        let key = format!("page:{}:{request:?}", filter.cache_key());
        self.lists
            .value_or_load(&key, users::public_page(&self.db, filter, request))
            .await
    }

    /// A user list, serialized by `render`, served from the cache.
    pub async fn cached_list(
        &self,
        filter: &UserFilter,
        render: impl FnOnce(Vec<UserRecord>) -> AppResult<Bytes>,
    ) -> AppResult<Bytes> {
        let key = filter.cache_key();
        self.lists
            .get_or_load(&key, async {
                let users = users::list(&self.db, filter).await?;
                render(users)
            })
            .await
    }
}
