//! The GraphQL abuse suite: the real binary in a process of its own, and
//! documents written to hurt it. Each one must get a clear 4xx (never a
//! 5xx), leave the process's memory bounded, and leave `/healthz`
//! answering while it is being refused, many at once.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

struct Gateway {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn gateway() -> Gateway {
    gateway_with(&[], Stdio::inherit()).await
}

/// A gateway with extra settings, its log going to `log`.
async fn gateway_with(envs: &[(&str, &str)], log: Stdio) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-gateway"));
    command
        .arg("serve")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("chat.db").display()),
        )
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "error")
        .env_remove("REDIS_URL")
        .env_remove("FAKTORY_URL")
        .stdout(Stdio::null())
        .stderr(log);
    for (key, value) in envs {
        command.env(key, value);
    }
    let child = command.spawn().expect("the gateway starts");
    let gateway = Gateway {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{}/readyz", gateway.base)).send().await
            && response.status().is_success()
        {
            return gateway;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway did not become ready");
}

/// Resident memory of the process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A memory figure of the process's status (`VmRSS:`, `VmHWM:` for the
/// peak), in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// An attack: a name and a raw request body (usually JSON).
struct Attack {
    name: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
}

fn json_attack(name: &'static str, value: Value) -> Attack {
    Attack {
        name,
        body: value.to_string().into_bytes(),
        content_type: "application/json",
    }
}

fn fan_out(levels: usize) -> String {
    let mut doc = String::from("fragment f0 on Query { __typename }\n");
    for level in 1..=levels {
        let previous = level - 1;
        doc.push_str(&format!(
            "fragment f{level} on Query {{ ...f{previous} ...f{previous} }}\n"
        ));
    }
    doc.push_str(&format!("query {{ ...f{levels} }}"));
    doc
}

fn attacks() -> Vec<Attack> {
    let aliases: String = (0..10_000)
        .map(|i| format!("a{i}: viewer {{ id }} "))
        .collect();
    let duplicates: String = (0..20_000).map(|_| "user(id: 1) { username } ").collect();
    let directives: String = (0..2_000).map(|_| "@skip(if: false) ").collect();
    let mut invalid_utf8 = br#"{"query": "{ viewer { id } }", "variables": {"x": ""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    invalid_utf8.extend_from_slice(br#""}}"#);
    vec![
        json_attack(
            "fragment fan-out, 2^30 fields",
            json!({"query": fan_out(30)}),
        ),
        json_attack("fragment fan-out, past 2^64", json!({"query": fan_out(90)})),
        json_attack(
            "10,000 aliases",
            json!({"query": format!("{{ {aliases} }}")}),
        ),
        json_attack(
            "20,000 duplicate fields",
            json!({"query": format!("{{ {duplicates} }}")}),
        ),
        json_attack(
            "deep brackets",
            json!({"query": format!("{}{}", "{ viewer ".repeat(3_000), "}".repeat(3_000))}),
        ),
        json_attack(
            "deep lists in an argument",
            json!({"query": format!("{{ users(filter: {{username: {}\"x\"{}}}) {{ totalCount }} }}",
                "[".repeat(3_000), "]".repeat(3_000))}),
        ),
        json_attack(
            "token flood",
            json!({"query": format!("{{ {} }}", "a ".repeat(400_000))}),
        ),
        json_attack(
            "directive flood",
            json!({"query": format!("{{ viewer {directives} {{ id }} }}")}),
        ),
        json_attack(
            "fragment cycle",
            json!({"query": "{ ...a } fragment a on Query { ...b } fragment b on Query { ...a }"}),
        ),
        json_attack(
            "huge list variable",
            json!({
                "query": "mutation($m: [String!]!) { createRoom(name: \"x\", memberUsernames: $m) { id } }",
                "variables": {"m": vec!["user_1"; 60_000]},
            }),
        ),
        json_attack(
            "huge string variable",
            json!({
                "query": "query($u: String) { users(filter: {username: $u}) { totalCount } }",
                "variables": {"u": "x".repeat(900_000)},
            }),
        ),
        json_attack(
            "deeply nested variables",
            json!({
                "query": "query($u: String) { users(filter: {username: $u}) { totalCount } }",
                "variables": serde_json::from_str::<Value>(
                    &format!("{{\"u\": {}1{}}}", "[".repeat(100), "]".repeat(100))
                ).unwrap(),
            }),
        ),
        Attack {
            name: "invalid UTF-8",
            body: invalid_utf8,
            content_type: "application/json",
        },
        json_attack(
            "NUL in a variable",
            json!({
                "query": "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
                "variables": {"u": "user_1\u{0}", "p": "x"},
            }),
        ),
        json_attack(
            "bogus cursors",
            json!({"query": "{ users(after: \"!!not-a-cursor!!\") { totalCount } }"}),
        ),
        json_attack(
            "a cursor of another shape",
            json!({"query": "{ users(after: \"aWQ6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5\") { totalCount } }"}),
        ),
        json_attack(
            "negative first",
            json!({"query": "{ users(first: -1) { totalCount } }"}),
        ),
        json_attack(
            "overflowing first",
            json!({"query": "{ users(first: 99999999999) { totalCount } }"}),
        ),
        json_attack(
            "first past the page size",
            json!({"query": "{ users(first: 100000) { totalCount } }"}),
        ),
        json_attack(
            "nested introspection lists",
            json!({"query": "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"}),
        ),
        json_attack(
            "a batch past its size",
            Value::Array(vec![json!({"query": "{ viewer { id } }"}); 21]),
        ),
        json_attack(
            "a batch of fan-outs",
            Value::Array(vec![json!({"query": fan_out(30)}); 20]),
        ),
        Attack {
            name: "a body past the limit",
            body: vec![b' '; 2 * 1024 * 1024],
            content_type: "application/json",
        },
    ]
}

/// Every attack is refused with a 4xx (a batch answers 200 with an error
/// per operation), `/healthz` answers meanwhile, memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_documents_are_refused_cleanly() {
    let gateway = gateway().await;
    let pid = gateway.child.id();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let graphql = format!("{}/graphql", gateway.base);
    let health = format!("{}/healthz", gateway.base);
    let baseline = rss_kib(pid);
    for attack in attacks() {
        // Sixteen at once, and the probe in the middle of them.
        let mut requests = Vec::new();
        for _ in 0..16 {
            let request = client
                .post(&graphql)
                .header("content-type", attack.content_type)
                .header("x-user-id", "1")
                .body(attack.body.clone())
                .send();
            requests.push(tokio::spawn(async move {
                let response = request.await?;
                let status = response.status().as_u16();
                let body = response.text().await?;
                Ok::<_, reqwest::Error>((status, body))
            }));
        }
        let probe = Instant::now();
        let alive = client
            .get(&health)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        assert!(
            alive.is_ok_and(|r| r.status().is_success()),
            "{}: /healthz did not answer ({:?})",
            attack.name,
            probe.elapsed()
        );
        for request in requests {
            let (status, body) = request
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: no answer: {e}", attack.name));
            assert!(status < 500, "{}: {status} {body}", attack.name);
            if status == 200 {
                // A GraphQL error answer (a field's bad argument, or every
                // member of a batch): errors, and no data.
                let answer: Value = serde_json::from_str(&body).unwrap();
                let members = match answer {
                    Value::Array(members) => members,
                    single => vec![single],
                };
                assert!(
                    members.iter().all(|m| m["errors"].is_array()
                        && m.get("data").is_none_or(|d| d.is_null()
                            || d.as_object()
                                .is_some_and(|fields| fields.values().all(Value::is_null)))),
                    "{}: {body}",
                    attack.name
                );
            } else {
                assert!((400..500).contains(&status), "{}: {status}", attack.name);
            }
        }
        let grown = rss_kib(pid).saturating_sub(baseline);
        assert!(
            grown < 100 * 1024,
            "{}: RSS grew by {} MiB",
            attack.name,
            grown / 1024
        );
    }
    // Still serving the ordinary work.
    let answer: Value = client
        .post(&graphql)
        .header("x-user-id", "1")
        .json(&json!({"query": "{ viewer { username } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["data"]["viewer"]["username"], "user_1");
}

/// A hundred sign-ups at once, from nobody: password hashing runs a few at
/// a time, so memory stays bounded (each hash takes about 19 MiB); those
/// past the queue are refused with RATE_LIMITED at once, never a 500; and
/// the service answers meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_up_flood_stays_bounded() {
    let gateway = gateway().await;
    let pid = gateway.child.id();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let graphql = format!("{}/graphql", gateway.base);
    let peak_before = status_kib(pid, "VmHWM:");
    let mut requests = Vec::new();
    for n in 0..100 {
        let request = client.post(&graphql).json(&json!({
            "query": "mutation($u: String!) { createUser(input: {username: $u, password: \"S3cret-pass!\"}) { id } }",
            "variables": {"u": format!("flood_{n}")},
        }));
        requests.push(tokio::spawn(async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            Ok::<_, reqwest::Error>((status, response.json::<Value>().await?))
        }));
    }
    let alive = client
        .get(format!("{}/healthz", gateway.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(alive.is_ok_and(|r| r.status().is_success()));
    let (mut created, mut refused) = (0, 0);
    for request in requests {
        let (status, body) = request.await.unwrap().unwrap();
        match body["errors"][0]["extensions"]["code"].as_str() {
            None => {
                assert_eq!(status, 200, "{body}");
                created += 1;
            }
            Some("RATE_LIMITED") => {
                assert_eq!(status, 429, "{body}");
                assert!(body["errors"][0]["extensions"]["retryAfter"].as_u64() >= Some(1));
                refused += 1;
            }
            Some(other) => panic!("{other}: {body}"),
        }
    }
    assert_eq!(created + refused, 100);
    assert!(created > 0);
    let grown = status_kib(pid, "VmHWM:").saturating_sub(peak_before);
    assert!(
        grown < 200 * 1024,
        "peak RSS grew by {} MiB for 100 sign-ups",
        grown / 1024
    );
}

/// A long message with wide white space before the searched word: the
/// search answers, and nothing of the message reaches the log, not even
/// from a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_over_wide_white_space_answers_and_logs_no_text() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let gateway = gateway_with(
        &[("RUST_LOG", "info"), ("NO_COLOR", "1")],
        Stdio::from(log.reopen().unwrap()),
    )
    .await;
    let client = reqwest::Client::new();
    let graphql = format!("{}/graphql", gateway.base);
    let ask = |query: &str, variables: Value| {
        client
            .post(&graphql)
            .header("x-user-id", "1")
            .json(&json!({"query": query, "variables": variables}))
            .send()
    };
    let created: Value = ask(
        "mutation { createRoom(name: \"fr\", memberUsernames: []) { id } }",
        json!({}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let room = created["data"]["createRoom"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = format!("{}nbsptarget", "secretword\u{a0}".repeat(20));
    let task: Value = ask(
        "mutation($r: ID!, $t: String!) { sendGroupMessage(roomId: $r, text: $t) { id } }",
        json!({"r": room, "t": text}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let task = task["data"]["sendGroupMessage"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state: Value = ask(
            "query($id: ID!) { task(id: $id) { state } }",
            json!({"id": task}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if state["data"]["task"]["state"] == "SUCCESS" {
            break;
        }
        assert!(Instant::now() < deadline, "{state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = ask(
        "{ searchMessages(query: \"nbsptarget\") { edges { snippet } } }",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    let snippet = answer["data"]["searchMessages"]["edges"][0]["snippet"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(snippet.ends_with("<mark>nbsptarget</mark>"), "{snippet}");
    drop(gateway);
    let logged = std::fs::read_to_string(log.path()).unwrap();
    assert!(!logged.contains("panicked"), "{logged}");
    assert!(!logged.contains("secretword"), "{logged}");
}
