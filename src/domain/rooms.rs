//! Rooms and memberships: create, join, leave, direct rooms, who is in what.
//!
//! Rules: room names are unique; a direct room belongs to one pair of users
//! (unique pair key), is named after them and cannot be joined; a user has at
//! most one current membership per room (history is kept: leaving sets
//! `left_at`, re-joining starts a new row); when the last member leaves, the
//! room is deleted.

use std::collections::{HashMap, HashSet};

use entity::{membership, room, room_event, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseConnection, DbErr, EntityTrait, JoinType, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, RelationTrait, Select, sea_query::Expr,
};

use super::{
    insert_unless_exists,
    log::{self, Kind, Subject},
    now,
    pagination::{self, Page, PageRequest},
    users,
};
use crate::{
    error::{AppError, AppResult, is_foreign_key_violation, is_unique_violation},
    events::{Event, EventBus},
    versions::Key,
};

pub const NAME_MAX: usize = 255;
/// Most members a room may be created with (more join one by one).
pub const INITIAL_MEMBERS_MAX: usize = 1000;

/// The unique key of the direct room of two users.
pub fn direct_key(a: i64, b: i64) -> String {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    format!("{low}:{high}")
}

pub async fn get(db: &impl ConnectionTrait, id: i64) -> AppResult<room::Model> {
    room::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AppError::NotFound("room"))
}

