//! `/users/`: the user list (cached), create, get, full and partial update,
//! delete. Errors use DRF's shapes, not the chat envelope.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use entity::profile::Status;
use serde_json::{Map, Value};

use super::{
    body::{self, BodyError},
    identity::{query_param, signed_in_user},
    openapi::{
        CreateUserForm, CreateUserRequest, Detail, PatchUserForm, PatchUserRequest, ProfileStatus,
        ReplaceUserForm, ReplaceUserRequest, UserFieldErrors, UsersBadRequest, UsersServerError,
    },
    reply::{UsersError, json_bytes, json_value},
    shapes::LegacyUser,
};
use crate::{
    app::AppState,
    domain::users::{self, ProfileInput, UserFilter, UserInput, WriteMode},
    error::{AppError, FieldErrors},
    http::ClientIp,
};

const REQUIRED: &str = "This field is required.";

fn user_id(raw: &str) -> Result<i64, UsersError> {
    crate::identity::parse_user_id(raw).ok_or_else(UsersError::not_found)
}

/// `GET /users/`: every user, by id, with exact-match filters.
#[utoipa::path(
    get,
    path = "/users/",
    operation_id = "list_users",
    tag = "users",
    summary = "List users",
    description = "Every user, ordered by id, with exact-match filters (an empty filter is \
        ignored). Served from the user-list cache, never staler than the last completed write.",
    params(
        ("id" = Option<i64>, Query, description = "Exact user id."),
        ("username" = Option<String>, Query, pattern = r"^[^\u0000]*$", description = "Exact username."),
        ("first_name" = Option<String>, Query, pattern = r"^[^\u0000]*$", description = "Exact first name."),
        ("last_name" = Option<String>, Query, pattern = r"^[^\u0000]*$", description = "Exact last name."),
        ("profile__status" = Option<ProfileStatus>, Query, description = "Exact profile status."),
    ),
    responses(
        (status = 200, description = "The users, ordered by id.", body = Vec<LegacyUser>),
        (status = 400, description = "A filter is not valid (`id` not a number, an unknown \
            `profile__status`).", body = UserFieldErrors,
            example = json!({"id": ["Enter a number."]})),
        (status = 500, description = "Unexpected failure.", body = UsersServerError),
    )
)]
pub async fn list(State(state): State<AppState>, uri: Uri) -> Response {
    let query = uri.query();
    let mut errors = FieldErrors::new();
    let id = match query_param(query, "id").filter(|v| !v.is_empty()) {
        None => None,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => {
                errors.insert("id".into(), vec!["Enter a number.".into()]);
                None
            }
        },
    };
    let status = match query_param(query, "profile__status").filter(|v| !v.is_empty()) {
        None => None,
        Some(raw) => match Status::parse(&raw) {
            Some(status) => Some(status),
            None => {
                errors.insert(
                    "profile__status".into(),
                    vec![format!(
                        "Select a valid choice. {raw} is not one of the available choices."
                    )],
                );
                None
            }
        },
    };
    if !errors.is_empty() {
        return UsersError::fields(&errors).into_response();
    }
    let text = |name| query_param(query, name).filter(|v| !v.is_empty());
    let filter = UserFilter {
        id,
        username: text("username"),
        first_name: text("first_name"),
        last_name: text("last_name"),
        status,
    };
    let rendered = state
        .accounts
        .cached_list(&filter, |users| {
            let list: Vec<LegacyUser> = users.iter().map(LegacyUser::from).collect();
            serde_json::to_vec(&list)
                .map(Bytes::from)
                .map_err(AppError::internal)
        })
        .await;
    match rendered {
        Ok(bytes) => json_bytes(StatusCode::OK, bytes),
        Err(e) => UsersError::from(e).into_response(),
    }
}

/// Read a user body into domain input, collecting type errors per field.
fn user_input(fields: &Map<String, Value>, mode: WriteMode) -> (UserInput, FieldErrors) {
    let mut errors = FieldErrors::new();
    let mut text_field = |name: &str| -> Option<String> {
        let value = fields.get(name)?;
        match body::text(value) {
            Ok(text) => Some(text),
            Err(error) => {
                errors.insert(name.to_owned(), vec![error.message().to_owned()]);
                None
            }
        }
    };
    let mut input = UserInput {
        username: text_field("username"),
        password: text_field("password"),
        first_name: text_field("first_name"),
        last_name: text_field("last_name"),
        email: text_field("email"),
        profile: None,
    };
    match fields.get("profile") {
        None if mode != WriteMode::Patch => {
            errors.insert("profile".into(), vec![REQUIRED.into()]);
        }
        None => {}
        Some(Value::Object(profile)) => {
            let mut parsed = ProfileInput::default();
            match profile.get("status") {
                None => {}
                Some(Value::String(status)) => parsed.status = Some(status.clone()),
                Some(other) => {
                    let shown = other
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| other.to_string());
                    errors.insert(
                        "profile.status".into(),
                        vec![format!("\"{shown}\" is not a valid choice.")],
                    );
                }
            }
            match profile.get("status_msg") {
                None => {}
                Some(Value::Null) => parsed.status_msg = Some(None),
                Some(value) => match body::text(value) {
                    Ok(text) => parsed.status_msg = Some(Some(text)),
                    Err(error) => {
                        errors.insert(
                            "profile.status_msg".into(),
                            vec![error.message().to_owned()],
                        );
                    }
                },
            }
            input.profile = Some(parsed);
        }
        Some(other) => {
            let kind = match other {
                Value::String(_) => "str",
                Value::Array(_) => "list",
                Value::Number(_) => "int",
                Value::Bool(_) => "bool",
                _ => "NoneType",
            };
            errors.insert(
                "profile.non_field_errors".into(),
                vec![format!(
                    "Invalid data. Expected a dictionary, but got {kind}."
                )],
            );
        }
    }
    (input, errors)
}

