//! Users and their profiles: validation, create, read, update, delete, seed.
//!
//! Validation messages follow the wording the legacy REST clients already
//! display (Django's), so both APIs say the same thing about the same input.

use std::collections::HashMap;

use entity::{membership, profile, profile::Status, room, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    DerivePartialModel, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Select,
};

use super::{
    insert_unless_exists, now,
    pagination::{self, Page, PageRequest},
    passwords,
};
use crate::error::{
    AppError, AppResult, FieldErrors, is_foreign_key_violation, is_unique_violation,
};

pub const USERNAME_MAX: usize = 150;
pub const NAME_MAX: usize = 150;
pub const EMAIL_MAX: usize = 254;
pub const STATUS_MSG_MAX: usize = 255;
/// Password of every seeded user.
pub const SEED_PASSWORD: &str = "Passw0rd!";

const REQUIRED: &str = "This field is required.";
const BLANK: &str = "This field may not be blank.";
const USERNAME_TAKEN: &str = "A user with that username already exists.";
const USERNAME_CHARS: &str = "Enter a valid username. This value may contain only letters, \
                              numbers, and @/./+/-/_ characters.";
const EMAIL_INVALID: &str = "Enter a valid email address.";

/// A user together with their profile: what every API shows of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user: user::Model,
    pub profile: profile::Model,
}

/// A user's public columns: everything but the password hash, which is
/// read only to check a password.
#[derive(Debug, Clone, PartialEq, Eq, DerivePartialModel)]
#[sea_orm(entity = "user::Entity")]
pub struct PublicUser {
    pub id: i64,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub last_login: Option<chrono::DateTime<chrono::Utc>>,
    pub date_joined: chrono::DateTime<chrono::Utc>,
}

impl From<&user::Model> for PublicUser {
    fn from(u: &user::Model) -> Self {
        PublicUser {
            id: u.id,
            username: u.username.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            email: u.email.clone(),
            is_active: u.is_active,
            is_staff: u.is_staff,
            is_superuser: u.is_superuser,
            last_login: u.last_login,
            date_joined: u.date_joined,
        }
    }
}

/// Users' public columns by id, in one statement; missing ids are absent.
pub async fn load_public(
    db: &impl ConnectionTrait,
    ids: &[i64],
) -> AppResult<HashMap<i64, PublicUser>> {
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids.iter().copied()))
        .into_partial_model::<PublicUser>()
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect())
}

/// Profiles by user id, in one statement; a user without a profile row
/// gets the default one.
pub async fn profiles(
    db: &impl ConnectionTrait,
    ids: &[i64],
) -> AppResult<HashMap<i64, profile::Model>> {
    let mut found: HashMap<i64, profile::Model> = profile::Entity::find()
        .filter(profile::Column::UserId.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.user_id, p))
        .collect();
    for &id in ids {
        found.entry(id).or_insert_with(|| default_profile(id));
    }
    Ok(found)
}

/// Exact-match filters of the user list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UserFilter {
    pub id: Option<i64>,
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub status: Option<Status>,
}

impl UserFilter {
    /// A canonical text of the filter, for cache keys.
    pub fn cache_key(&self) -> String {
        // JSON keeps "no filter" (null) apart from any value, `"*"` included.
        serde_json::to_string(&(
            self.id,
            &self.username,
            &self.first_name,
            &self.last_name,
            self.status.map(|s| s.as_str()),
        ))
        .unwrap_or_default()
    }
}

/// Raw user fields as a client sent them; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct UserInput {
    pub username: Option<String>,
    pub password: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub profile: Option<ProfileInput>,
}

/// Raw profile fields; `status_msg: Some(None)` clears the message.
#[derive(Debug, Clone, Default)]
pub struct ProfileInput {
    pub status: Option<String>,
    pub status_msg: Option<Option<String>>,
}

/// How much of a [`UserInput`] must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// A new user: username and password are required.
    Create,
    /// A full replacement: username is required, the password may be kept.
    Replace,
    /// A partial update: any subset of fields.
    Patch,
}

/// Input that passed validation; `None` fields are left as they are.
#[derive(Debug, Clone, Default)]
struct ValidUser {
    username: Option<String>,
    password: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    status: Option<Status>,
    status_msg: Option<Option<String>>,
}

fn push(errors: &mut FieldErrors, field: &str, message: impl Into<String>) {
    errors
        .entry(field.to_owned())
        .or_default()
        .push(message.into());
}