/// Rooms by id, in one statement; missing ids are absent.
pub async fn load_many(
    db: &impl ConnectionTrait,
    ids: &[i64],
) -> AppResult<HashMap<i64, room::Model>> {
    Ok(room::Entity::find()
        .filter(room::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect())
}

fn current_memberships() -> Select<membership::Entity> {
    membership::Entity::find().filter(membership::Column::LeftAt.is_null())
}

pub async fn is_member(db: &impl ConnectionTrait, room_id: i64, user_id: i64) -> AppResult<bool> {
    Ok(current_memberships()
        .filter(membership::Column::RoomId.eq(room_id))
        .filter(membership::Column::UserId.eq(user_id))
        .count(db)
        .await?
        > 0)
}

/// Which of `users` share a current room with `viewer` that they chose to
/// be in (the viewer counts as sharing with themselves), in one statement:
/// whose presence the viewer may see. Being put in a room by someone else
/// (named in `createRoom`, sent a first direct message) shares nothing.
pub async fn sharing(
    db: &impl ConnectionTrait,
    viewer: i64,
    users: &[i64],
) -> AppResult<HashSet<i64>> {
    let viewer_rooms = current_memberships()
        .select_only()
        .column(membership::Column::RoomId)
        .filter(membership::Column::UserId.eq(viewer))
        .into_query();
    let shared: Vec<i64> = current_memberships()
        .select_only()
        .column(membership::Column::UserId)
        .distinct()
        .filter(membership::Column::Chosen.eq(true))
        .filter(membership::Column::UserId.is_in(users.iter().copied()))
        .filter(membership::Column::RoomId.in_subquery(viewer_rooms))
        .into_tuple()
        .all(db)
        .await?;
    let mut shared: HashSet<i64> = shared.into_iter().collect();
    if users.contains(&viewer) {
        shared.insert(viewer);
    }
    Ok(shared)
}

/// The ids of a room's current members.
pub async fn member_ids(db: &impl ConnectionTrait, room_id: i64) -> AppResult<HashSet<i64>> {
    let ids: Vec<i64> = current_memberships()
        .select_only()
        .column(membership::Column::UserId)
        .filter(membership::Column::RoomId.eq(room_id))
        .into_tuple()
        .all(db)
        .await?;
    Ok(ids.into_iter().collect())
}

/// A room's current members, each with whether they chose to be in it.
pub async fn members_and_choice(
    db: &impl ConnectionTrait,
    room_id: i64,
) -> AppResult<HashMap<i64, bool>> {
    let rows: Vec<(i64, bool)> = current_memberships()
        .select_only()
        .column(membership::Column::UserId)
        .column(membership::Column::Chosen)
        .filter(membership::Column::RoomId.eq(room_id))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Is `user` a current member of `room` who chose to be in it?
pub async fn chose_to_be_in(
    db: &impl ConnectionTrait,
    room_id: i64,
    user_id: i64,
) -> AppResult<bool> {
    Ok(current_memberships()
        .filter(membership::Column::RoomId.eq(room_id))
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::Chosen.eq(true))
        .count(db)
        .await?
        > 0)
}

pub async fn require_member(
    db: &impl ConnectionTrait,
    room_id: i64,
    user_id: i64,
) -> AppResult<room::Model> {
    let room = get(db, room_id).await?;
    if is_member(db, room_id, user_id).await? {
        Ok(room)
    } else {
        Err(AppError::Forbidden(
            "You are not a member of this room".to_owned(),
        ))
    }
}

/// Which of `room_ids` the user is currently a member of.
pub async fn member_of(
    db: &impl ConnectionTrait,
    user_id: i64,
    room_ids: &[i64],
) -> AppResult<Vec<i64>> {
    Ok(current_memberships()
        .select_only()
        .column(membership::Column::RoomId)
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::RoomId.is_in(room_ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?)
}

fn validate_name(name: &str) -> AppResult<String> {
    if name.trim().is_empty() {
        return Err(AppError::field("room_name", "This field may not be blank."));
    }
    if name.chars().count() > NAME_MAX {
        return Err(AppError::field(
            "room_name",
            format!("Ensure this field has no more than {NAME_MAX} characters."),
        ));
    }
    Ok(name.to_owned())
}

fn name_taken(name: &str) -> AppError {
    AppError::Conflict(format!("A room named \"{name}\" already exists"))
}

/// Create a group room with the named users as members (unknown usernames
/// are ignored) plus `creator`, when given.
#[tracing::instrument(skip(db, events, member_usernames))]
pub async fn create(
    db: &DatabaseConnection,
    events: &dyn EventBus,
    name: &str,
    member_usernames: &[String],
    creator: Option<i64>,
) -> AppResult<room::Model> {
    let name = validate_name(name)?;
    if member_usernames.len() > INITIAL_MEMBERS_MAX {
        return Err(AppError::BadInput(format!(
            "A room can be created with at most {INITIAL_MEMBERS_MAX} members"
        )));
    }
    let txn = super::begin_write(db).await?;
    // The members (and the creator) are read with a share lock, so none of
    // them can be deleted before the memberships are written.
    let wanted = member_usernames
        .iter()
        // A name no user can have (a NUL, say) matches nobody, and
        // PostgreSQL would refuse the statement for it.
        .filter(|name| crate::input::problem(name).is_none())
        .cloned();
    let mut member_ids: Vec<i64> = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .filter(
            Condition::any()
                .add(user::Column::Username.is_in(wanted))
                .add(user::Column::Id.is_in(creator)),
        )
        .lock_shared()
        .into_tuple()
        .all(&txn)
        .await?;
    if let Some(creator) = creator
        && !member_ids.contains(&creator)
    {
        return Err(AppError::NotFound("user"));
    }
    member_ids.sort_unstable();
    member_ids.dedup();

    if room::Entity::find()
        .filter(room::Column::Name.eq(name.as_str()))
        .count(&txn)
        .await?
        > 0
    {
        return Err(name_taken(&name));
    }
    let created_at = now();
    let room = room::ActiveModel {
        name: Set(name.clone()),
        is_direct: Set(false),
        direct_key: Set(None),
        created_at: Set(created_at),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            name_taken(&name)
        } else {
            e.into()
        }
    })?;
    let added = add_members(&txn, room.id, &member_ids, creator).await?;
    txn.commit().await?;
    announce_members(events, room.id, &added, true).await;
    tracing::info!(
        room_id = room.id,
        members = member_ids.len(),
        "room created"
    );
    Ok(room)
}