/// Parse, validate (every bad field at once) and hand over to `write`.
async fn write_user<F, Fut>(
    headers: &HeaderMap,
    raw: &Bytes,
    mode: WriteMode,
    write: F,
) -> Result<LegacyUser, UsersError>
where
    F: FnOnce(UserInput) -> Fut,
    Fut: std::future::Future<Output = Result<users::UserRecord, AppError>>,
{
    let fields = match body::object(headers, raw) {
        Ok(fields) => fields,
        // No body: every required field is missing.
        Err(BodyError::Empty) => Map::new(),
        Err(BodyError::NotAnObject(kind)) => {
            let mut errors = FieldErrors::new();
            errors.insert(
                "non_field_errors".into(),
                vec![format!(
                    "Invalid data. Expected a dictionary, but got {kind}."
                )],
            );
            return Err(UsersError::fields(&errors));
        }
        Err(BodyError::Malformed(reason)) => {
            return Err(UsersError::detail(
                StatusCode::BAD_REQUEST,
                format!("JSON parse error - {reason}"),
            ));
        }
        Err(BodyError::NotUtf8(field)) => {
            let mut errors = FieldErrors::new();
            errors.insert(field, vec![crate::input::FormError::MESSAGE.to_owned()]);
            return Err(UsersError::fields(&errors));
        }
    };
    let (input, mut errors) = user_input(&fields, mode);
    for (field, messages) in users::check(&input, mode) {
        errors.entry(field).or_insert(messages);
    }
    if !errors.is_empty() {
        return Err(UsersError::fields(&errors));
    }
    let record = write(input).await.map_err(UsersError::from)?;
    Ok(LegacyUser::from(&record))
}

/// `POST /users/`.
#[utoipa::path(
    post,
    path = "/users/",
    operation_id = "create_user",
    tag = "users",
    summary = "Create a user",
    request_body(
        description = "JSON, or form-encoded fields (`profile.status=Busy` for the profile).",
        content(
            (CreateUserRequest = "application/json"),
            (CreateUserForm = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 201, description = "Created.", body = LegacyUser),
        (status = 400, description = "Invalid: every bad field listed (no body: every \
            required field missing); a body that is not JSON is a `detail`.",
            body = UsersBadRequest),
        (status = 429, description = "Too many sign-ups from this address \
            (`RATE_LIMIT_SIGNUPS_PER_ADDRESS`), or too many passwords being hashed at once; \
            `Retry-After` says when to try again.", body = Detail),
        (status = 500, description = "Unexpected failure.", body = UsersServerError),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let accounts = state.accounts.clone();
    match write_user(&headers, &raw, WriteMode::Create, |input| async move {
        accounts.create(input, client.0).await
    })
    .await
    {
        Ok(user) => json_value(StatusCode::CREATED, &user),
        Err(e) => e.into_response(),
    }
}

/// `GET /users/<id>/`.
#[utoipa::path(
    get,
    path = "/users/{id}/",
    operation_id = "get_user",
    tag = "users",
    summary = "Get a user",
    params(("id" = i64, Path, description = "The user's id (anything else is a 404).")),
    responses(
        (status = 200, description = "The user.", body = LegacyUser),
        (status = 404, description = "Unknown user.", body = Detail,
            example = json!({"detail": "Not found."})),
        (status = 500, description = "Unexpected failure.", body = UsersServerError),
    )
)]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let result = async {
        let id = user_id(&id)?;
        let record = users::get(&state.db, id).await?;
        Ok::<_, UsersError>(LegacyUser::from(&record))
    }
    .await;
    match result {
        Ok(user) => json_value(StatusCode::OK, &user),
        Err(e) => e.into_response(),
    }
}

