//! The HTTP transport against slow and silent clients: header, body and
//! idle timeouts, the in-flight cap, and their metrics.

use std::time::{Duration, Instant};

use chat_gateway::config::Config;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::TestApp;

fn short_timeouts(config: &mut Config) {
    config.http_header_timeout_secs = 1;
    config.http_body_timeout_secs = 1;
    config.http_idle_timeout_secs = 2;
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Everything the server sends until it closes the connection, and how
/// long that took. Fails if the server keeps it open past `limit`.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open past {limit:?}"
    );
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

async fn metric(app: &TestApp, line: &str) -> bool {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines().any(|l| l.starts_with(line))
}

async fn unfinished_headers_are_dropped(app: TestApp) {
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (received, _) = until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(!received.contains("200 OK"), "{received}");
    assert!(metric(&app, "http_connections_dropped_total{reason=\"header\"}").await);
}

async fn short_bodies_get_408(app: TestApp) {
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{}",
        )
        .await
        .unwrap();
    let (received, _) = until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    assert!(metric(&app, "http_connections_dropped_total{reason=\"body\"}").await);
}

async fn idle_keep_alive_connections_are_closed(app: TestApp) {
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (received, _) = until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
}

async fn a_silent_connection_is_closed(app: TestApp) {
    let mut stream = connect(&app).await;
    let (received, _) = until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(received.is_empty(), "{received}");
}

crate::scenarios!(
    config = super::short_timeouts;
    unfinished_headers_are_dropped,
    short_bodies_get_408,
    idle_keep_alive_connections_are_closed,
    a_silent_connection_is_closed,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_in_flight_cap_get_503() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, |c| {
        c.max_in_flight = 1;
        c.http_body_timeout_secs = 3;
    })
    .await
    .unwrap();
    // A request whose body never finishes holds the only slot.
    let mut holder = connect(&app).await;
    holder
        .write_all(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = app
        .client
        .post(app.url("/graphql"))
        .json(&serde_json::json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    // The probes are always answered.
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(metric(&app, "http_requests_shed_total").await);
}
