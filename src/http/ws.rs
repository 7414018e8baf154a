//! GraphQL over websockets on `/graphql` (and `/graphql/ws`), in both
//! subprotocols: `graphql-transport-ws` (followed to the letter, close codes
//! included) and the older `graphql-ws` (subscriptions-transport-ws).
//!
//! A connection is one task: it reads client messages, takes the results of
//! its running operations, and writes them. Each operation runs in a task of
//! its own, at most one result ahead ([`crate::graphql::Running`]), and its
//! next result is only taken while the socket accepts writes: a client that
//! stops reading holds nothing but its own connection and one result per
//! operation (never a database connection; its subscriptions fall behind the
//! event bus and later catch up from the database), and one that takes no
//! message for `WS_SEND_TIMEOUT_SECS` is dropped. Nothing a slow client does
//! ever blocks other clients or the senders of messages.

use std::{
    collections::VecDeque,
    future::{Future, poll_fn},
    pin::Pin,
    task::{Context, Poll},
};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use futures::{Sink, StreamExt, stream::BoxStream};
use serde_json::{Value, json};
use tokio::time::Sleep;

use super::ClientIp;
use crate::{app::AppState, identity::Identity, presence::PresenceGuard, service::sessions};

pub const TRANSPORT_WS: &str = "graphql-transport-ws";
pub const LEGACY_WS: &str = "graphql-ws";