/// With legacy identity off, only the account's owner (bearer token) may
/// change or delete it.
async fn owner_only(state: &AppState, headers: &HeaderMap, id: i64) -> Result<(), UsersError> {
    if state.config.legacy_identity {
        return Ok(());
    }
    let viewer = signed_in_user(state, headers)
        .await
        .map_err(|e| UsersError::detail(StatusCode::UNAUTHORIZED, e.public_message()))?;
    if viewer == id {
        Ok(())
    } else {
        Err(UsersError::detail(
            StatusCode::FORBIDDEN,
            "You do not have permission to perform this action.",
        ))
    }
}

async fn update(
    state: AppState,
    headers: HeaderMap,
    id: String,
    raw: Bytes,
    mode: WriteMode,
) -> Response {
    let result = async {
        let id = user_id(&id)?;
        owner_only(&state, &headers, id).await?;
        // Unknown users are a 404 before any validation.
        users::get(&state.db, id).await?;
        let accounts = state.accounts.clone();
        write_user(&headers, &raw, mode, |input| async move {
            accounts.update(id, input, mode).await
        })
        .await
    }
    .await;
    match result {
        Ok(user) => json_value(StatusCode::OK, &user),
        Err(e) => e.into_response(),
    }
}

/// `PUT /users/<id>/`: full update (`password` optional).
#[utoipa::path(
    put,
    path = "/users/{id}/",
    operation_id = "replace_user",
    tag = "users",
    summary = "Replace a user",
    description = "Full update, nested `profile` included; the same body rules as creating, \
        `password` optional.",
    params(("id" = i64, Path, description = "The user's id (anything else is a 404).")),
    request_body(
        description = "JSON, or form-encoded fields (`profile.status=Busy` for the profile).",
        content(
            (ReplaceUserRequest = "application/json"),
            (ReplaceUserForm = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "Updated.", body = LegacyUser),
        (status = 400, description = "Invalid: every bad field listed; a body that is not JSON \
            is a `detail`.", body = UsersBadRequest),
        (status = 401, description = "Only with `--legacy-identity=false`: no valid bearer token.",
            body = Detail),
        (status = 403, description = "Only with `--legacy-identity=false`: not the account's owner.",
            body = Detail),
        (status = 404, description = "Unknown user (before any validation).", body = Detail,
            example = json!({"detail": "Not found."})),
        (status = 429, description = "A new password, while too many passwords are being \
            hashed at once; `Retry-After` says when to try again.", body = Detail),
        (status = 500, description = "Unexpected failure.", body = UsersServerError),
    )
)]
pub async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    update(state, headers, id, raw, WriteMode::Replace).await
}

/// `PATCH /users/<id>/`: any subset of fields.
#[utoipa::path(
    patch,
    path = "/users/{id}/",
    operation_id = "patch_user",
    tag = "users",
    summary = "Update part of a user",
    params(("id" = i64, Path, description = "The user's id (anything else is a 404).")),
    request_body(
        description = "JSON, or form-encoded fields (`profile.status=Busy` for the profile).",
        content(
            (PatchUserRequest = "application/json"),
            (PatchUserForm = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "Updated.", body = LegacyUser),
        (status = 400, description = "Invalid: every bad field listed; a body that is not JSON \
            is a `detail`.", body = UsersBadRequest),
        (status = 401, description = "Only with `--legacy-identity=false`: no valid bearer token.",
            body = Detail),
        (status = 403, description = "Only with `--legacy-identity=false`: not the account's owner.",
            body = Detail),
        (status = 404, description = "Unknown user (before any validation).", body = Detail,
            example = json!({"detail": "Not found."})),
        (status = 429, description = "A new password, while too many passwords are being \
            hashed at once; `Retry-After` says when to try again.", body = Detail),
        (status = 500, description = "Unexpected failure.", body = UsersServerError),
    )
)]
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    update(state, headers, id, raw, WriteMode::Patch).await
}

/// `DELETE /users/<id>/`: 204; memberships end, messages stay.
#[utoipa::path(
    delete,
    path = "/users/{id}/",
    operation_id = "delete_user",
    tag = "users",
    summary = "Delete a user",
    description = "The user's memberships end; their messages stay, with the sender shown as null.",
    params(("id" = i64, Path, description = "The user's id (anything else is a 404).")),
    responses(
        (status = 204, description = "Deleted; no body."),
        (status = 401, description = "Only with `--legacy-identity=false`: no valid bearer token.",
            body = Detail),
        (status = 403, description = "Only with `--legacy-identity=false`: not the account's owner.",
            body = Detail),
        (status = 404, description = "Unknown user.", body = Detail,
            example = json!({"detail": "Not found."})),
        (status = 500, description = "Unexpected failure.", body = UsersServerError),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let id = user_id(&id)?;
        owner_only(&state, &headers, id).await?;
        state.accounts.delete(id).await?;
        Ok::<_, UsersError>(())
    }
    .await;
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}
