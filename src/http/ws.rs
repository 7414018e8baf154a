//! GraphQL over websockets on `/graphql` (and `/graphql/ws`), in both
//! subprotocols: `graphql-transport-ws` (followed to the letter, close codes
//! included) and the older `graphql-ws` (subscriptions-transport-ws).
//!
//! One task per connection reads client messages; every operation runs in
//! its own task and sends its results through a bounded per-connection
//! queue, so a slow client slows only itself, never other clients or the
//! senders of messages (subscriptions that fall behind the event bus catch
//! up from the database).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    sync::mpsc,
    task::{AbortHandle, JoinSet},
};

use crate::{app::AppState, graphql, identity::Identity};

pub const TRANSPORT_WS: &str = "graphql-transport-ws";
pub const LEGACY_WS: &str = "graphql-ws";

/// Messages one connection may have queued for sending.
const OUTBOX: usize = 256;
/// Operations one connection may run at once.
const MAX_OPERATIONS: usize = 100;
/// A client that takes longer than this to take one message is dropped.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How an operation's task ended.
enum Ended {
    /// Its stream finished: the session sends `complete`.
    Completed,
    /// It failed before it started; an `error` went out instead.
    Errored,
    /// The connection is going away, or the client stopped it.
    Gone,
}

/// A running operation.
struct Running {
    generation: u64,
    handle: AbortHandle,
    /// Cleared when the client stops the operation, so nothing more of it
    /// is sent even while its task winds down.
    live: Arc<AtomicBool>,
}

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

/// What goes out on the socket.
enum Out {
    Text(String),
    Close(u16, &'static str),
}

fn text(value: Value) -> Out {
    Out::Text(value.to_string())
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
pub async fn serve(socket: WebSocket, state: AppState, protocol: Protocol, upgrade: Identity) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut outbox) = mpsc::channel::<Out>(OUTBOX);