/// Add current memberships, each a numbered `member_joined` event of the
/// room, in the caller's transaction; `chose` is the one of them who chose
/// to be in the room (its creator), if any. Returns `(user, number)` pairs.
async fn add_members(
    db: &impl ConnectionTrait,
    room_id: i64,
    user_ids: &[i64],
    chose: Option<i64>,
) -> AppResult<Vec<(i64, i64)>> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    let first = log::take(db, room_id, user_ids.len() as i64).await?;
    let joined_at = now();
    membership::Entity::insert_many(user_ids.iter().map(|&user_id| membership::ActiveModel {
        room_id: Set(room_id),
        user_id: Set(user_id),
        joined_at: Set(joined_at),
        left_at: Set(None),
        chosen: Set(chose == Some(user_id)),
        ..Default::default()
    }))
    .exec(db)
    .await?;
    let numbered: Vec<(i64, i64)> = user_ids
        .iter()
        .enumerate()
        .map(|(n, &user)| (user, first + n as i64))
        .collect();
    room_event::Entity::insert_many(numbered.iter().map(|&(user, seq)| {
        room_event::ActiveModel::from(room_event::Model {
            room_id,
            seq,
            kind: Kind::MemberJoined.as_str().to_owned(),
            message_id: None,
            user_id: Some(user),
            emoji: None,
            at: joined_at,
        })
    }))
    .exec_without_returning(db)
    .await?;
    Ok(numbered)
}

/// Memberships changed (committed): bump the room's version and the
/// memberships' before answering, then tell live subscriptions.
async fn announce_members(
    events: &dyn EventBus,
    room_id: i64,
    changes: &[(i64, i64)],
    joined: bool,
) {
    events
        .versions()
        .bump(&[(Key::Room(room_id), 1), (Key::Memberships, 1)])
        .await;
    for &(user_id, seq) in changes {
        events.publish(Event::MembershipChanged {
            room_id,
            user_id,
            joined,
            seq,
        });
    }
}

/// Join a group room.
#[tracing::instrument(skip(db, events))]
pub async fn join(
    db: &DatabaseConnection,
    events: &dyn EventBus,
    room_id: i64,
    user_id: i64,
) -> AppResult<membership::Model> {
    let room = get(db, room_id).await?;
    if !users::exists(db, user_id).await? {
        return Err(AppError::NotFound("user"));
    }
    if room.is_direct {
        return Err(AppError::BadInput("Can't join a private chat".to_owned()));
    }
    let already = || AppError::Conflict("You are already a member of this room".to_owned());
    let txn = super::begin_write(db).await?;
    // The number first: it locks the room, so two joins of one user
    // cannot both pass the check.
    let seq = log::take(&txn, room_id, 1).await?;
    if is_member(&txn, room_id, user_id).await? {
        return Err(already());
    }
    let membership = membership::ActiveModel {
        room_id: Set(room_id),
        user_id: Set(user_id),
        joined_at: Set(now()),
        left_at: Set(None),
        chosen: Set(true),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            already()
        } else if is_foreign_key_violation(&e) {
            // The user was deleted since the check (the room is locked).
            AppError::NotFound("user")
        } else {
            e.into()
        }
    })?;
    log::record_numbered(
        &txn,
        room_id,
        seq,
        Kind::MemberJoined,
        Subject {
            user_id: Some(user_id),
            ..Default::default()
        },
        membership.joined_at,
    )
    .await?;
    txn.commit().await?;
    announce_members(events, room_id, &[(user_id, seq)], true).await;
    Ok(membership)
}

/// What leaving a room did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    /// The user was the last member, so the room is gone.
    pub room_deleted: bool,
}

