//! `/chat/user/..`, `/chat/group/..` (sends), `/chat/task_state/..`,
//! `/chat/messages/..` (room history and the unseen long-poll).

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use entity::task::TaskState;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{
    body,
    identity::{acting_user, user_id_param},
    reply::{ChatError, chat_ok, json_value},
    shapes::{RoomWithMessages, room_messages, rooms_with_members, task_message},
};
use crate::{
    app::AppState,
    domain::{messages, rooms, tasks},
    jobs::Job,
};

/// `from` and `text` of a send body.
async fn sender_and_text(
    state: &AppState,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Result<(i64, String), ChatError> {
    let fields: Map<String, Value> =
        body::chat_object(headers, raw).map_err(ChatError::bad_request)?;
    let missing: Vec<&str> = ["from", "text"]
        .into_iter()
        .filter(|key| matches!(fields.get(*key), None | Some(Value::Null)))
        .collect();
    if !missing.is_empty() {
        return Err(ChatError::bad_request(format!(
            "Attribute/s {} missing",
            missing.join(" - ")
        )));
    }
    let text =
        body::text(&fields["text"]).map_err(|_| ChatError::bad_request("text must be a string"))?;
    let from = acting_user(state, headers, "from", body::positive_id(&fields["from"])).await?;
    Ok((from, text))
}

async fn submit(state: &AppState, job: Job) -> Result<Response, ChatError> {
    let task = state.jobs.submit(job).await?;
    Ok(chat_ok(task.id.to_string()))
}

fn target_id(raw: &str, what: &str) -> Result<i64, ChatError> {
    crate::identity::parse_user_id(raw)
        .ok_or_else(|| ChatError::not_found(format!("{what} not found")))
}

/// `POST /chat/user/<to_user_id>/`: a direct message, sent asynchronously.
pub async fn send_direct(
    State(state): State<AppState>,
    Path(to): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let result = async {
        let to = target_id(&to, "User")?;
        let (from, text) = sender_and_text(&state, &headers, &raw).await?;
        submit(&state, Job::SendDirectMessage { from, to, text }).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /chat/group/<room_id>/`: a message to a room, sent asynchronously.
pub async fn send_group(
    State(state): State<AppState>,
    Path(room): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let result = async {
        let room_id = target_id(&room, "Room")?;
        let (from, text) = sender_and_text(&state, &headers, &raw).await?;
        submit(
            &state,
            Job::SendGroupMessage {
                from,
                room_id,
                text,
            },
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /chat/task_state/<task_id>`: `{"state", "result"}`. The same pair is
/// also given inside the chat envelope's `data`, for clients that read it
/// there.
pub async fn task_state(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let result = async {
        let not_found = || ChatError::not_found("Task not found");
        let id = Uuid::parse_str(id.trim()).map_err(|_| not_found())?;
        let task = tasks::get(&state.db, id).await.map_err(|_| not_found())?;
        let result = match task.state {
            TaskState::Success => match tasks::result_message_id(&task) {
                Some(message_id) => match messages::load_many(&state.db, &[message_id])
                    .await?
                    .remove(&message_id)
                {
                    Some(message) => json!(task_message(&state.db, message).await?),
                    None => Value::Null,
                },
                None => task.result.clone().unwrap_or(Value::Null),
            },
            TaskState::Failure => task.error.clone().unwrap_or(Value::Null),
            TaskState::Pending | TaskState::Started => Value::Null,
        };
        let state_name = task.state.as_str();
        Ok::<_, ChatError>(json_value(
            StatusCode::OK,
            &json!({
                "state": state_name,
                "result": result,
                "status": 200,
                "message": "HTTP_200_OK",
                "data": {"state": state_name, "result": result},
            }),
        ))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Mark messages seen by `user` in the background: the answer is not delayed.
fn mark_seen_later(state: &AppState, user: i64, room: i64, up_to: i64) {
    let jobs = state.jobs.clone();
    tokio::spawn(async move {
        let job = Job::MarkSeen {
            user_id: user,
            room_id: room,
            up_to: Some(up_to),
        };
        if let Err(e) = jobs.submit(job).await {
            tracing::warn!(error = %e, "could not queue mark-seen");
        }
    });
}

/// `GET /chat/messages/<room_id>/?user_id=N`: the room and all its messages,
/// oldest first; then N has seen them.
pub async fn room_history(
    State(state): State<AppState>,
    Path(room): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let result = async {
        let room_id = target_id(&room, "Room")?;
        let user = user_id_param(&state, &headers, uri.query()).await?;
        let room = rooms::require_member(&state.db, room_id, user)
            .await
            .map_err(|_| ChatError::not_found("Room not found"))?;
        let history = messages::list_room(&state.db, room_id).await?;
        let last = history.last().map(|m| m.id);
        let room = rooms_with_members(&state.db, &[room])
            .await?
            .pop()
            .expect("one room in, one room out");
        let data = RoomWithMessages {
            room,
            messages: room_messages(&state.db, history).await?,
        };
        if let Some(last) = last {
            mark_seen_later(&state, user, room_id, last);
        }
        Ok::<_, ChatError>(chat_ok(data))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /chat/messages/unseen/?user_id=N`: every room N is in, each with the
/// messages N has not seen; then N has seen them.
pub async fn unseen(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let result = async {
        let user = user_id_param(&state, &headers, uri.query()).await?;
        let list = rooms::list_for_user(&state.db, user).await?;
        let unread = messages::unread_list(&state.db, user).await?;
        let mut by_room: HashMap<i64, Vec<entity::message::Model>> = HashMap::new();
        for message in unread {
            by_room.entry(message.room_id).or_default().push(message);
        }
        let mut data = Vec::with_capacity(list.len());
        for room in rooms_with_members(&state.db, &list).await? {
            let pending = by_room.remove(&room.id).unwrap_or_default();
            if let Some(last) = pending.last() {
                mark_seen_later(&state, user, room.id, last.id);
            }
            data.push(RoomWithMessages {
                messages: room_messages(&state.db, pending).await?,
                room,
            });
        }
        Ok::<_, ChatError>(chat_ok(data))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