    // The writer: everything leaves through here, in order.
    let writer = tokio::spawn(async move {
        while let Some(message) = outbox.recv().await {
            let frame = match message {
                Out::Text(text) => WsMessage::Text(Utf8Bytes::from(text)),
                Out::Close(code, reason) => {
                    let close = WsMessage::Close(Some(CloseFrame {
                        code,
                        reason: Utf8Bytes::from_static(reason),
                    }));
                    let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(close)).await;
                    break;
                }
            };
            // A client that stops reading is dropped, not waited for.
            if !matches!(
                tokio::time::timeout(SEND_TIMEOUT, sink.send(frame)).await,
                Ok(Ok(()))
            ) {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let init_timeout = state.config.ws_init_timeout();
    let keepalive = state.config.ws_keepalive();
    let mut session = Session {
        state,
        protocol,
        out,
        viewer: None,
        operations: HashMap::new(),
        tasks: JoinSet::new(),
        generation: 0,
    };
    let deadline = tokio::time::sleep(init_timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);

    loop {
        tokio::select! {
                            _ = &mut deadline, if session.viewer.is_none() => {
                                session.close(4408, "Connection initialisation timeout").await;
                                break;
                            }
                            _ = ticker.tick(), if session.viewer.is_some() => {
                                let beat = match session.protocol {
                                    Protocol::TransportWs => json!({"type": "ping"}),
                                    Protocol::LegacyWs => json!({"type": "ka"}),
                                };
                                let _ = session.out.try_send(text(beat));
                            }
                Some(finished) = session.tasks.join_next() => Box::pin(session.reap(finished)).await,
                            incoming = stream.next() => {
                                let Some(Ok(message)) = incoming else { break };
                                let text = match message {
                                    WsMessage::Text(text) => text.to_string(),
                                    WsMessage::Binary(bytes) => match String::from_utf8(bytes.to_vec()) {
                                        Ok(text) => text,
                                        Err(_) => {
                                            session.close(4400, "Invalid message: not UTF-8").await;
                                            break;
                                        }
                                    },
                                    WsMessage::Close(_) => break,
                                    WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
                                };
        // Boxed: an idle connection then holds only a small future.
                                if !Box::pin(session.handle(&text, &upgrade)).await {
                                    break;
                                }
                            }
                        }
    }
    session.tasks.abort_all();
    drop(session);
    let _ = writer.await;
}

struct Session {
    state: AppState,
    protocol: Protocol,
    out: mpsc::Sender<Out>,
    /// `Some` once `connection_init` was accepted (the viewer may be anonymous).
    viewer: Option<Identity>,
    /// Running operations by client id.
    operations: HashMap<String, Running>,
    tasks: JoinSet<(String, u64, Ended)>,
    /// Numbers the operations, so a finished one is never mistaken for a
    /// newer one reusing its id.
    generation: u64,
}

impl Session {
    async fn send(&self, value: Value) {
        let _ = self.out.send(text(value)).await;
    }

    async fn close(&self, code: u16, reason: &'static str) {
        let _ = self.out.send(Out::Close(code, reason)).await;
    }

    /// An operation's task ended: free its id, then say `complete`.
    async fn reap(&mut self, finished: Result<(String, u64, Ended), tokio::task::JoinError>) {
        // An aborted task was already removed when it was stopped.
        let Ok((id, generation, ended)) = finished else {
            return;
        };
        if self
            .operations
            .get(&id)
            .is_some_and(|running| running.generation == generation)
        {
            self.operations.remove(&id);
            if matches!(ended, Ended::Completed) {
                self.send(json!({"type": "complete", "id": id})).await;
            }
        }
    }

    /// Handle one client message; false when the connection must end.
    async fn handle(&mut self, raw: &str, upgrade: &Identity) -> bool {
        let Ok(message) = serde_json::from_str::<Value>(raw) else {
            return self.invalid("Invalid message: not JSON").await;
        };
        let Some(kind) = message.get("type").and_then(Value::as_str) else {
            return self.invalid("Invalid message: no `type`").await;
        };
        let id = message.get("id").and_then(Value::as_str).map(str::to_owned);
        match (self.protocol, kind) {
            (_, "connection_init") => self.init(message.get("payload"), upgrade).await,
            (Protocol::TransportWs, "ping") => {
                let mut pong = json!({"type": "pong"});
                if let Some(payload) = message.get("payload") {
                    pong["payload"] = payload.clone();
                }
                self.send(pong).await;
                true
            }
            (Protocol::TransportWs, "pong") => true,
            (Protocol::TransportWs, "subscribe") | (Protocol::LegacyWs, "start") => {
                let Some(id) = id.filter(|id| !id.is_empty()) else {
                    return self.invalid("Invalid message: `id` is required").await;
                };
                let Some(payload) = message.get("payload").filter(|p| p.is_object()) else {
                    return self.invalid("Invalid message: `payload` is required").await;
                };
                self.subscribe(id, payload.clone()).await
            }
            (Protocol::TransportWs, "complete") | (Protocol::LegacyWs, "stop") => {
                let Some(id) = id else {
                    return self.invalid("Invalid message: `id` is required").await;
                };
                if let Some(running) = self.operations.remove(&id) {
                    running.live.store(false, Ordering::Release);
                    running.handle.abort();
                    if self.protocol == Protocol::LegacyWs {
                        self.send(json!({"type": "complete", "id": id})).await;
                    }
                }
                true
            }
            (Protocol::LegacyWs, "connection_terminate") => false,
            _ => {
                self.invalid_owned(format!("Invalid message type `{kind}`"))
                    .await
            }
        }
    }

    async fn invalid(&self, reason: &'static str) -> bool {
        match self.protocol {
            Protocol::TransportWs => self.close(4400, reason).await,
            Protocol::LegacyWs => {
                self.send(json!({"type": "connection_error", "payload": {"message": reason}}))
                    .await
            }
        }
        self.protocol == Protocol::LegacyWs
    }

    async fn invalid_owned(&self, reason: String) -> bool {
        match self.protocol {
            Protocol::TransportWs => {
                let _ = self.out.send(Out::Close(4400, "Invalid message")).await;
                tracing::debug!(%reason, "websocket closed");
                false
            }
            Protocol::LegacyWs => {
                self.send(json!({"type": "connection_error", "payload": {"message": reason}}))
                    .await;
                true
            }
        }
    }

    async fn init(&mut self, payload: Option<&Value>, upgrade: &Identity) -> bool {
        if self.viewer.is_some() {
            return match self.protocol {
                Protocol::TransportWs => {
                    self.close(4429, "Too many initialisation requests").await;
                    false
                }
                Protocol::LegacyWs => true,
            };
        }
        let identity = identity_of(&self.state, payload.unwrap_or(&Value::Null), upgrade);
        let accepted = match &identity {
            Identity::Anonymous => true,
            other => other
                .require(&self.state.db, self.state.accounts.known_users())
                .await
                .is_ok(),
        };
        if !accepted {
            match self.protocol {
                Protocol::TransportWs => self.close(4403, "Forbidden").await,
                Protocol::LegacyWs => {
                    self.send(json!({"type": "connection_error", "payload": {"message": "Forbidden: the identity in connection_init was refused"}}))
                        .await;
                    self.close(4403, "Forbidden").await;
                }
            }
            return false;
        }
        self.viewer = Some(identity);
        self.send(json!({"type": "connection_ack"})).await;
        if self.protocol == Protocol::LegacyWs {
            self.send(json!({"type": "ka"})).await;
        }
        true
    }

    async fn subscribe(&mut self, id: String, payload: Value) -> bool {
        let Some(identity) = self.viewer.clone() else {
            return match self.protocol {
                Protocol::TransportWs => {
                    self.close(4401, "Unauthorized").await;
                    false
                }
                Protocol::LegacyWs => {
                    self.send(json!({"type": "error", "id": id, "payload": {"message": "Send connection_init first"}}))
                        .await;
                    true
                }
            };
        };
        if self.operations.contains_key(&id) {
            return match self.protocol {
                Protocol::TransportWs => {
                    let _ = self
                        .out
                        .send(Out::Close(4409, "Subscriber for this id already exists"))
                        .await;
                    false
                }
                Protocol::LegacyWs => {
                    self.send(json!({"type": "error", "id": id, "payload": {"message": format!("Operation `{id}` is already running")}}))
                        .await;
                    true
                }
            };
        }
        if self.operations.len() >= MAX_OPERATIONS {
            self.send(self.error_message(
                &id,
                json!([{"message": format!("At most {MAX_OPERATIONS} operations may run on one connection")}]),
            ))
            .await;
            return true;
        }
        let request =
            match serde_json::from_value::<async_graphql::Request>(payload) {
                Ok(request) => request,
                Err(e) => {
                    self.send(self.error_message(
                        &id,
                        json!([{"message": format!("Invalid operation: {e}")}]),
                    ))
                    .await;
                    return true;
                }
            };
        let state = self.state.clone();
        let out = self.out.clone();
        let protocol = self.protocol;
        self.generation += 1;
        let generation = self.generation;
        let live = Arc::new(AtomicBool::new(true));
        let operation = Operation {
            id: id.clone(),
            protocol,
            out,
            live: live.clone(),
        };
        let handle = self.tasks.spawn(async move {
            let ended = run_operation(state, &operation, request, identity).await;
            (operation.id, generation, ended)
        });
        self.operations.insert(
            id,
            Running {
                generation,
                handle,
                live,
            },
        );
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

/// Where an operation's results go.
struct Operation {
    id: String,
    protocol: Protocol,
    out: mpsc::Sender<Out>,
    live: Arc<AtomicBool>,
}

impl Operation {
    /// Send a message of this operation; false once it must stop.
    async fn send(&self, message: Value) -> bool {
        self.live.load(Ordering::Acquire) && self.out.send(text(message)).await.is_ok()
    }
}

/// Run one operation and stream its results; the session sends `complete`.
async fn run_operation(
    state: AppState,
    operation: &Operation,
    request: async_graphql::Request,
    identity: Identity,
) -> Ended {
    let id = &operation.id;
    let mut responses = Box::pin(graphql::execute_stream(
        &state.schema,
        &state.db,
        request,
        identity,
    ));
    let mut first = true;
    while let Some(response) = responses.next().await {
        // An operation that never started (validation, authorization):
        // an `error` message for its id, and the socket stays open.
        if first && response.data == async_graphql::Value::Null && !response.errors.is_empty() {
            let errors = serde_json::to_value(&response.errors).unwrap_or(Value::Null);
            let message = match operation.protocol {
                Protocol::TransportWs => json!({"type": "error", "id": id, "payload": errors}),
                Protocol::LegacyWs => {
                    json!({"type": "error", "id": id, "payload": errors.get(0).cloned().unwrap_or(Value::Null)})
                }
            };
            return if operation.send(message).await {
                Ended::Errored
            } else {
                Ended::Gone
            };
        }
        first = false;
        let payload = serde_json::to_value(&response).unwrap_or(Value::Null);
        let message = match operation.protocol {
            Protocol::TransportWs => json!({"type": "next", "id": id, "payload": payload}),
            Protocol::LegacyWs => json!({"type": "data", "id": id, "payload": payload}),
        };
        if !operation.send(message).await {
            return Ended::Gone;
        }
    }
    Ended::Completed
}
