//! Benchmarks of the chat features against a running gateway.
//!
//! `fill`: user_1 sends COUNT messages to ROOM (32 at a time), texts of
//! eight words drawn from a skewed vocabulary (a few words are in many
//! messages, most in few), then waits until all are stored.
//!
//! `search`: for SECONDS per query, one client runs `searchMessages` (first
//! 20) back to back as user_1; prints p50 / p99 / max per query.
//!
//! `typing`: SUBSCRIBERS users (user_2 ...) subscribe to `roomEvents` of
//! ROOM; user_1 turns typing on and off ROUNDS times, 100 ms apart; every
//! subscriber measures each indicator from the `setTyping` request to its
//! delivery; prints p50 / p99 / max over all deliveries.
//!
//!     cargo run --release --example feature_bench -- fill http://127.0.0.1:18700 1 100000
//!     cargo run --release --example feature_bench -- search http://127.0.0.1:18700 5
//!     cargo run --release --example feature_bench -- typing http://127.0.0.1:18700 1 1000 50

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{Socket, connect, percentile, subscribe};

/// Common words first: word `k` is drawn with weight 1/(k+1).
const COMMON: [&str; 12] = [
    "the", "pizza", "meeting", "tonight", "report", "coffee", "deploy", "weekend", "budget",
    "release", "lunch", "review",
];
const WORDS: usize = 5000;

fn word(index: usize) -> String {
    match COMMON.get(index) {
        Some(word) => (*word).to_owned(),
        None => format!("w{index}"),
    }
}

/// A small deterministic generator (xorshift), so every run fills alike.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A word index, Zipf-like over [`WORDS`].
    fn word(&mut self, harmonic: f64) -> usize {
        let mut target = (self.next() % 1_000_000) as f64 / 1_000_000.0 * harmonic;
        for k in 0..WORDS {
            target -= 1.0 / (k + 1) as f64;
            if target <= 0.0 {
                return k;
            }
        }
        WORDS - 1
    }
}

async fn graphql(
    client: &reqwest::Client,
    base: &str,
    user: i64,
    query: &str,
    vars: Value,
) -> Value {
    client
        .post(format!("{base}/graphql"))
        .header("x-user-id", user.to_string())
        .json(&json!({"query": query, "variables": vars}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

async fn fill(base: String, room: i64, count: usize) {
    let harmonic: f64 = (0..WORDS).map(|k| 1.0 / (k + 1) as f64).sum();
    let mut draw = Draw(0x9E37_79B9_7F4A_7C15);
    let texts: Vec<String> = (0..count)
        .map(|_| {
            (0..8)
                .map(|_| word(draw.word(harmonic)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let texts = Arc::new(Mutex::new(texts));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..32 {
        let (texts, client, base) = (texts.clone(), client.clone(), base.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let Some(text) = texts.lock().unwrap().pop() else {
                    return;
                };
                let answer = graphql(
                    &client,
                    &base,
                    1,
                    "mutation($r: ID!, $t: String!) { sendGroupMessage(roomId: $r, text: $t) { id } }",
                    json!({"r": room, "t": text}),
                )
                .await;
                assert!(answer.get("errors").is_none(), "{answer}");
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    loop {
        let answer = graphql(
            &client,
            &base,
            1,
            "query($r: ID!) { room(id: $r) { messages(first: 1) { totalCount } } }",
            json!({"r": room}),
        )
        .await;
        let stored = answer["data"]["room"]["messages"]["totalCount"]
            .as_u64()
            .unwrap_or(0) as usize;
        if stored >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "filled messages={count} seconds={:.1}",
        started.elapsed().as_secs_f64()
    );
}

fn summary(mut samples: Vec<f64>) -> String {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!(
        "n={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or(0.0)
    )
}

async fn search(base: String, seconds: u64) {
    let queries = [
        ("common word (the)", "the"),
        ("frequent word (pizza)", "pizza"),
        ("two words (pizza tonight)", "pizza tonight"),
        ("prefix (pizz)", "pizz"),
        ("rare word (w4321)", "w4321"),
        ("no match (nothing)", "nothing"),
    ];
    let client = reqwest::Client::new();
    let query = "query($q: String!) { searchMessages(query: $q, first: 20) {
        totalCount edges { snippet node { id text } } } }";
    for (label, text) in queries {
        let warm = graphql(&client, &base, 1, query, json!({"q": text})).await;
        assert!(warm.get("errors").is_none(), "{warm}");
        let total = warm["data"]["searchMessages"]["totalCount"].clone();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut samples = Vec::new();
        while Instant::now() < deadline {
            let started = Instant::now();
            let answer = graphql(&client, &base, 1, query, json!({"q": text})).await;
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
            assert!(answer.get("errors").is_none(), "{answer}");
        }
        println!("search {label}: matches={total} {}", summary(samples));
    }
}

async fn room_events(base: &str, user: i64, room: i64) -> Socket {
    let mut socket = connect(base, user).await;
    let query = "subscription($r: ID!) { roomEvents(roomId: $r) {
        __typename ... on TypingEvent { typing } } }";
    subscribe(&mut socket, query, json!({"r": room})).await;
    socket
}

async fn typing(base: String, room: i64, subscribers: i64, rounds: usize) {
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let (samples_tx, mut samples_rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
    let mut readers = Vec::new();
    for user in 2..(2 + subscribers) {
        let mut socket = room_events(&base, user, room).await;
        let (sent, samples) = (sent.clone(), samples_tx.clone());
        readers.push(tokio::spawn(async move {
            let mut received = 0;
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["payload"]["data"]["roomEvents"]["__typename"] != "TypingEvent" {
                    continue;
                }
                let at = sent.lock().unwrap().get(received).copied();
                if let Some(at) = at {
                    let _ = samples.send(at.elapsed().as_secs_f64() * 1000.0);
                }
                received += 1;
            }
        }));
    }
    drop(samples_tx);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let client = reqwest::Client::new();
    for round in 0..rounds {
        sent.lock().unwrap().push(Instant::now());
        let answer = graphql(
            &client,
            &base,
            1,
            "mutation($r: ID!, $on: Boolean!) { setTyping(roomId: $r, typing: $on) { typing } }",
            json!({"r": room, "on": round % 2 == 0}),
        )
        .await;
        assert!(answer.get("errors").is_none(), "{answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for reader in &readers {
        reader.abort();
    }
    let mut samples = Vec::new();
    while let Ok(sample) = samples_rx.try_recv() {
        samples.push(sample);
    }
    println!(
        "typing fan-out subscribers={subscribers} expected={} {}",
        subscribers as usize * rounds,
        summary(samples)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |n: usize| args.get(n).cloned().unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("fill") => fill(arg(1), arg(2).parse().unwrap(), arg(3).parse().unwrap()).await,
        Some("search") => search(arg(1), arg(2).parse().unwrap()).await,
        Some("typing") => {
            typing(
                arg(1),
                arg(2).parse().unwrap(),
                arg(3).parse().unwrap(),
                arg(4).parse().unwrap(),
            )
            .await
        }
        _ => eprintln!(
            "usage: feature_bench fill URL ROOM COUNT | search URL SECONDS | typing URL ROOM SUBSCRIBERS ROUNDS"
        ),
    }
}