/// Operations one connection may run at once.
const MAX_OPERATIONS: usize = 100;
/// Answers to the client's own messages (acks, pongs, errors) that may wait
/// for the socket before the connection stops reading from the client.
const QUEUE_LIMIT: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws` (graphql-ws library).
    TransportWs,
    /// `graphql-ws` (subscriptions-transport-ws, Apollo's older protocol).
    LegacyWs,
}

impl Protocol {
    pub fn from_name(name: Option<&str>) -> Self {
        match name {
            Some(LEGACY_WS) => Protocol::LegacyWs,
            _ => Protocol::TransportWs,
        }
    }
}

/// The identity in a `connection_init` payload, falling back to the upgrade
/// request's own headers.
fn identity_of(state: &AppState, payload: &Value, fallback: &Identity) -> Identity {
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| payload.get(*name))
            .filter(|v| !v.is_null())
    };
    if let Some(auth) = field(&["authorization", "Authorization"]).and_then(Value::as_str) {
        return Identity::from_authorization(auth);
    }
    let legacy = field(&["userId", "user_id", "x-user-id", "X-User-Id"]).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    if let Some(raw) = legacy {
        return Identity::from_legacy(Some(&raw), None, state.config.legacy_identity);
    }
    // `{"headers": {...}}`, as some clients send it.
    if let Some(headers) = payload.get("headers").filter(|h| h.is_object()) {
        return identity_of(state, headers, fallback);
    }
    fallback.clone()
}

/// Serve one websocket connection until it closes.
pub async fn serve(
    socket: WebSocket,
    state: AppState,
    protocol: Protocol,
    upgrade: Identity,
    client: ClientIp,
) {
    let timer = Box::pin(tokio::time::sleep(state.config.ws_init_timeout()));
    let mut session = Session {
        socket,
        state,
        protocol,
        upgrade,
        client,
        viewer: None,
        user: None,
        presence: None,
        session: None,
        operations: Vec::new(),
        next_operation: 0,
        queue: VecDeque::new(),
        timer,
        stalled: None,
    };
    session.run().await;
}

/// Was a read refused because the message is over the size limit?
fn is_too_big(error: axum::Error) -> bool {
    error
        .into_inner()
        .downcast::<tungstenite::Error>()
        .is_ok_and(|e| matches!(*e, tungstenite::Error::Capacity(_)))
}

/// Does the handshake offer a subprotocol this server speaks?
pub fn offers_known_protocol(offered: Option<&str>) -> bool {
    offered.is_some_and(|list| {
        list.split(',')
            .map(str::trim)
            .any(|p| p == TRANSPORT_WS || p == LEGACY_WS)
    })
}

/// A running operation: its client id and its stream of results.
struct Operation {
    id: String,
    responses: BoxStream<'static, async_graphql::Response>,
    /// Whether a result went out (a first result with errors only means the
    /// operation never started).
    started: bool,
}

/// What woke the connection.
enum Step {
    Incoming(Option<Result<WsMessage, axum::Error>>),
    /// The next result of `operations[index]`; `None` when it finished.
    Result(usize, Option<async_graphql::Response>),
    /// The init deadline (before `connection_init`) or the keep-alive.
    Timer,
    /// The viewer's session ended.
    SessionEnded,
    /// The client is gone or took nothing for the send timeout.
    WriteFailed,
}

struct Session {
    socket: WebSocket,
    state: AppState,
    protocol: Protocol,
    /// The identity of the upgrade request, used when `connection_init`
    /// names none.
    upgrade: Identity,
    /// The client's address, for rate limits.
    client: ClientIp,
    /// `Some` once `connection_init` was accepted (the viewer may be anonymous).
    viewer: Option<Identity>,
    /// The viewer's user id, once known.
    user: Option<i64>,
    /// Held while the connection is live: the viewer is online.
    presence: Option<PresenceGuard>,
    /// The viewer's live session: the connection ends with it (a revoked
    /// or expired token, a deleted account).
    session: Option<sessions::Session>,
    operations: Vec<Operation>,
    /// Where the next round of polling operations starts, so a busy
    /// operation cannot starve the others.
    next_operation: usize,
    /// Frames waiting for the socket, in order.
    queue: VecDeque<WsMessage>,
    /// The init deadline, then the keep-alive.
    timer: Pin<Box<Sleep>>,
    /// Runs while the socket takes nothing.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Session {
    async fn run(&mut self) {
        loop {
            let go_on = match poll_fn(|cx| self.poll_step(cx)).await {
                // Boxed: an idle connection then holds only a small future.
                Step::Incoming(Some(Ok(message))) => Box::pin(self.incoming(message)).await,
                Step::Incoming(Some(Err(error))) => {
                    if is_too_big(error) {
                        self.close(1009, "Message too big");
                    }
                    false
                }
                Step::Incoming(None) | Step::WriteFailed => false,
                Step::Result(index, response) => {
                    self.result(index, response);
                    true
                }
                Step::Timer => self.timer_fired(),
                Step::SessionEnded => {
                    // Nothing more goes out for this identity: what was
                    // queued is dropped, then the close.
                    self.queue.clear();
                    self.operations.clear();
                    self.close(4401, "Unauthorized: the session ended");
                    false
                }
            };
            if !go_on {
                break;
            }
        }
        // Whatever is still queued (a close frame, say), then the close.
        self.operations.clear();
        let _ = tokio::time::timeout(self.state.config.ws_send_timeout(), async {
            if poll_fn(|cx| self.poll_write(cx)).await.is_ok() {
                let _ = poll_fn(|cx| Pin::new(&mut self.socket).poll_close(cx)).await;
            }
        })
        .await;
    }

    /// Write the queue out and flush; ready when everything is written.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        let mut socket = Pin::new(&mut self.socket);
        while !self.queue.is_empty() {
            match socket.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
                Poll::Pending => return Poll::Pending,
            }
            let frame = self.queue.pop_front().expect("queue is not empty");
            // Progress: the stall clock starts again.
            self.stalled = None;
            if socket.as_mut().start_send(frame).is_err() {
                return Poll::Ready(Err(()));
            }
        }
        socket.poll_flush(cx).map_err(|_| ())
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        let writable = match self.poll_write(cx) {
            Poll::Ready(Ok(())) => {
                self.stalled = None;
                true
            }
            Poll::Ready(Err(())) => return Poll::Ready(Step::WriteFailed),
            Poll::Pending => {
                let timeout = self.state.config.ws_send_timeout();
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stalled.as_mut().poll(cx).is_ready() {
                    tracing::debug!(?timeout, "websocket client took nothing: disconnected");
                    return Poll::Ready(Step::WriteFailed);
                }
                false
            }
        };
        if let Some(session) = self.session.as_mut()
            && Pin::new(&mut session.ended).poll(cx).is_ready()
        {
            return Poll::Ready(Step::SessionEnded);
        }
        // A client that does not read its answers is not read from either.
        if self.queue.len() < QUEUE_LIMIT
            && let Poll::Ready(incoming) = self.socket.poll_next_unpin(cx)
        {
            return Poll::Ready(Step::Incoming(incoming));
        }
        // Results are taken only while the socket takes them.
        if writable {
            let count = self.operations.len();
            for k in 0..count {
                let index = (self.next_operation + k) % count;
                if let Poll::Ready(response) = self.operations[index].responses.poll_next_unpin(cx)
                {
                    self.next_operation = index + 1;
                    return Poll::Ready(Step::Result(index, response));
                }
            }
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Step::Timer);
        }
        Poll::Pending
    }

    /// The init deadline passed, or it is time for a keep-alive.
    fn timer_fired(&mut self) -> bool {
        if self.viewer.is_none() {
            self.close(4408, "Connection initialisation timeout");
            return false;
        }
        let beat = match self.protocol {
            Protocol::TransportWs => json!({"type": "ping"}),
            Protocol::LegacyWs => json!({"type": "ka"}),
        };
        self.send(beat);
        self.restart_timer(self.state.config.ws_keepalive());
        true
    }

    fn restart_timer(&mut self, after: std::time::Duration) {
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + after);
    }

    async fn incoming(&mut self, message: WsMessage) -> bool {
        let text = match &message {
            WsMessage::Text(text) => text.as_str(),
            WsMessage::Binary(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    self.close(4400, "Invalid message: not UTF-8");
                    return false;
                }
            },
            WsMessage::Close(_) => return false,
            WsMessage::Ping(_) | WsMessage::Pong(_) => return true,
        };
        self.handle(text).await
    }

    /// The next result of an operation, or its end.
    fn result(&mut self, index: usize, response: Option<async_graphql::Response>) {
        let Some(response) = response else {
            // Finished: its id is free before the client hears `complete`.
            let operation = self.operations.swap_remove(index);
            self.send(json!({"type": "complete", "id": operation.id}));
            return;
        };
        let operation = &mut self.operations[index];
        // An operation that never started (validation, authorization): an
        // `error` message for its id, and the socket stays open.
        if !operation.started
            && response.data == async_graphql::Value::Null
            && !response.errors.is_empty()
        {
            let operation = self.operations.swap_remove(index);
            let errors = serde_json::to_value(&response.errors).unwrap_or(Value::Null);
            let message = self.error_message(&operation.id, errors);
            self.send(message);
            return;
        }
        operation.started = true;
        // The payload is serialized once, straight into the frame.
        let kind = match self.protocol {
            Protocol::TransportWs => "next",
            Protocol::LegacyWs => "data",
        };
        let id = Value::String(operation.id.clone()).to_string();
        let payload = self.state.graphql.to_json(&response);
        let mut frame = Vec::with_capacity(payload.len() + id.len() + 40);
        frame.extend_from_slice(b"{\"type\":\"");
        frame.extend_from_slice(kind.as_bytes());
        frame.extend_from_slice(b"\",\"id\":");
        frame.extend_from_slice(id.as_bytes());
        frame.extend_from_slice(b",\"payload\":");
        frame.extend_from_slice(&payload);
        frame.push(b'}');
        // JSON is UTF-8 by construction.
        let text = String::from_utf8(frame).unwrap_or_default();
        self.queue.push_back(WsMessage::Text(Utf8Bytes::from(text)));
    }

    fn send(&mut self, value: Value) {
        self.queue
            .push_back(WsMessage::Text(Utf8Bytes::from(value.to_string())));
    }

    /// Queue a close frame; the connection ends once it is written.
    fn close(&mut self, code: u16, reason: &str) {
        // A close frame has room for 123 bytes of reason.
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.queue.push_back(WsMessage::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(&reason[..end]),
        })));
    }

    /// Handle one client message; false when the connection must end.
    async fn handle(&mut self, raw: &str) -> bool {
        let Ok(message) = serde_json::from_str::<Value>(raw) else {
            return self.invalid("Invalid message: not JSON".into());
        };
        let Some(kind) = message.get("type").and_then(Value::as_str) else {
            return self.invalid("Invalid message: no `type`".into());
        };
        let id = message.get("id").and_then(Value::as_str).map(str::to_owned);
        match (self.protocol, kind) {
            (_, "connection_init") => self.init(message.get("payload")).await,
            (Protocol::TransportWs, "ping") => {
                let mut pong = json!({"type": "pong"});
                if let Some(payload) = message.get("payload") {
                    pong["payload"] = payload.clone();
                }
                self.send(pong);
                true
            }
            (Protocol::TransportWs, "pong") => true,
            (Protocol::TransportWs, "subscribe") | (Protocol::LegacyWs, "start") => {
                let Some(id) = id.filter(|id| !id.is_empty()) else {
                    return self.invalid("Invalid message: `id` is required".into());
                };
                let Some(payload) = message.get("payload").filter(|p| p.is_object()) else {
                    return self.invalid("Invalid message: `payload` is required".into());
                };
                self.subscribe(id, payload.clone()).await
            }
            (Protocol::TransportWs, "complete") | (Protocol::LegacyWs, "stop") => {
                let Some(id) = id else {
                    return self.invalid("Invalid message: `id` is required".into());
                };
                // Dropping its stream stops the operation at once.
                if let Some(index) = self.operations.iter().position(|op| op.id == id) {
                    self.operations.swap_remove(index);
                    if self.protocol == Protocol::LegacyWs {
                        self.send(json!({"type": "complete", "id": id}));
                    }
                }
                true
            }
            (Protocol::LegacyWs, "connection_terminate") => false,
            _ => self.invalid(format!("Invalid message type `{kind}`")),
        }
    }

    /// A message that breaks the protocol: `graphql-transport-ws` closes
    /// with 4400, `graphql-ws` answers `connection_error` and goes on.
    fn invalid(&mut self, reason: String) -> bool {
        match self.protocol {
            Protocol::TransportWs => {
                self.close(4400, &reason);
                false
            }
            Protocol::LegacyWs => {
                self.send(json!({"type": "connection_error", "payload": {"message": reason}}));
                true
            }
        }
    }

    async fn init(&mut self, payload: Option<&Value>) -> bool {
        if self.viewer.is_some() {
            return match self.protocol {
                Protocol::TransportWs => {
                    self.close(4429, "Too many initialisation requests");
                    false
                }
                Protocol::LegacyWs => true,
            };
        }
        let identity = identity_of(&self.state, payload.unwrap_or(&Value::Null), &self.upgrade);
        let accepted = match &identity {
            Identity::Anonymous => true,
            other => match self
                .state
                .sessions
                .open(other, self.state.accounts.known_users())
                .await
            {
                Ok((user, session)) => {
                    self.user = Some(user);
                    self.session = Some(session);
                    self.presence = Some(self.state.presence.connected(user));
                    true
                }
                Err(_) => false,
            },
        };
        if !accepted {
            if self.protocol == Protocol::LegacyWs {
                self.send(json!({"type": "connection_error", "payload": {"message": "Forbidden: the identity in connection_init was refused"}}));
            }
            self.close(4403, "Forbidden");
            return false;
        }
        self.viewer = Some(identity);
        self.send(json!({"type": "connection_ack"}));
        if self.protocol == Protocol::LegacyWs {
            self.send(json!({"type": "ka"}));
        }
        self.restart_timer(self.state.config.ws_keepalive());
        true
    }

    async fn subscribe(&mut self, id: String, payload: Value) -> bool {
        let Some(identity) = self.viewer.clone() else {
            return match self.protocol {
                Protocol::TransportWs => {
                    self.close(4401, "Unauthorized");
                    false
                }
                Protocol::LegacyWs => {
                    self.send(json!({"type": "error", "id": id, "payload": {"message": "Send connection_init first"}}));
                    true
                }
            };
        };
        if self.operations.iter().any(|op| op.id == id) {
            return match self.protocol {
                Protocol::TransportWs => {
                    self.close(4409, "Subscriber for this id already exists");
                    false
                }
                Protocol::LegacyWs => {
                    self.send(json!({"type": "error", "id": id, "payload": {"message": format!("Operation `{id}` is already running")}}));
                    true
                }
            };
        }
        // Rate limits count operations that would start.
        if let Err(error) = self
            .state
            .throttle
            .ws_operation(self.user, self.client.0)
            .await
        {
            let retry_after = match &error {
                crate::error::AppError::RateLimited { retry_after, .. } => {
                    retry_after.as_secs().max(1)
                }
                _ => 1,
            };
            let message = self.error_message(
                &id,
                json!([{"message": error.public_message(),
                    "extensions": {"code": error.code(), "retryAfter": retry_after}}]),
            );
            self.send(message);
            return true;
        }
        if self.operations.len() >= MAX_OPERATIONS {
            let message = self.error_message(
                &id,
                json!([{"message": format!("At most {MAX_OPERATIONS} operations may run on one connection")}]),
            );
            self.send(message);
            return true;
        }
        let request = match serde_json::from_value::<async_graphql::Request>(payload) {
            Ok(request) => request,
            Err(e) => {
                let message = self
                    .error_message(&id, json!([{"message": format!("Invalid operation: {e}")}]));
                self.send(message);
                return true;
            }
        };
        let responses = self
            .state
            .graphql
            .execute_stream(request, identity, self.client);
        self.operations.push(Operation {
            id,
            responses,
            started: false,
        });
        true
    }

    fn error_message(&self, id: &str, errors: Value) -> Value {
        match self.protocol {
            Protocol::TransportWs => json!({"type": "error", "id": id, "payload": errors}),
            Protocol::LegacyWs => {
                json!({"type": "error", "id": id, "payload": errors.get(0).cloned().unwrap_or(errors)})
            }
        }
    }
}
