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
    identity::{query_param, user_id_param},
    reply::{ChatError, chat_ok, json_value},
    shapes::{RoomSummary, rooms_with_members},
};
use crate::{app::AppState, domain::rooms};

fn room_id(raw: &str) -> Result<i64, ChatError> {
    crate::identity::parse_user_id(raw).ok_or_else(|| ChatError::not_found("Room not found"))
}

/// `GET /chat/chatroom/`: every group room; with `?user_id=N`, the rooms
/// (group and direct) N is in, with their members.
pub async fn list(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let result = async {
        if query_param(uri.query(), "user_id").is_none() {
            let groups = rooms::list_groups(&state.db).await?;
            let data: Vec<RoomSummary> = groups.iter().map(RoomSummary::from).collect();
            return Ok(chat_ok(data));
        }
        let user = user_id_param(&state, &headers, uri.query()).await?;
        let list = rooms::list_for_user(&state.db, user).await?;
        Ok::<_, ChatError>(chat_ok(rooms_with_members(&state.db, &list).await?))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Usernames from `room_member`: `[{"username": ..}, ..]` (or plain names).
fn member_usernames(value: Option<&Value>) -> Vec<String> {
    let items = match value {
        Some(Value::Array(items)) => items.clone(),
        Some(single @ (Value::Object(_) | Value::String(_))) => vec![single.clone()],
        _ => Vec::new(),
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::Object(fields) => fields.get("username").and_then(|u| body::text(u).ok()),
            Value::String(name) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// `POST /chat/chatroom/`: create a group room with members.
pub async fn create(State(state): State<AppState>, headers: HeaderMap, raw: Bytes) -> Response {
    let result = async {
        let fields = body::chat_object(&headers, &raw).map_err(ChatError::bad_request)?;
        let name = match fields.get("room_name") {
            None | Some(Value::Null) => {
                return Err(ChatError::bad_request("Attribute/s room_name missing"));
            }
            Some(value) => body::text(value).map_err(|_| ChatError::bad_request(EMPTY_OR_WRONG))?,
        };
        let members = member_usernames(fields.get("room_member"));
        let room = rooms::create(&state.db, &name, &members, None).await?;
        let mut data = rooms_with_members(&state.db, &[room]).await?;
        Ok::<_, ChatError>(chat_ok(data.pop()))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /chat/chatroom/<id>/`: a group room; with `?user_id=N`, any room N
/// is in, with its members.
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
            let room = rooms::get(&state.db, id).await.map_err(|_| not_found())?;
            if room.is_direct {
                return Err(not_found());
            }
            return Ok(chat_ok(RoomSummary::from(&room)));
        }
        let user = user_id_param(&state, &headers, uri.query()).await?;
        let room = rooms::require_member(&state.db, id, user)
            .await
            .map_err(|_| not_found())?;
        let mut data = rooms_with_members(&state.db, &[room]).await?;
        Ok::<_, ChatError>(chat_ok(data.pop()))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `PUT /chat/chatroom/<id>/?user_id=N`: join.
pub async fn join(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let result = async {
        let id = room_id(&id)?;
        let user = user_id_param(&state, &headers, uri.query()).await?;
        rooms::join(&state.db, id, user).await?;
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
pub async fn leave(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let result = async {
        let id = room_id(&id)?;
        let user = user_id_param(&state, &headers, uri.query()).await?;
        rooms::leave(&state.db, id, user).await?;
        Ok::<_, ChatError>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
