//! Users in GraphQL: the `User` and `Profile` types, user queries and
//! mutations. Resolvers only translate; the rules are in `domain::users`.

use async_graphql::{
    Context, Enum, ErrorExtensions, ID, InputObject, MaybeUndefined, Object, Result, ResultExt,
    SimpleObject, connection::Connection,
};
use chrono::{DateTime, Utc};
use entity::profile::Status;

use super::{
    ContextExt, TotalCount,
    connection::{connection, page_cost, page_request, wants_total},
    load, load_error,
    loaders::{LastSeenOf, MembershipsOfUser, OnlineOf, ProfileOf, RoomById, SharesRoom, UserById},
    rooms::{Room, can_see},
};
use std::sync::Arc;

use crate::{
    domain::{
        pagination::Page,
        users::{
            self, ProfileInput, PublicUser, UserFilter as DomainFilter, UserInput, UserRecord,
            WriteMode,
        },
        views::Named,
    },
    error::{AppError, AppResult},
};

/// Parse a GraphQL `ID` that names a row.
pub(crate) fn parse_id(field: &str, id: &ID) -> AppResult<i64> {
    id.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::field(field, format!("`{}` is not a valid id", id.as_str())))
}

/// Presence status of a user.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum UserStatus {
    Online,
    Busy,
    Offline,
}

impl From<Status> for UserStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Online => UserStatus::Online,
            Status::Busy => UserStatus::Busy,
            Status::Offline => UserStatus::Offline,
        }
    }
}

impl From<UserStatus> for Status {
    fn from(status: UserStatus) -> Self {
        match status {
            UserStatus::Online => Status::Online,
            UserStatus::Busy => Status::Busy,
            UserStatus::Offline => Status::Offline,
        }
    }
}

/// A user's profile: the status they chose and an optional status message.
#[derive(SimpleObject, Clone, Debug)]
pub struct Profile {
    pub id: ID,
    pub status: UserStatus,
    pub status_msg: Option<String>,
}

/// Whether a user is connected now.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "Presence")]
pub struct UserPresence {
    /// True while the user has a live websocket connection.
    pub online: bool,
    /// When the user's last connection closed; null while online or if
    /// never seen.
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// A user account. Resolvers read what the query selects: a user named by
/// a room is only an id and a username until another field is asked for.
#[derive(Clone, Debug)]
pub struct User {
    id: i64,
    data: UserData,
}

#[derive(Clone, Debug)]
enum UserData {
    Named(String),
    Public(Arc<PublicUser>),
    Record(Arc<UserRecord>),
}

impl User {
    pub fn named(named: &Named) -> Self {
        User::with_name(named.id, &named.username)
    }

    pub fn with_name(id: i64, username: &str) -> Self {
        User {
            id,
            data: UserData::Named(username.to_owned()),
        }
    }

    pub fn public(user: PublicUser) -> Self {
        User {
            id: user.id,
            data: UserData::Public(Arc::new(user)),
        }
    }

    pub fn record(record: UserRecord) -> Self {
        User {
            id: record.user.id,
            data: UserData::Record(Arc::new(record)),
        }
    }