fn too_long(max: usize) -> String {
    format!("Ensure this field has no more than {max} characters.")
}

fn is_valid_username_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '@' | '.' | '+' | '-' | '_')
}

/// A deliberately simple address check: one `@`, a non-empty local part, a
/// dotted domain, no spaces. Deliverability is the mail server's business.
pub fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !email.chars().any(char::is_whitespace)
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

fn validate(input: &UserInput, mode: WriteMode) -> Result<ValidUser, FieldErrors> {
    let mut errors = FieldErrors::new();
    let mut valid = ValidUser::default();

    match input.username.as_deref() {
        None if mode != WriteMode::Patch => push(&mut errors, "username", REQUIRED),
        None => {}
        Some(name) => {
            if name.is_empty() {
                push(&mut errors, "username", BLANK);
            } else if name.chars().count() > USERNAME_MAX {
                push(&mut errors, "username", too_long(USERNAME_MAX));
            } else if !name.chars().all(is_valid_username_char) {
                push(&mut errors, "username", USERNAME_CHARS);
            } else {
                valid.username = Some(name.to_owned());
            }
        }
    }

    match input.password.as_deref() {
        None if mode == WriteMode::Create => push(&mut errors, "password", REQUIRED),
        None => {}
        Some("") => push(&mut errors, "password", BLANK),
        Some(password) if password.len() > 4096 => push(&mut errors, "password", too_long(4096)),
        Some(password) => valid.password = Some(password.to_owned()),
    }

    for (field, value, slot) in [
        ("first_name", &input.first_name, &mut valid.first_name),
        ("last_name", &input.last_name, &mut valid.last_name),
    ] {
        if let Some(value) = value {
            if value.chars().count() > NAME_MAX {
                push(&mut errors, field, too_long(NAME_MAX));
            } else {
                *slot = Some(value.clone());
            }
        }
    }

    if let Some(email) = &input.email {
        if email.chars().count() > EMAIL_MAX {
            push(&mut errors, "email", too_long(EMAIL_MAX));
        } else if !email.is_empty() && !is_valid_email(email) {
            push(&mut errors, "email", EMAIL_INVALID);
        } else {
            valid.email = Some(email.clone());
        }
    }

    if let Some(profile) = &input.profile {
        if let Some(status) = &profile.status {
            match Status::parse(status) {
                Some(status) => valid.status = Some(status),
                None => push(
                    &mut errors,
                    "profile.status",
                    format!("\"{status}\" is not a valid choice."),
                ),
            }
        }
        match &profile.status_msg {
            Some(Some(msg)) if msg.chars().count() > STATUS_MSG_MAX => {
                push(&mut errors, "profile.status_msg", too_long(STATUS_MSG_MAX))
            }
            other => valid.status_msg = other.clone(),
        }
    }

    if errors.is_empty() {
        Ok(valid)
    } else {
        Err(errors)
    }
}

/// Validate a user input without writing anything; adapters with extra
/// shape rules use it to report every bad field at once.
pub fn check(input: &UserInput, mode: WriteMode) -> FieldErrors {
    validate(input, mode).err().unwrap_or_default()
}

fn default_profile(user_id: i64) -> profile::Model {
    profile::Model {
        id: 0,
        user_id,
        status: Status::Offline,
        status_msg: None,
    }
}

/// Attach profiles to users in one statement, keeping the users' order.
pub async fn with_profiles(
    db: &impl ConnectionTrait,
    users: Vec<user::Model>,
) -> AppResult<Vec<UserRecord>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let mut profiles: HashMap<i64, profile::Model> = profile::Entity::find()
        .filter(profile::Column::UserId.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.user_id, p))
        .collect();
    Ok(users
        .into_iter()
        .map(|user| {
            let profile = profiles
                .remove(&user.id)
                .unwrap_or_else(|| default_profile(user.id));
            UserRecord { user, profile }
        })
        .collect())
}