/// Leave a room; the last member leaving deletes it.
#[tracing::instrument(skip(db, events))]
pub async fn leave(
    db: &DatabaseConnection,
    events: &dyn EventBus,
    room_id: i64,
    user_id: i64,
) -> AppResult<Left> {
    get(db, room_id).await?;
    if !users::exists(db, user_id).await? {
        return Err(AppError::NotFound("user"));
    }
    let txn = super::begin_write(db).await?;
    // Taking the number locks the room: two last members leaving at once
    // must not each see the other still there and both leave the room
    // behind (SQLite has one writer at a time anyway).
    let seq = log::take(&txn, room_id, 1).await?;
    let ended = membership::Entity::update_many()
        .col_expr(
            membership::Column::LeftAt,
            sea_orm::sea_query::Expr::value(now()),
        )
        .filter(membership::Column::RoomId.eq(room_id))
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::LeftAt.is_null())
        .exec(&txn)
        .await?;
    if ended.rows_affected == 0 {
        return Err(AppError::BadInput(
            "You are not a member of this room".to_owned(),
        ));
    }
    let remaining = current_memberships()
        .filter(membership::Column::RoomId.eq(room_id))
        .count(&txn)
        .await?;
    if remaining == 0 {
        room::Entity::delete_by_id(room_id).exec(&txn).await?;
    } else {
        log::record_numbered(
            &txn,
            room_id,
            seq,
            Kind::MemberLeft,
            Subject {
                user_id: Some(user_id),
                ..Default::default()
            },
            now(),
        )
        .await?;
    }
    txn.commit().await?;
    announce_members(events, room_id, &[(user_id, seq)], false).await;
    Ok(Left {
        room_deleted: remaining == 0,
    })
}

/// The direct room of two users, if it exists.
pub async fn direct_room(
    db: &impl ConnectionTrait,
    a: i64,
    b: i64,
) -> AppResult<Option<room::Model>> {
    Ok(room::Entity::find()
        .filter(room::Column::DirectKey.eq(direct_key(a, b)))
        .one(db)
        .await?)
}

/// Direct rooms by pair key, in one statement.
pub async fn direct_rooms_by_key(
    db: &impl ConnectionTrait,
    keys: &[String],
) -> AppResult<HashMap<String, i64>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, Option<String>)> = room::Entity::find()
        .select_only()
        .column(room::Column::Id)
        .column(room::Column::DirectKey)
        .filter(room::Column::DirectKey.is_in(keys.iter().cloned()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, key)| key.map(|k| (k, id)))
        .collect())
}