    /// The public columns, loaded (batched) if this user was only named.
    async fn columns(&self, ctx: &Context<'_>) -> Result<Arc<PublicUser>> {
        match &self.data {
            UserData::Public(user) => Ok(user.clone()),
            UserData::Record(record) => Ok(Arc::new(PublicUser::from(&record.user))),
            UserData::Named(_) => load(ctx, UserById(self.id))
                .await?
                .map(Arc::new)
                .ok_or_else(|| AppError::NotFound("user").extend()),
        }
    }
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    async fn username(&self) -> &str {
        match &self.data {
            UserData::Named(name) => name,
            UserData::Public(user) => &user.username,
            UserData::Record(record) => &record.user.username,
        }
    }
    async fn first_name(&self, ctx: &Context<'_>) -> Result<String> {
        Ok(self.columns(ctx).await?.first_name.clone())
    }
    async fn last_name(&self, ctx: &Context<'_>) -> Result<String> {
        Ok(self.columns(ctx).await?.last_name.clone())
    }
    async fn email(&self, ctx: &Context<'_>) -> Result<String> {
        Ok(self.columns(ctx).await?.email.clone())
    }
    async fn is_active(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(self.columns(ctx).await?.is_active)
    }
    async fn is_staff(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(self.columns(ctx).await?.is_staff)
    }
    async fn is_superuser(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(self.columns(ctx).await?.is_superuser)
    }
    /// When the user last signed in; null if never.
    async fn last_login(&self, ctx: &Context<'_>) -> Result<Option<DateTime<Utc>>> {
        Ok(self.columns(ctx).await?.last_login)
    }
    async fn date_joined(&self, ctx: &Context<'_>) -> Result<DateTime<Utc>> {
        Ok(self.columns(ctx).await?.date_joined)
    }
    /// Rooms the user is currently in: every group room, plus the direct
    /// rooms the viewer shares with them (all of them for the viewer).
    async fn rooms(&self, ctx: &Context<'_>) -> Result<Vec<Room>> {
        let memberships = load(ctx, MembershipsOfUser(self.id))
            .await?
            .unwrap_or_default();
        let ids: Vec<RoomById> = memberships.iter().map(|m| RoomById(m.room_id)).collect();
        let rooms = ctx.loaders().load_many(ids).await.map_err(load_error)?;
        let mut visible = Vec::with_capacity(memberships.len());
        for membership in memberships {
            if let Some(room) = rooms.get(&RoomById(membership.room_id))
                && can_see(ctx, room).await?
            {
                visible.push(Room::of(room.clone()));
            }
        }
        Ok(visible)
    }

    /// Is the user connected now (a live websocket on any instance)? Not
    /// the status they chose, which `profile` shows. Only for the user and
    /// the members of rooms the user chose to be in (created, joined, or
    /// wrote in); null for anyone else.
    async fn presence(&self, ctx: &Context<'_>) -> Result<Option<UserPresence>> {
        let Some(viewer) = ctx.optional_viewer_id().await.extend()? else {
            return Ok(None);
        };
        let key = SharesRoom {
            viewer,
            user: self.id,
        };
        if !load(ctx, key).await?.unwrap_or(false) {
            return Ok(None);
        }
        let online = load(ctx, OnlineOf(self.id)).await?.unwrap_or(false);
        let last_seen_at = if online {
            None
        } else {
            load(ctx, LastSeenOf(self.id)).await?
        };
        Ok(Some(UserPresence {
            online,
            last_seen_at,
        }))
    }

    async fn profile(&self, ctx: &Context<'_>) -> Result<Profile> {
        let loaded;
        let profile = match &self.data {
            UserData::Record(record) => &record.profile,
            _ => {
                loaded = load(ctx, ProfileOf(self.id))
                    .await?
                    .ok_or_else(|| AppError::NotFound("user").extend())?;
                &loaded
            }
        };
        Ok(Profile {
            id: ID(profile.id.to_string()),
            status: profile.status.into(),
            status_msg: profile.status_msg.clone(),
        })
    }
}

/// Exact-match filters of `users`; all given filters must match.
#[derive(InputObject, Default, Debug)]
pub struct UserFilter {
    pub id: Option<ID>,
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub status: Option<UserStatus>,
}

impl UserFilter {
    fn into_domain(self) -> AppResult<DomainFilter> {
        Ok(DomainFilter {
            id: self
                .id
                .as_ref()
                .map(|id| parse_id("filter.id", id))
                .transpose()?,
            username: self.username,
            first_name: self.first_name,
            last_name: self.last_name,
            status: self.status.map(Into::into),
        })
    }
}

/// Profile fields to set. An omitted field is left as it is; `statusMsg: null` clears it.
#[derive(InputObject, Default, Debug)]
#[graphql(name = "ProfileInput")]
pub struct ProfileFields {
    pub status: Option<UserStatus>,
    pub status_msg: MaybeUndefined<String>,
}

impl From<ProfileFields> for ProfileInput {
    fn from(fields: ProfileFields) -> Self {
        ProfileInput {
            status: fields.status.map(|s| Status::from(s).as_str().to_owned()),
            status_msg: match fields.status_msg {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(msg) => Some(Some(msg)),
            },
        }
    }
}

#[derive(InputObject, Debug)]
pub struct CreateUserInput {
    /// 1-150 letters, digits and `@.+-_`; unique.
    pub username: String,
    pub password: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// A valid address or empty.
    pub email: Option<String>,
    pub profile: Option<ProfileFields>,
}

/// Fields to change; omitted fields keep their value.
#[derive(InputObject, Default, Debug)]
pub struct UpdateUserInput {
    pub username: Option<String>,
    pub password: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub profile: Option<ProfileFields>,
}

async fn user_by_id(ctx: &Context<'_>, id: i64) -> Result<User> {
    load(ctx, UserById(id))
        .await?
        .map(User::public)
        .ok_or_else(|| AppError::NotFound("user").extend())
}

#[derive(Default)]
pub struct UserQuery;

#[Object]
impl UserQuery {
    /// The signed-in user.
    async fn viewer(&self, ctx: &Context<'_>) -> Result<User> {
        let id = ctx.viewer_id().await.extend()?;
        user_by_id(ctx, id).await
    }

