//! A small websocket client for the GraphQL subscription tests.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, client_async, connect_async,
    tungstenite::{
        Message,
        client::IntoClientRequest,
        handshake::client::{Request, Response},
        http::HeaderValue,
    },
};

use crate::helpers::TestApp;

pub struct Socket {
    inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server did next.
#[derive(Debug)]
pub enum Next {
    Message(Value),
    Closed(Option<u16>),
    Nothing,
}

impl Socket {
    pub async fn connect(app: &TestApp, protocol: &str) -> Socket {
        Self::connect_to(app, "/graphql", protocol).await
    }

    pub async fn connect_to(app: &TestApp, path: &str, protocol: &str) -> Socket {
        let (inner, response) = connect_async(Self::request(app, path, protocol))
            .await
            .expect("websocket connects");
        Self::accepted(inner, response, protocol)
    }

    /// Connect over a TCP socket with a small receive buffer, so that a
    /// client that stops reading soon holds the server's writes up.
    pub async fn connect_with_receive_buffer(app: &TestApp, protocol: &str, bytes: u32) -> Socket {
        let address = app.address.trim_start_matches("http://").parse().unwrap();
        let tcp = tokio::net::TcpSocket::new_v4().unwrap();
        tcp.set_recv_buffer_size(bytes).unwrap();
        let stream = tcp.connect(address).await.expect("TCP connects");
        let (inner, response) = client_async(
            Self::request(app, "/graphql", protocol),
            MaybeTlsStream::Plain(stream),
        )
        .await
        .expect("websocket connects");
        Self::accepted(inner, response, protocol)
    }

    fn request(app: &TestApp, path: &str, protocol: &str) -> Request {
        let url = app.url(path).replacen("http://", "ws://", 1);
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocol).unwrap(),
        );
        request
    }

    fn accepted(
        inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
        response: Response,
        protocol: &str,
    ) -> Socket {
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            protocol,
            "the server speaks the asked-for subprotocol"
        );
        Socket { inner }
    }

    pub async fn send(&mut self, value: Value) {
        self.inner
            .send(Message::Text(value.to_string().into()))
            .await
            .expect("sent");
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.inner
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("sent");
    }

    /// The next message within `wait` (keep-alives skipped).
    pub async fn next_within(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.inner.next()).await {
                Err(_) => return Next::Nothing,
                Ok(None) => return Next::Closed(None),
                Ok(Some(Err(_))) => return Next::Closed(None),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON message");
                    if value["type"] == "ka" {
                        continue;
                    }
                    return Next::Message(value);
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Next::Closed(frame.map(|f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next message; fails the test after 10 s.
    pub async fn next(&mut self) -> Value {
        match self.next_within(Duration::from_secs(10)).await {
            Next::Message(value) => value,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The close code the server ends with.
    pub async fn closed_with(&mut self) -> Option<u16> {
        match self.next_within(Duration::from_secs(10)).await {
            Next::Closed(code) => code,
            other => panic!("expected the socket to close, got {other:?}"),
        }
    }

    /// Nothing arrives within `wait`.
    pub async fn quiet_for(&mut self, wait: Duration) {
        match self.next_within(wait).await {
            Next::Nothing => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// `connection_init` with a payload, expecting the ack.
    pub async fn init(&mut self, payload: Value) {
        self.send(json!({"type": "connection_init", "payload": payload}))
            .await;
        let ack = self.next().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }

    /// Subscribe (graphql-transport-ws).
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"id": id, "type": "subscribe",
                         "payload": {"query": query, "variables": variables}}))
            .await;
    }
}