/// Which of the rooms exist.
pub async fn existing(db: &impl ConnectionTrait, ids: &[i64]) -> AppResult<HashSet<i64>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let found: Vec<i64> = room::Entity::find()
        .select_only()
        .column(room::Column::Id)
        .filter(room::Column::Id.is_in(ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(found.into_iter().collect())
}

/// The current (room, user) memberships among the given rooms and users,
/// each with whether the user chose to be in the room.
pub async fn current_pairs(
    db: &impl ConnectionTrait,
    room_ids: &[i64],
    user_ids: &[i64],
) -> AppResult<HashMap<(i64, i64), bool>> {
    if room_ids.is_empty() || user_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let pairs: Vec<(i64, i64, bool)> = current_memberships()
        .select_only()
        .column(membership::Column::RoomId)
        .column(membership::Column::UserId)
        .column(membership::Column::Chosen)
        .filter(membership::Column::RoomId.is_in(room_ids.iter().copied()))
        .filter(membership::Column::UserId.is_in(user_ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(pairs
        .into_iter()
        .map(|(room, user, chosen)| ((room, user), chosen))
        .collect())
}

/// These current members took part in their room (they sent a message):
/// from now on they chose to be in it. The caller bumps the memberships'
/// version once this commits.
pub async fn mark_chosen(db: &impl ConnectionTrait, pairs: &[(i64, i64)]) -> AppResult<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    let mut which = Condition::any();
    for &(room, user) in pairs {
        which = which.add(
            Condition::all()
                .add(membership::Column::RoomId.eq(room))
                .add(membership::Column::UserId.eq(user)),
        );
    }
    membership::Entity::update_many()
        .col_expr(membership::Column::Chosen, Expr::value(true))
        .filter(membership::Column::LeftAt.is_null())
        .filter(which)
        .exec(db)
        .await?;
    Ok(())
}

/// The direct room of two users, created with both as members if it does not
/// exist yet. Concurrent callers get the same room: the pair key is unique and
/// the loser of the race reads the winner's room.
#[tracing::instrument(skip(db, events))]
pub async fn find_or_create_direct(
    db: &DatabaseConnection,
    events: &dyn EventBus,
    from: i64,
    to: i64,
) -> AppResult<room::Model> {
    if from == to {
        return Err(AppError::BadInput(
            "You can't send a direct message to yourself".to_owned(),
        ));
    }
    if let Some(room) = direct_room(db, from, to).await? {
        return Ok(room);
    }
    let pair = users::load_many(db, &[from, to]).await?;
    let (Some(a), Some(b)) = (pair.get(&from.min(to)), pair.get(&from.max(to))) else {
        return Err(AppError::NotFound("user"));
    };
    let name = format!("{} - {}", a.user.username, b.user.username);
    let key = direct_key(from, to);

    let txn = super::begin_write(db).await?;
    let row = room::ActiveModel {
        name: Set(name),
        is_direct: Set(true),
        direct_key: Set(Some(key.clone())),
        created_at: Set(now()),
        ..Default::default()
    };
    match insert_unless_exists(&txn, row, room::Column::DirectKey).await {
        Ok(Some(room_id)) => {
            // Neither chose it yet: the sender does once the message is in.
            let added = add_members(&txn, room_id, &[a.user.id, b.user.id], None).await?;
            txn.commit().await?;
            announce_members(events, room_id, &added, true).await;
        }
        // Another sender created the pair's room first: use theirs.
        Ok(None) => txn.rollback().await?,
        Err(AppError::Internal(e))
            if e.downcast_ref::<DbErr>().is_some_and(is_unique_violation) =>
        {
            txn.rollback().await?;
            // Either a concurrent sender created the pair's room (its name
            // clashed before its key did), or a group room has the pair's
            // name: then use a name that cannot clash.
            if let Some(room) = direct_room(db, from, to).await? {
                return Ok(room);
            }
            let (room, added) = create_direct_with_key_name(db, &key, a.user.id, b.user.id).await?;
            announce_members(events, room.id, &added, true).await;
            return Ok(room);
        }
        Err(e) => return Err(e),
    }
    direct_room(db, from, to)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("direct room {key} vanished")))
}

async fn create_direct_with_key_name(
    db: &DatabaseConnection,
    key: &str,
    a: i64,
    b: i64,
) -> AppResult<(room::Model, Vec<(i64, i64)>)> {
    let txn = super::begin_write(db).await?;
    let row = room::ActiveModel {
        name: Set(format!("direct:{key}")),
        is_direct: Set(true),
        direct_key: Set(Some(key.to_owned())),
        created_at: Set(now()),
        ..Default::default()
    };
    let mut added = Vec::new();
    if let Some(room_id) = insert_unless_exists(&txn, row, room::Column::DirectKey).await? {
        added = add_members(&txn, room_id, &[a, b], None).await?;
    }
    txn.commit().await?;
    let room = room::Entity::find()
        .filter(room::Column::DirectKey.eq(key))
        .one(db)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("direct room {key} vanished")))?;
    Ok((room, added))
}

fn rooms_of(user_id: i64) -> Select<room::Entity> {
    let current = current_memberships()
        .select_only()
        .column(membership::Column::RoomId)
        .filter(membership::Column::UserId.eq(user_id))
        .into_query();
    room::Entity::find().filter(room::Column::Id.in_subquery(current))
}