/// Load users with their profiles by id, in one round of statements; missing
/// ids are absent from the map.
pub async fn load_many(
    db: &impl ConnectionTrait,
    ids: &[i64],
) -> AppResult<HashMap<i64, UserRecord>> {
    let users = user::Entity::find()
        .filter(user::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    Ok(with_profiles(db, users)
        .await?
        .into_iter()
        .map(|r| (r.user.id, r))
        .collect())
}

/// Usernames by id, in one statement.
pub async fn usernames(db: &impl ConnectionTrait, ids: &[i64]) -> AppResult<HashMap<i64, String>> {
    let rows: Vec<(i64, String)> = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .column(user::Column::Username)
        .filter(user::Column::Id.is_in(ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

pub async fn get(db: &impl ConnectionTrait, id: i64) -> AppResult<UserRecord> {
    let user = user::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    let profile = profile::Entity::find()
        .filter(profile::Column::UserId.eq(id))
        .one(db)
        .await?
        .unwrap_or_else(|| default_profile(id));
    Ok(UserRecord { user, profile })
}

pub async fn exists(db: &impl ConnectionTrait, id: i64) -> AppResult<bool> {
    Ok(user::Entity::find_by_id(id).count(db).await? > 0)
}

/// Which of these users exist, in one statement (none for no ids).
pub async fn existing(
    db: &impl ConnectionTrait,
    ids: &[i64],
) -> AppResult<std::collections::HashSet<i64>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let found: Vec<i64> = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .filter(user::Column::Id.is_in(ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(found.into_iter().collect())
}

pub async fn find_by_username(
    db: &impl ConnectionTrait,
    username: &str,
) -> AppResult<Option<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(db)
        .await?)
}

fn filtered(filter: &UserFilter) -> Select<user::Entity> {
    let mut select = user::Entity::find();
    if let Some(id) = filter.id {
        select = select.filter(user::Column::Id.eq(id));
    }
    if let Some(username) = &filter.username {
        select = select.filter(user::Column::Username.eq(username.as_str()));
    }
    if let Some(first_name) = &filter.first_name {
        select = select.filter(user::Column::FirstName.eq(first_name.as_str()));
    }
    if let Some(last_name) = &filter.last_name {
        select = select.filter(user::Column::LastName.eq(last_name.as_str()));
    }
    if let Some(status) = filter.status {
        let with_status = profile::Entity::find()
            .select_only()
            .column(profile::Column::UserId)
            .filter(profile::Column::Status.eq(status))
            .into_query();
        select = select.filter(user::Column::Id.in_subquery(with_status));
    }
    select
}

/// Every user matching the filter, ordered by id.
pub async fn list(db: &impl ConnectionTrait, filter: &UserFilter) -> AppResult<Vec<UserRecord>> {
    let users = filtered(filter)
        .order_by_asc(user::Column::Id)
        .all(db)
        .await?;
    with_profiles(db, users).await
}

/// One page of the users matching the filter, ordered by id: public
/// columns only, no profiles.
pub async fn public_page(
    db: &impl ConnectionTrait,
    filter: &UserFilter,
    request: PageRequest,
) -> AppResult<Page<PublicUser>> {
    pagination::fetch_partial_page(db, filtered(filter), user::Column::Id, request).await
}

pub async fn count(db: &impl ConnectionTrait, filter: &UserFilter) -> AppResult<u64> {
    pagination::count(db, filtered(filter)).await
}

async fn username_taken(
    db: &impl ConnectionTrait,
    username: &str,
    except: Option<i64>,
) -> AppResult<bool> {
    let mut select = user::Entity::find().filter(user::Column::Username.eq(username));
    if let Some(id) = except {
        select = select.filter(user::Column::Id.ne(id));
    }
    Ok(select.count(db).await? > 0)
}

/// A write's failure, as the client should hear it: a taken username, or
/// a user deleted by another request since it was read (the row to update
/// is gone, or the profile's user is).
fn map_write_error(error: DbErr) -> AppError {
    if is_unique_violation(&error) {
        AppError::field("username", USERNAME_TAKEN)
    } else if matches!(error, DbErr::RecordNotUpdated) || is_foreign_key_violation(&error) {
        AppError::NotFound("user")
    } else {
        error.into()
    }
}

/// Create a user and their profile.
#[tracing::instrument(skip_all, fields(username = input.username.as_deref()))]
pub async fn create(db: &DatabaseConnection, input: UserInput) -> AppResult<UserRecord> {
    let mut valid = validate(&input, WriteMode::Create).map_err(AppError::Validation)?;
    let username = valid.username.take().unwrap_or_default();
    if username_taken(db, &username, None).await? {
        return Err(AppError::field("username", USERNAME_TAKEN));
    }
    let password = passwords::hash(valid.password.take().unwrap_or_default()).await?;

    let txn = super::begin_write(db).await?;
    let user = user::ActiveModel {
        username: Set(username),
        password: Set(password),
        first_name: Set(valid.first_name.unwrap_or_default()),
        last_name: Set(valid.last_name.unwrap_or_default()),
        email: Set(valid.email.unwrap_or_default()),
        is_active: Set(true),
        is_staff: Set(false),
        is_superuser: Set(false),
        last_login: Set(None),
        date_joined: Set(now()),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(map_write_error)?;
    let profile = profile::ActiveModel {
        user_id: Set(user.id),
        status: Set(valid.status.unwrap_or_default()),
        status_msg: Set(valid.status_msg.flatten()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    tracing::info!(user_id = user.id, "user created");
    Ok(UserRecord { user, profile })
}

/// Update a user and their profile: a full replacement or a partial update.
#[tracing::instrument(skip(db, input))]
pub async fn update(
    db: &DatabaseConnection,
    id: i64,
    input: UserInput,
    mode: WriteMode,
) -> AppResult<UserRecord> {
    let current = get(db, id).await?;
    let valid = validate(&input, mode).map_err(AppError::Validation)?;
    if let Some(username) = &valid.username
        && *username != current.user.username
        && username_taken(db, username, Some(id)).await?
    {
        return Err(AppError::field("username", USERNAME_TAKEN));
    }
    let password = match valid.password {
        Some(password) => Some(passwords::hash(password).await?),
        None => None,
    };

    let txn = super::begin_write(db).await?;
    let mut user = current.user.into_active_model();
    if let Some(username) = valid.username {
        user.username = Set(username);
    }
    if let Some(password) = password {
        user.password = Set(password);
    }
    if let Some(first_name) = valid.first_name {
        user.first_name = Set(first_name);
    }
    if let Some(last_name) = valid.last_name {
        user.last_name = Set(last_name);
    }
    if let Some(email) = valid.email {
        user.email = Set(email);
    }
    let user = if user.is_changed() {
        user.update(&txn).await.map_err(map_write_error)?
    } else {
        user::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or(AppError::NotFound("user"))?
    };

    let profile = if current.profile.id == 0 {
        profile::ActiveModel {
            user_id: Set(id),
            status: Set(valid.status.unwrap_or_default()),
            status_msg: Set(valid.status_msg.flatten()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(map_write_error)?
    } else {
        let mut profile = current.profile.clone().into_active_model();
        if let Some(status) = valid.status {
            profile.status = Set(status);
        }
        if let Some(status_msg) = valid.status_msg {
            profile.status_msg = Set(status_msg);
        }
        if profile.is_changed() {
            profile.update(&txn).await.map_err(map_write_error)?
        } else {
            current.profile
        }
    };
    txn.commit().await?;
    Ok(UserRecord { user, profile })
}

/// Record a successful login.
pub async fn touch_last_login(db: &impl ConnectionTrait, id: i64) -> AppResult<()> {
    user::Entity::update_many()
        .col_expr(
            user::Column::LastLogin,
            sea_orm::sea_query::Expr::value(now()),
        )
        .filter(user::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Delete a user. Their memberships end (a room they leave empty is deleted,
/// as when its last member leaves); their messages stay, with no sender.
#[tracing::instrument(skip(db))]
pub async fn delete(db: &DatabaseConnection, id: i64) -> AppResult<()> {
    let txn = super::begin_write(db).await?;
    if user::Entity::find_by_id(id).count(&txn).await? == 0 {
        return Err(AppError::NotFound("user"));
    }
    let rooms: Vec<i64> = membership::Entity::find()
        .select_only()
        .column(membership::Column::RoomId)
        .filter(membership::Column::UserId.eq(id))
        .filter(membership::Column::LeftAt.is_null())
        .into_tuple()
        .all(&txn)
        .await?;
    // Memberships, profile and receipts go with the user (ON DELETE CASCADE);
    // messages keep their text with a null sender (ON DELETE SET NULL).
    user::Entity::delete_by_id(id).exec(&txn).await?;
    if !rooms.is_empty() {
        let still_occupied: Vec<i64> = membership::Entity::find()
            .select_only()
            .column(membership::Column::RoomId)
            .filter(membership::Column::RoomId.is_in(rooms.clone()))
            .filter(membership::Column::LeftAt.is_null())
            .distinct()
            .into_tuple()
            .all(&txn)
            .await?;
        let emptied: Vec<i64> = rooms
            .into_iter()
            .filter(|room| !still_occupied.contains(room))
            .collect();
        if !emptied.is_empty() {
            room::Entity::delete_many()
                .filter(room::Column::Id.is_in(emptied))
                .exec(&txn)
                .await?;
        }
    }
    txn.commit().await?;
    tracing::info!(user_id = id, "user deleted");
    Ok(())
}

/// The username of the n-th seeded user.
pub fn seed_username(n: u32) -> String {
    format!("user_{n}")
}

/// Make sure `user_1` .. `user_<count>` exist. Idempotent, and safe when
/// several instances seed at the same moment: an insert that loses the race on
/// the unique username does nothing. Returns how many users were created.
#[tracing::instrument(skip(db))]
pub async fn seed(db: &DatabaseConnection, count: u32) -> AppResult<usize> {
    if count == 0 {
        return Ok(0);
    }
    let wanted: Vec<String> = (1..=count).map(seed_username).collect();
    let existing: Vec<String> = user::Entity::find()
        .select_only()
        .column(user::Column::Username)
        .filter(user::Column::Username.is_in(wanted.clone()))
        .into_tuple()
        .all(db)
        .await?;
    let missing: Vec<String> = wanted
        .into_iter()
        .filter(|name| !existing.contains(name))
        .collect();
    if missing.is_empty() {
        return Ok(0);
    }
    // The seeded accounts share one well-known password, so one hash serves
    // them all and start-up stays fast.
    let password = passwords::hash(SEED_PASSWORD.to_owned()).await?;
    let mut created = 0;
    for username in missing {
        let txn = super::begin_write(db).await?;
        let row = user::ActiveModel {
            username: Set(username),
            password: Set(password.clone()),
            first_name: Set(String::new()),
            last_name: Set(String::new()),
            email: Set(String::new()),
            is_active: Set(true),
            is_staff: Set(false),
            is_superuser: Set(false),
            last_login: Set(None),
            date_joined: Set(now()),
            ..Default::default()
        };
        match insert_unless_exists(&txn, row, user::Column::Username).await? {
            Some(user_id) => {
                profile::Entity::insert(profile::ActiveModel {
                    user_id: Set(user_id),
                    status: Set(Status::Offline),
                    status_msg: Set(None),
                    ..Default::default()
                })
                .exec(&txn)
                .await?;
                txn.commit().await?;
                created += 1;
            }
            None => txn.rollback().await?,
        }
    }
    tracing::info!(created, "seeded users");
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_deleted_meanwhile_is_not_found() {
        assert!(matches!(
            map_write_error(DbErr::RecordNotUpdated),
            AppError::NotFound("user")
        ));
        assert!(matches!(
            map_write_error(DbErr::Custom("other".into())),
            AppError::Internal(_)
        ));
    }

    fn input(username: &str, password: &str) -> UserInput {
        UserInput {
            username: Some(username.into()),
            password: Some(password.into()),
            ..Default::default()
        }
    }

    #[test]
    fn usernames_follow_the_legacy_rules() {
        assert!(check(&input("user.name+tag@x_y-z", "pw"), WriteMode::Create).is_empty());
        assert!(check(&input("élodie", "pw"), WriteMode::Create).is_empty());
        let errors = check(&input("has space", "pw"), WriteMode::Create);
        assert_eq!(errors["username"], vec![USERNAME_CHARS]);
        let errors = check(&input(&"a".repeat(151), "pw"), WriteMode::Create);
        assert_eq!(
            errors["username"],
            vec!["Ensure this field has no more than 150 characters."]
        );
    }

    #[test]
    fn every_bad_field_is_listed() {
        let bad = UserInput {
            username: Some(String::new()),
            password: None,
            email: Some("not-an-email".into()),
            profile: Some(ProfileInput {
                status: Some("Away".into()),
                status_msg: Some(Some("x".repeat(256))),
            }),
            ..Default::default()
        };
        let errors = check(&bad, WriteMode::Create);
        assert_eq!(errors["username"], vec![BLANK]);
        assert_eq!(errors["password"], vec![REQUIRED]);
        assert_eq!(errors["email"], vec![EMAIL_INVALID]);
        assert_eq!(
            errors["profile.status"],
            vec!["\"Away\" is not a valid choice."]
        );
        assert_eq!(
            errors["profile.status_msg"],
            vec!["Ensure this field has no more than 255 characters."]
        );
    }

    #[test]
    fn partial_updates_need_nothing() {
        assert!(check(&UserInput::default(), WriteMode::Patch).is_empty());
        let errors = check(&UserInput::default(), WriteMode::Replace);
        assert_eq!(errors.keys().collect::<Vec<_>>(), vec!["username"]);
    }

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@sub.example.org"] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "", "a", "a@", "@b.co", "a@b", "a b@c.de", "a@b..c", "a@@b.co",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }
}
