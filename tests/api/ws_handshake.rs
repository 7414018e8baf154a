//! Websocket negotiation and message size: an unknown subprotocol is
//! refused before the upgrade, and an over-size message closes with 1009.

use chat_gateway::config::Config;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::TestApp;

/// An upgrade request by hand; returns the socket and the response head.
async fn handshake(app: &TestApp, protocol: Option<&str>) -> (TcpStream, String) {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let mut request = format!(
        "GET /graphql HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(protocol) = protocol {
        request.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    (stream, String::from_utf8(head).unwrap())
}

/// One masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65_536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [1u8, 2, 3, 4];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The close code the server ends with (skipping other frames).
async fn close_code(stream: &mut TcpStream) -> Option<u16> {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server closes");
    // Walk the server's (unmasked) frames to the close frame.
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let opcode = bytes[at] & 0x0f;
        let mut length = (bytes[at + 1] & 0x7f) as usize;
        let mut start = at + 2;
        if length == 126 {
            length = u16::from_be_bytes([bytes[start], bytes[start + 1]]) as usize;
            start += 2;
        } else if length == 127 {
            length = u64::from_be_bytes(bytes[start..start + 8].try_into().unwrap()) as usize;
            start += 8;
        }
        if opcode == 8 && length >= 2 {
            return Some(u16::from_be_bytes([bytes[start], bytes[start + 1]]));
        }
        at = start + length;
    }
    None
}

fn small_messages(config: &mut Config) {
    config.body_limit_bytes = 4096;
}

async fn unknown_subprotocols_are_refused(app: TestApp) {
    for offered in [Some("bogus-proto"), None, Some("graphql-wss, chat")] {
        let (_, head) = handshake(&app, offered).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{offered:?}: {head}");
    }
    let (_, head) = handshake(&app, Some("bogus-proto, graphql-transport-ws")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: graphql-transport-ws")
    );
}

async fn over_size_messages_close_with_1009(app: TestApp) {
    let (mut stream, head) = handshake(&app, Some("graphql-transport-ws")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let big = vec![b'x'; 5000];
    stream.write_all(&frame(true, 1, &big)).await.unwrap();
    assert_eq!(close_code(&mut stream).await, Some(1009));

    // The same size in fragments.
    let (mut stream, _) = handshake(&app, Some("graphql-transport-ws")).await;
    stream
        .write_all(&frame(false, 1, &big[..2000]))
        .await
        .unwrap();
    stream
        .write_all(&frame(false, 0, &big[2000..4000]))
        .await
        .unwrap();
    let _ = stream.write_all(&frame(true, 0, &big[4000..])).await;
    assert_eq!(close_code(&mut stream).await, Some(1009));
}

crate::scenarios!(
    config = super::small_messages;
    unknown_subprotocols_are_refused,
    over_size_messages_close_with_1009,
);