fn group_rooms() -> Select<room::Entity> {
    room::Entity::find().filter(room::Column::IsDirect.eq(false))
}

/// Every room (group or direct) the user is a current member of, by id.
pub async fn list_for_user(db: &impl ConnectionTrait, user_id: i64) -> AppResult<Vec<room::Model>> {
    Ok(rooms_of(user_id)
        .order_by_asc(room::Column::Id)
        .all(db)
        .await?)
}

/// Every group room, by id.
pub async fn list_groups(db: &impl ConnectionTrait) -> AppResult<Vec<room::Model>> {
    Ok(group_rooms().order_by_asc(room::Column::Id).all(db).await?)
}

/// Which rooms a page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomScope {
    /// The rooms the user is a current member of.
    MemberOf(i64),
    /// All group rooms.
    Groups,
}

fn scoped(scope: RoomScope) -> Select<room::Entity> {
    match scope {
        RoomScope::MemberOf(user_id) => rooms_of(user_id),
        RoomScope::Groups => group_rooms(),
    }
}

pub async fn page(
    db: &impl ConnectionTrait,
    scope: RoomScope,
    request: PageRequest,
) -> AppResult<Page<room::Model>> {
    pagination::fetch_page(db, scoped(scope), room::Column::Id, request).await
}

pub async fn count(db: &impl ConnectionTrait, scope: RoomScope) -> AppResult<u64> {
    pagination::count(db, scoped(scope)).await
}

/// Usernames of each room's current members, ordered by user id, in one
/// statement.
pub async fn member_names(
    db: &impl ConnectionTrait,
    room_ids: &[i64],
) -> AppResult<HashMap<i64, Vec<String>>> {
    if room_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, String)> = current_memberships()
        .select_only()
        .column(membership::Column::RoomId)
        .column(user::Column::Username)
        .join(JoinType::InnerJoin, membership::Relation::User.def())
        .filter(membership::Column::RoomId.is_in(room_ids.iter().copied()))
        .order_by_asc(membership::Column::UserId)
        .into_tuple()
        .all(db)
        .await?;
    let mut names: HashMap<i64, Vec<String>> = HashMap::new();
    for (room, name) in rows {
        names.entry(room).or_default().push(name);
    }
    Ok(names)
}

/// Membership history of each room (current and past), oldest first.
pub async fn memberships_of_rooms(
    db: &impl ConnectionTrait,
    room_ids: &[i64],
) -> AppResult<HashMap<i64, Vec<membership::Model>>> {
    let mut history: HashMap<i64, Vec<membership::Model>> = HashMap::new();
    for m in membership::Entity::find()
        .filter(membership::Column::RoomId.is_in(room_ids.iter().copied()))
        .order_by_asc(membership::Column::Id)
        .all(db)
        .await?
    {
        history.entry(m.room_id).or_default().push(m);
    }
    Ok(history)
}

/// Current memberships of each user, oldest first.
pub async fn current_memberships_of_users(
    db: &impl ConnectionTrait,
    user_ids: &[i64],
) -> AppResult<HashMap<i64, Vec<membership::Model>>> {
    let mut by_user: HashMap<i64, Vec<membership::Model>> = HashMap::new();
    for m in current_memberships()
        .filter(membership::Column::UserId.is_in(user_ids.iter().copied()))
        .order_by_asc(membership::Column::Id)
        .all(db)
        .await?
    {
        by_user.entry(m.user_id).or_default().push(m);
    }
    Ok(by_user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_keys_ignore_order() {
        assert_eq!(direct_key(7, 3), "3:7");
        assert_eq!(direct_key(3, 7), "3:7");
    }

    #[test]
    fn room_names_are_checked() {
        assert!(validate_name("  ").is_err());
        assert!(validate_name(&"x".repeat(256)).is_err());
        assert_eq!(validate_name("family").unwrap(), "family");
    }
}
