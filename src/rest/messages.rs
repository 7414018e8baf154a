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
    identity::{acting_user, signed_in, user_id_param},
    openapi::{
        ChatErrorEnvelope, RoomHistoryEnvelope, SendRequest, TaskIdEnvelope, TaskStateAnswer,
        UnseenEnvelope,
    },
    reply::{ChatError, chat_ok, chat_ok_bytes, json_bytes, json_value},
    shapes::{
        RoomWithMessages, history_from_view, room_messages, rooms_with_members, task_message,
    },
};
use crate::{
    app::AppState,
    domain::{messages, rooms, tasks},
    error::AppError,
    http::ClientIp,
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
    let text = body::text(&fields["text"]).map_err(|e| match e {
        body::TextError::Bad(message) => ChatError::bad_request(format!("text: {message}")),
        body::TextError::Type(_) => ChatError::bad_request("text must be a string"),
    })?;
    let from = acting_user(state, headers, "from", body::positive_id(&fields["from"])).await?;
    Ok((from, text))
}

fn target_id(raw: &str, what: &str) -> Result<i64, ChatError> {
    crate::identity::parse_user_id(raw)
        .ok_or_else(|| ChatError::not_found(format!("{what} not found")))
}

/// `POST /chat/user/<to_user_id>/`: a direct message, sent asynchronously.
#[utoipa::path(
    post,
    path = "/chat/user/{to_user_id}/",
    operation_id = "send_direct_message",
    tag = "messages",
    summary = "Send a direct message",
    description = "Answers at once with a task id. A background job finds or creates the direct \
        room of the two users and stores the message exactly once; an unknown recipient or a bad \
        text ends the task in FAILURE.",
    params(("to_user_id" = i64, Path,
        description = "The recipient's id (not a positive integer: 404).")),
    request_body(
        description = "JSON, or form-encoded fields.",
        content(
            (SendRequest = "application/json"),
            (SendRequest = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "Accepted: `data` is the task id.", body = TaskIdEnvelope),
        (status = 400, description = "Empty body or not an object (`Body is empty or wrong \
            format`), missing keys (`Attribute/s from - text missing`), `text` not a string, or \
            `from` not a positive integer.", body = ChatErrorEnvelope),
        (status = 401, description = "Only with `--legacy-identity=false`: no valid bearer token.",
            body = ChatErrorEnvelope),
        (status = 403, description = "Only with `--legacy-identity=false`: the acting user is not \
            the token's user.", body = ChatErrorEnvelope),
        (status = 404, description = "Unknown sender, or a recipient id that is not a positive \
            integer.", body = ChatErrorEnvelope),
        (status = 500, description = "Unexpected failure.", body = ChatErrorEnvelope),
    )
)]
pub async fn send_direct(
    State(state): State<AppState>,
    Path(to): Path<String>,
    client: ClientIp,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let result = async {
        let to = target_id(&to, "User")?;
        let (from, text) = sender_and_text(&state, &headers, &raw).await?;
        let task = state.sends.direct(from, to, text, None, client.0).await?;
        Ok::<_, ChatError>(chat_ok(task.id.to_string()))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /chat/group/<room_id>/`: a message to a room, sent asynchronously.
#[utoipa::path(
    post,
    path = "/chat/group/{room_id}/",
    operation_id = "send_group_message",
    tag = "messages",
    summary = "Send a message to a room",
    description = "Answers at once with a task id. A background job stores the message exactly \
        once; if the sender is not a current member (or the room is unknown, or the text bad) the \
        task ends in FAILURE and no message is stored.",
    params(("room_id" = i64, Path,
        description = "The room's id (not a positive integer: 404).")),
    request_body(
        description = "JSON, or form-encoded fields.",
        content(
            (SendRequest = "application/json"),
            (SendRequest = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "Accepted: `data` is the task id.", body = TaskIdEnvelope),
        (status = 400, description = "Empty body or not an object (`Body is empty or wrong \
            format`), missing keys (`Attribute/s from - text missing`), `text` not a string, or \
            `from` not a positive integer.", body = ChatErrorEnvelope),
        (status = 401, description = "Only with `--legacy-identity=false`: no valid bearer token.",
            body = ChatErrorEnvelope),
        (status = 403, description = "Only with `--legacy-identity=false`: the acting user is not \
            the token's user.", body = ChatErrorEnvelope),
        (status = 404, description = "Unknown sender, or a room id that is not a positive \
            integer.", body = ChatErrorEnvelope),
        (status = 500, description = "Unexpected failure.", body = ChatErrorEnvelope),
    )
)]
pub async fn send_group(
    State(state): State<AppState>,
    Path(room): Path<String>,
    client: ClientIp,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let result = async {
        let room_id = target_id(&room, "Room")?;
        let (from, text) = sender_and_text(&state, &headers, &raw).await?;
        let task = state
            .sends
            .group(from, room_id, text, None, client.0)
            .await?;
        Ok::<_, ChatError>(chat_ok(task.id.to_string()))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /chat/task_state/<task_id>`: exactly `{"state", "result"}`, the
/// old service's shape. With legacy identity on, anyone with the id reads
/// it, as the old service had it; with it off, only the sender, by token.
#[utoipa::path(
    get,
    path = "/chat/task_state/{task_id}",
    operation_id = "task_state",
    tag = "messages",
    summary = "The state of a send task",
    description = "On SUCCESS `result` is the stored message (with its whole room); on FAILURE \
        `{exc_type, exc_message}`; while PENDING or STARTED null. With `--legacy-identity=false` \
        only the task's sender may read it (bearer token); anyone else gets a 404.",
    params(("task_id" = String, Path, description = "The task id a send answered (a UUID).")),
    responses(
        (status = 200, description = "The task's state and result.", body = TaskStateAnswer),
        (status = 401, description = "Only with `--legacy-identity=false`: no valid bearer token.",
            body = ChatErrorEnvelope),
        (status = 404, description = "Unknown task id (or not a UUID), or, with \
            `--legacy-identity=false`, another user's task.", body = ChatErrorEnvelope),
        (status = 500, description = "Unexpected failure.", body = ChatErrorEnvelope),
    )
)]
pub async fn task_state(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let not_found = || ChatError::not_found("Task not found");
        let id = Uuid::parse_str(id.trim()).map_err(|_| not_found())?;
        let task = if state.config.legacy_identity {
            tasks::get(&state.db, id).await
        } else {
            let viewer = signed_in(&state, &headers).await?;
            tasks::get_for(&state.db, id, viewer).await
        }
        .map_err(|e| match e {
            AppError::NotFound(_) => not_found(),
            other => other.into(),
        })?;
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
        Ok::<_, ChatError>(json_value(
            StatusCode::OK,
            &json!({"state": task.state.as_str(), "result": result}),
        ))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// A room the user may not see is answered like a missing one; other
/// errors stay what they are.
pub(super) fn hidden_room(error: AppError) -> ChatError {
    match error {
        AppError::NotFound(_) | AppError::Forbidden(_) => ChatError::not_found("Room not found"),
        other => other.into(),
    }
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
#[utoipa::path(
    get,
    path = "/chat/messages/{room_id}/",
    operation_id = "room_history",
    tag = "messages",
    summary = "A room's messages",
    description = "The room object plus `messages`: every message of the room, oldest first, \
        with its current text (an edited message shows the edit); deleted messages are left \
        out. Afterwards, in the background, every message of the room not sent by the user is \
        marked seen by them.",
    params(
        ("room_id" = i64, Path, description = "The room's id (anything else is a 404)."),
        ("user_id" = i64, Query, minimum = 1, description = "The acting user: a current member."),
    ),
    responses(
        (status = 200, description = "The room and its messages.", body = RoomHistoryEnvelope),
        (status = 400, description = "No `user_id`, or not a positive integer.",
            body = ChatErrorEnvelope),
        (status = 401, description = "Only with `--legacy-identity=false`: no valid bearer token.",
            body = ChatErrorEnvelope),
        (status = 403, description = "Only with `--legacy-identity=false`: the acting user is not \
            the token's user.", body = ChatErrorEnvelope),
        (status = 404, description = "Unknown room or user, or not a current member.",
            body = ChatErrorEnvelope),
        (status = 500, description = "Unexpected failure.", body = ChatErrorEnvelope),
    )
)]
pub async fn room_history(
    State(state): State<AppState>,
    Path(room): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let result = async {
        let room_id = target_id(&room, "Room")?;
        let user = user_id_param(&state, &headers, uri.query()).await?;
        let (mut views, seen) = state.views.get(&[room_id], true).await?;
        let entry = views
            .remove(&room_id)
            .filter(|entry| entry.view.is_member(user))
            .ok_or_else(|| ChatError::not_found("Room not found"))?;
        let recent = entry.view.recent.as_ref();
        let Some(recent) = recent.filter(|r| r.complete) else {
            // Longer than the read model keeps: from the database.
            return full_history(&state, room_id, user).await;
        };
        let body = match seen.memberships.and_then(|at| entry.rendered(at)) {
            Some(body) => body,
            None => {
                let body = chat_ok_bytes(history_from_view(&state.db, &entry.view).await?)?;
                if let Some(at) = seen.memberships {
                    entry.keep_rendered(at, body.clone());
                }
                body
            }
        };
        if let Some(last) = recent.messages.last() {
            mark_seen_if_unseen(&state, user, room_id, last.message.id).await?;
        }
        Ok::<_, ChatError>(json_bytes(StatusCode::OK, body))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Queue the mark-seen when `user` has unseen messages in the room: a
/// re-read of a room already marked up to its newest message costs nothing.
async fn mark_seen_if_unseen(
    state: &AppState,
    user: i64,
    room: i64,
    last: i64,
) -> Result<(), ChatError> {
    if state.views.marked_up_to(user, room) == Some(last) {
        return Ok(());
    }
    let unseen = messages::unread_counts(&state.db, user, &[room])
        .await?
        .get(&room)
        .copied()
        .unwrap_or(0);
    if unseen > 0 {
        mark_seen_later(state, user, room, last);
    }
    state.views.note_marked(user, room, last);
    Ok(())
}

/// The room history from the database, for rooms longer than the read
/// model's window.
async fn full_history(state: &AppState, room_id: i64, user: i64) -> Result<Response, ChatError> {
    let room = rooms::require_member(&state.db, room_id, user)
        .await
        .map_err(hidden_room)?;
    let mut history = messages::list_room(&state.db, room_id).await?;
    let last = history.last().map(|m| m.id);
    // The legacy history never shows deleted messages.
    history.retain(|m| m.deleted_at.is_none());
    let room = rooms_with_members(&state.db, &[room])
        .await?
        .pop()
        .expect("one room in, one room out");
    let data = RoomWithMessages {
        room,
        messages: room_messages(&state.db, history).await?,
    };
    let body = chat_ok_bytes(data)?;
    if let Some(last) = last {
        mark_seen_if_unseen(state, user, room_id, last).await?;
    }
    Ok(json_bytes(StatusCode::OK, body))
}

/// `GET /chat/messages/unseen/?user_id=N`: every room N is in, each with the
/// messages N has not seen; then N has seen them.
#[utoipa::path(
    get,
    path = "/chat/messages/unseen/",
    operation_id = "unseen_messages",
    tag = "messages",
    summary = "Unseen messages (long-polling)",
    description = "One room object per room where the user is a current member, each with \
        `messages`: the messages the user has not seen, not sent by them and not deleted, \
        oldest first, with their current text. Afterwards they are marked seen by the user in \
        the background.",
    params(("user_id" = i64, Query, minimum = 1, description = "The acting user.")),
    responses(
        (status = 200, description = "The user's rooms with their unseen messages.",
            body = UnseenEnvelope),
        (status = 400, description = "No `user_id`, or not a positive integer.",
            body = ChatErrorEnvelope),
        (status = 401, description = "Only with `--legacy-identity=false`: no valid bearer token.",
            body = ChatErrorEnvelope),
        (status = 403, description = "Only with `--legacy-identity=false`: the acting user is not \
            the token's user.", body = ChatErrorEnvelope),
        (status = 404, description = "Unknown user.", body = ChatErrorEnvelope),
        (status = 500, description = "Unexpected failure.", body = ChatErrorEnvelope),
    )
)]
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
        let mut seen = Vec::new();
        for room in rooms_with_members(&state.db, &list).await? {
            let pending = by_room.remove(&room.id).unwrap_or_default();
            if let Some(last) = pending.last() {
                seen.push((room.id, last.id));
            }
            data.push(RoomWithMessages {
                messages: room_messages(&state.db, pending).await?,
                room,
            });
        }
        // Only once the answer is built: a failure above marks nothing.
        for (room, last) in seen {
            mark_seen_later(&state, user, room, last);
        }
        Ok::<_, ChatError>(chat_ok(data))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
