//! What the websocket benchmarks share: a `graphql-transport-ws` client
//! connection and percentiles.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `graphql-transport-ws` connection of `user` to the gateway at `base`,
/// acknowledged.
pub async fn connect(base: &str, user: i64) -> Socket {
    let url = format!("{}/graphql", base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = connect_async(request).await.expect("connect");
    let init = json!({"type": "connection_init", "payload": {"userId": user}});
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message
            && serde_json::from_str::<Value>(&text).unwrap()["type"] == "connection_ack"
        {
            break;
        }
    }
    socket
}

/// Start subscription `1` on `socket`.
pub async fn subscribe(socket: &mut Socket, query: &str, variables: Value) {
    let subscribe = json!({"id": "1", "type": "subscribe",
        "payload": {"query": query, "variables": variables}});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
}

/// The `p`th percentile of sorted samples (0 when there are none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}
