//! `/chat/chatroom/`: list, create, get, join (PUT), leave (DELETE).

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    body::{self, EMPTY_OR_WRONG},
    identity::{query_param, signed_in, user_id_param},
    openapi::{
        ChatErrorEnvelope, ChatOk, CreateRoomForm, CreateRoomRequest, RoomEnvelope,
        RoomListEnvelope, RoomOrSummaryEnvelope,
    },
    reply::{ChatError, chat_ok, chat_ok_bytes, json_bytes, json_value},
    shapes::{RoomSummary, rooms_with_members},
};
use crate::{app::AppState, domain::rooms};

fn room_id(raw: &str) -> Result<i64, ChatError> {
    crate::identity::parse_user_id(raw).ok_or_else(|| ChatError::not_found("Room not found"))
}

/// `GET /chat/chatroom/`: every group room; with `?user_id=N`, the rooms
/// (group and direct) N is in, with their members.
#[utoipa::path(
    get,
    path = "/chat/chatroom/",
    operation_id = "list_rooms",
    tag = "chat rooms",
    summary = "List rooms",
    description = "Without `user_id`: every group room as `{id, room_name}` (no members, no \
        direct rooms). With `user_id`: the room objects (with `room_member`) of every room, group \
        or direct, where that user is a current member.",
    params(("user_id" = Option<i64>, Query, minimum = 1,
        description = "The acting user; switches the answer to their rooms.")),
    responses(
        (status = 200, description = "The rooms.", body = RoomListEnvelope),
        (status = 400, description = "`user_id` is not a positive integer.",
            body = ChatErrorEnvelope),
        (status = 401, description = "Only with `--legacy-identity=false`: no valid bearer token.",
            body = ChatErrorEnvelope),
        (status = 403, description = "Only with `--legacy-identity=false`: `user_id` is not the \
            token's user.", body = ChatErrorEnvelope),
        (status = 404, description = "Unknown user.", body = ChatErrorEnvelope),
        (status = 500, description = "Unexpected failure.", body = ChatErrorEnvelope),
    )
)]
pub async fn list(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let result = async {
        if query_param(uri.query(), "user_id").is_none() {
            let groups = rooms::list_groups(&state.db).await?;
            let data: Vec<RoomSummary> = groups.iter().map(RoomSummary::from).collect();
            return Ok(chat_ok(data));
        }
        let user = user_id_param(&state, &headers, uri.query()).await?;
        let body = state
            .room_lists
            .get_or_load(user, async {
                let list = rooms::list_for_user(&state.db, user).await?;
                chat_ok_bytes(rooms_with_members(&state.db, &list).await?)
            })
            .await?;
        Ok::<_, ChatError>(json_bytes(StatusCode::OK, body))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Usernames from `room_member`: `[{"username": ..}, ..]` (or plain names).
/// A name that breaks [`crate::input`]'s rules is refused, naming the field;
/// entries of any other shape are ignored, as the old service did.
fn member_usernames(value: Option<&Value>) -> Result<Vec<String>, ChatError> {
    let items = match value {
        Some(Value::Array(items)) => items.as_slice(),
        Some(single @ (Value::Object(_) | Value::String(_))) => std::slice::from_ref(single),
        _ => &[],
    };
    let mut names = Vec::with_capacity(items.len());
    for item in items {
        let name = match item {
            Value::Object(fields) => match fields.get("username") {
                Some(name) => name,
                None => continue,
            },
            name @ Value::String(_) => name,
            _ => continue,
        };
        match body::text(name) {
            Ok(name) => names.push(name),
            Err(body::TextError::Bad(message)) => {
                return Err(ChatError::bad_request(format!("room_member: {message}")));
            }
            Err(body::TextError::Type(_)) => {}
        }
    }
    Ok(names)
}

/// `POST /chat/chatroom/`: create a group room with members.
#[utoipa::path(
    post,
    path = "/chat/chatroom/",
    operation_id = "create_room",
    tag = "chat rooms",
    summary = "Create a group room",
    request_body(
        description = "JSON, or form-encoded fields (`room_member` then names usernames).",
        content(
            (CreateRoomRequest = "application/json"),
            (CreateRoomForm = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "The new room with its members.", body = RoomEnvelope),
        (status = 400, description = "Empty body or not an object (`Body is empty or wrong \
            format`), no `room_name` (`Attribute/s room_name missing`), or the name is taken.",
            body = ChatErrorEnvelope),
        (status = 401, description = "Only with `--legacy-identity=false`: no valid bearer token.",
            body = ChatErrorEnvelope),
        (status = 500, description = "Unexpected failure.", body = ChatErrorEnvelope),
    )
)]
pub async fn create(State(state): State<AppState>, headers: HeaderMap, raw: Bytes) -> Response {
    let result = async {
        // With legacy identity off every write needs a signed-in user.
        if !state.config.legacy_identity {
            signed_in(&state, &headers).await?;
        }
        let fields = body::chat_object(&headers, &raw).map_err(ChatError::bad_request)?;
        let name = match fields.get("room_name") {
            None | Some(Value::Null) => {
                return Err(ChatError::bad_request("Attribute/s room_name missing"));
            }
            Some(value) => body::text(value).map_err(|e| match e {
                body::TextError::Bad(message) => {
                    ChatError::bad_request(format!("room_name: {message}"))
                }
                body::TextError::Type(_) => ChatError::bad_request(EMPTY_OR_WRONG),
            })?,
        };
        let members = member_usernames(fields.get("room_member"))?;
        let room = rooms::create(&state.db, state.events.as_ref(), &name, &members, None).await?;
        let mut data = rooms_with_members(&state.db, &[room]).await?;
        Ok::<_, ChatError>(chat_ok(data.pop()))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /chat/chatroom/<id>/`: a group room; with `?user_id=N`, any room N
/// is in, with its members.
#[utoipa::path(
    get,
    path = "/chat/chatroom/{id}/",
    operation_id = "get_room",
    tag = "chat rooms",
    summary = "Get a room",
    description = "Without `user_id`: `{id, room_name}` of a group room (a direct room is a \
        404). With `user_id`: the room object if that user is a current member, else 404.",
    params(
        ("id" = i64, Path, description = "The room's id (anything else is a 404)."),
        ("user_id" = Option<i64>, Query, minimum = 1,
            description = "The acting user; switches the answer to the room with its members."),
    ),
    responses(
        (status = 200, description = "The room.", body = RoomOrSummaryEnvelope),
        (status = 400, description = "`user_id` is not a positive integer.",
            body = ChatErrorEnvelope),
        (status = 401, description = "Only with `--legacy-identity=false`: no valid bearer token.",
            body = ChatErrorEnvelope),
        (status = 403, description = "Only with `--legacy-identity=false`: `user_id` is not the \
            token's user.", body = ChatErrorEnvelope),
        (status = 404, description = "Unknown room, a direct room without `user_id`, unknown \
            user, or not a member.", body = ChatErrorEnvelope),
        (status = 500, description = "Unexpected failure.", body = ChatErrorEnvelope),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let result = async {
        let id = room_id(&id)?;
        let not_found = || ChatError::not_found("Room not found");
        if query_param(uri.query(), "user_id").is_none() {
            let room = rooms::get(&state.db, id)
                .await
                .map_err(super::messages::hidden_room)?;
            if room.is_direct {
                return Err(not_found());
            }
            return Ok(chat_ok(RoomSummary::from(&room)));
        }
        let user = user_id_param(&state, &headers, uri.query()).await?;
        let room = rooms::require_member(&state.db, id, user)
            .await
            .map_err(super::messages::hidden_room)?;
        let mut data = rooms_with_members(&state.db, &[room]).await?;
        Ok::<_, ChatError>(chat_ok(data.pop()))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `PUT /chat/chatroom/<id>/?user_id=N`: join.
#[utoipa::path(
    put,
    path = "/chat/chatroom/{id}/",
    operation_id = "join_room",
    tag = "chat rooms",
    summary = "Join a room",
    description = "A new membership starts (membership history is kept).",
    params(
        ("id" = i64, Path, description = "The room's id (anything else is a 404)."),
        ("user_id" = i64, Query, minimum = 1, description = "The user who joins."),
    ),
    responses(
        (status = 200, description = "Joined (no `data`).", body = ChatOk),
        (status = 400, description = "No or bad `user_id`, already a member, or a direct room \
            (`Can't join a private chat`).", body = ChatErrorEnvelope),
        (status = 401, description = "Only with `--legacy-identity=false`: no valid bearer token.",
            body = ChatErrorEnvelope),
        (status = 403, description = "Only with `--legacy-identity=false`: `user_id` is not the \
            token's user.", body = ChatErrorEnvelope),
        (status = 404, description = "Unknown room or user.", body = ChatErrorEnvelope),
        (status = 500, description = "Unexpected failure.", body = ChatErrorEnvelope),
    )
)]
pub async fn join(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let result = async {
        let id = room_id(&id)?;
        let user = user_id_param(&state, &headers, uri.query()).await?;
        rooms::join(&state.db, state.events.as_ref(), id, user).await?;
        Ok::<_, ChatError>(json_value(
            StatusCode::OK,
            &json!({"status": 200, "message": "HTTP_200_OK"}),
        ))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE /chat/chatroom/<id>/?user_id=N`: leave; the last member leaving
/// deletes the room.
#[utoipa::path(
    delete,
    path = "/chat/chatroom/{id}/",
    operation_id = "leave_room",
    tag = "chat rooms",
    summary = "Leave a room",
    description = "The membership ends. When the last member leaves, the room is deleted.",
    params(
        ("id" = i64, Path, description = "The room's id (anything else is a 404)."),
        ("user_id" = i64, Query, minimum = 1, description = "The user who leaves."),
    ),
    responses(
        (status = 204, description = "Left; no body."),
        (status = 400, description = "No or bad `user_id`, or not a member.",
            body = ChatErrorEnvelope),
        (status = 401, description = "Only with `--legacy-identity=false`: no valid bearer token.",
            body = ChatErrorEnvelope),
        (status = 403, description = "Only with `--legacy-identity=false`: `user_id` is not the \
            token's user.", body = ChatErrorEnvelope),
        (status = 404, description = "Unknown room or user.", body = ChatErrorEnvelope),
        (status = 500, description = "Unexpected failure.", body = ChatErrorEnvelope),
    )
)]
pub async fn leave(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let result = async {
        let id = room_id(&id)?;
        let user = user_id_param(&state, &headers, uri.query()).await?;
        rooms::leave(&state.db, state.events.as_ref(), id, user).await?;
        Ok::<_, ChatError>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