    /// One user by id.
    async fn user(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        let id = parse_id("id", &id).extend()?;
        user_by_id(ctx, id).await.map(Some)
    }

    /// Users ordered by id, optionally filtered.
    #[graphql(complexity = "page_cost(first, last, child_complexity)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        filter: Option<UserFilter>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Connection<String, User, TotalCount>> {
        let request = page_request(ctx, first, after, last, before).extend()?;
        let filter = filter.unwrap_or_default().into_domain().extend()?;
        let db = ctx.db();
        let page = ctx
            .accounts()
            .public_page(&filter, request)
            .await
            .extend()?;
        let page = Page {
            items: page.items.clone(),
            has_previous_page: page.has_previous_page,
            has_next_page: page.has_next_page,
        };
        let total = if wants_total(ctx) {
            users::count(db, &filter).await.extend()?
        } else {
            0
        };
        Ok(connection(page, total, |u| u.id, User::public))
    }
}

#[derive(Default)]
pub struct UserMutation;

/// A user may change only their own account.
async fn require_self(ctx: &Context<'_>, id: i64) -> AppResult<()> {
    let viewer = ctx.viewer_id().await?;
    if viewer == id {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "You can only change your own account".to_owned(),
        ))
    }
}

#[Object]
impl UserMutation {
    /// Create an account (sign up). No identity needed.
    async fn create_user(&self, ctx: &Context<'_>, input: CreateUserInput) -> Result<User> {
        let input = UserInput {
            username: Some(input.username),
            password: Some(input.password),
            first_name: input.first_name,
            last_name: input.last_name,
            email: input.email,
            profile: input.profile.map(Into::into),
        };
        let client = ctx.client_ip();
        Ok(User::record(
            ctx.accounts().create(input, client).await.extend()?,
        ))
    }

    /// Change the viewer's own account; only the given fields change.
    async fn update_user(&self, ctx: &Context<'_>, id: ID, input: UpdateUserInput) -> Result<User> {
        let id = parse_id("id", &id).extend()?;
        require_self(ctx, id).await.extend()?;
        let input = UserInput {
            username: input.username,
            password: input.password,
            first_name: input.first_name,
            last_name: input.last_name,
            email: input.email,
            profile: input.profile.map(Into::into),
        };
        Ok(User::record(
            ctx.accounts()
                .update(id, input, WriteMode::Patch)
                .await
                .extend()?,
        ))
    }

    /// Delete the viewer's own account. Returns the deleted user's id.
    async fn delete_user(&self, ctx: &Context<'_>, id: ID) -> Result<ID> {
        let user_id = parse_id("id", &id).extend()?;
        require_self(ctx, user_id).await.extend()?;
        ctx.accounts().delete(user_id).await.extend()?;
        Ok(id)
    }
}
