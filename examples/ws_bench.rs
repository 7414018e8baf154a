//! Benchmark: subscriptions over websockets against a running gateway.
//!
//! `latency`: SUBSCRIBERS users subscribe to `unreadMessages` in one room;
//! a sender posts RATE messages per second for SECONDS seconds, each text
//! carrying its send time; every subscriber measures send -> delivery.
//!
//! `hold`: open CONNECTIONS websockets, each with one `unreadMessages`
//! subscription, then keep them open until killed (the script reads the
//! gateway's memory meanwhile).
//!
//!     cargo run --release --example ws_bench -- latency http://127.0.0.1:18700 ROOM 20 200 10
//!     cargo run --release --example ws_bench -- hold http://127.0.0.1:18700 10000 200

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{Socket, connect, percentile, subscribe};

const UNREAD: &str = "subscription { unreadMessages { text } }";

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// A connection of `user` with one `unreadMessages` subscription (none
/// with `NO_SUBSCRIBE` set).
async fn subscribed(base: &str, user: i64) -> Socket {
    let mut socket = connect(base, user).await;
    if std::env::var("NO_SUBSCRIBE").is_err() {
        subscribe(&mut socket, UNREAD, Value::Null).await;
    }
    socket
}

async fn latency(base: String, room: i64, subscribers: i64, rate: u64, seconds: u64) {
    let mut tasks = Vec::new();
    let (samples_tx, mut samples_rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
    for user in 2..(2 + subscribers) {
        let mut socket = subscribed(&base, user).await;
        let samples = samples_tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text).unwrap();
                if let Some(sent) = value["payload"]["data"]["unreadMessages"]["text"]
                    .as_str()
                    .and_then(|t| t.strip_prefix("t="))
                    .and_then(|t| t.parse::<u128>().ok())
                {
                    let _ = samples.send((now_micros() - sent) as f64 / 1000.0);
                }
            }
        }));
    }
    drop(samples_tx);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let client = reqwest::Client::new();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let total = rate * seconds;
    for _ in 0..total {
        ticker.tick().await;
        let body = json!({
            "query": "mutation($r: ID!, $t: String!) { sendGroupMessage(roomId: $r, text: $t) { id } }",
            "variables": {"r": room.to_string(), "t": format!("t={}", now_micros())}
        });
        let client = client.clone();
        let url = format!("{base}/graphql");
        tokio::spawn(async move {
            let _ = client
                .post(url)
                .header("x-user-id", "1")
                .json(&body)
                .send()
                .await;
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for task in &tasks {
        task.abort();
    }
    let mut samples = Vec::new();
    while let Ok(sample) = samples_rx.try_recv() {
        samples.push(sample);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let expected = total as usize * subscribers as usize;
    println!(
        "deliveries={} expected={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        samples.len(),
        expected,
        percentile(&samples, 50.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or(0.0)
    );
}

async fn hold(base: String, connections: usize, users: i64) {
    let mut sockets = Vec::with_capacity(connections);
    for i in 0..connections {
        let user = (i as i64 % users) + 1;
        sockets.push(subscribed(&base, user).await);
        if (i + 1) % 1000 == 0 {
            println!("open={}", i + 1);
        }
    }
    println!("HOLDING connections={}", sockets.len());
    // Keep reading so the server never blocks on us.
    let mut readers = Vec::new();
    for mut socket in sockets {
        readers.push(tokio::spawn(async move {
            while socket.next().await.is_some() {}
        }));
    }
    futures::future::pending::<()>().await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("latency") => {
            latency(
                args[1].clone(),
                args[2].parse().unwrap(),
                args[3].parse().unwrap(),
                args[4].parse().unwrap(),
                args[5].parse().unwrap(),
            )
            .await
        }
        Some("hold") => {
            hold(
                args[1].clone(),
                args[2].parse().unwrap(),
                args[3].parse().unwrap(),
            )
            .await
        }
        _ => eprintln!(
            "usage: ws_bench latency URL ROOM SUBSCRIBERS RATE SECONDS | hold URL CONNECTIONS USERS"
        ),
    }
}
