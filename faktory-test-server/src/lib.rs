//! A small in-process Faktory server for integration tests.
//!
//! Implements the public Faktory Work Protocol (protocol version 2) closely
//! enough for the `faktory` crate (0.13.x) to be used unmodified as producer
//! (`faktory::Client`) and consumer (`faktory::Worker`):
//!
//! * RESP framing; `+HI {"v":2}` or, with a password,
//!   `+HI {"v":2,"i":<iterations>,"s":"<salt>"}`; the `HELLO` must then carry
//!   `pwdhash = hex(sha256^i(password ++ salt))`, otherwise the server answers
//!   `-ERR Invalid password` and closes the connection (as the real server does).
//! * `PUSH`, `PUSHB`, `FETCH` (blocks up to [`ServerConfig::fetch_timeout`],
//!   2 s by default, then `$-1`), `ACK`, `FAIL`, `BEAT`, `INFO`, `FLUSH`,
//!   `QUEUE PAUSE|RESUME|REMOVE`, `MUTATE` (only `clear`), `END`.
//!   Anything else gets `-ERR Unknown command <VERB>`; malformed payloads get
//!   `-ERR ...` and the connection stays usable.
//!
//! Semantics follow the real server (contribsys/faktory, `manager/retry.go`,
//! `manager/working.go`), with test-friendly timings:
//!
//! * A fetched job is *reserved* for its `reserve_for` seconds (default 1800
//!   when absent or 0). The real server clamps that to at least 60 s; this one
//!   honours small values such as `1` so tests are fast.
//! * ACK/FAIL only clear a reservation when they come from the same worker id
//!   (`wid` of the HELLO) that fetched the job, like the real server. An ACK for
//!   an unknown/foreign job still answers `+OK`; a FAIL for one answers
//!   `-ERR Job not found <jid>` (which makes a faktory-rs worker's `run` fail!).
//! * FAIL: the job gets a `failure` object (`retry_count`, `remaining`,
//!   `failed_at`, `next_at`, `message`, `errtype`, `backtrace`). `retry`
//!   (default 25 when absent) decides: `0` -> discarded, `< 0` -> dead set,
//!   `failure.retry_count < retry` -> re-enqueued (at the back of its queue)
//!   after `retry_backoff * (retry_count + 1)` (200 ms by default instead of
//!   the real 15 s + count^4 ...), otherwise -> dead set.
//! * An expired reservation is, like in the real server, processed as a
//!   failure with errtype `ReservationExpired` (so it goes through the retry
//!   logic above). Set [`ServerConfig::expiry_mode`] to
//!   [`ExpiryMode::RequeueFront`] to instead put the unchanged job back at the
//!   *front* of its queue.
//! * A connection that drops does NOT give its reserved jobs back (real
//!   semantics); only the reservation timeout (or the helpers
//!   [`FaktoryServer::redeliver_unacked_now`] /
//!   [`FaktoryServer::expire_reservations_now`]) re-deliver them.
//! * Deviation (for determinism): while a `FETCH` is blocked, the server keeps
//!   watching the socket; if the client closes the connection (or sends
//!   anything, e.g. the `END` that faktory-rs writes when a `Client` is
//!   dropped) the FETCH is abandoned *without* reserving a job, so no job is
//!   handed to a dead connection.
//! * Jobs with an `at` in the future are held in a scheduled set and enqueued
//!   when due.
//!
//! Lifecycle: [`FaktoryServer::stop`] closes the listener and every
//! connection (clients see EOF / connection reset, as if the server crashed).
//! [`FaktoryServer::restart`] re-listens on the SAME port and KEEPS the
//! in-memory data (queues, reservations, retries, history), like a real
//! Faktory whose Redis survived. [`FaktoryServer::start_on`] starts a brand
//! new server (empty state) on a given port, e.g. after `stop()` of another
//! instance. Dropping a `FaktoryServer` stops it (tasks are aborted).
//!
//! All constructors must be called from within a tokio runtime. Note that
//! faktory-rs' `Client` writes `END` from its `Drop` impl via
//! `tokio::task::block_in_place`, so tests using the real crate need
//! `#[tokio::test(flavor = "multi_thread")]`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Longest command line accepted (a PUSHB of many jobs can be large).
const MAX_LINE: u64 = 64 * 1024 * 1024;
/// Real Faktory's `RetryPolicyDefault`.
const DEFAULT_RETRY: i64 = 25;

/// What happens to a job whose reservation (`reserve_for`) runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryMode {
    /// Real Faktory: processed as a FAIL with errtype `ReservationExpired`
    /// (retry logic applies: retried after the backoff, or dead/discarded).
    Fail,
    /// Put the job back, unchanged, at the front of its queue immediately.
    RequeueFront,
}

/// Worker state reported back on `BEAT` (see [`FaktoryServer::set_worker_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// `BEAT` -> `+OK`.
    Running,
    /// `BEAT` -> `{"state":"quiet"}`; FETCH from that worker returns nothing.
    Quiet,
    /// `BEAT` -> `{"state":"terminate"}`; FETCH from that worker returns nothing.
    Terminate,
}

/// Server configuration; `ServerConfig::default()` mirrors the real server
/// except for the short retry backoff.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Port on 127.0.0.1; `0` picks a free one.
    pub port: u16,
    /// Require this password (HELLO must carry the right `pwdhash`).
    pub password: Option<String>,
    /// How long an empty `FETCH` blocks before answering `$-1` (real: 2 s).
    pub fetch_timeout: Duration,
    /// Retry delay is `retry_backoff * (failure.retry_count + 1)`.
    pub retry_backoff: Duration,
    /// Reservation used when a job has no (or a zero) `reserve_for` (real: 1800 s).
    pub default_reserve_for: Duration,
    /// What an expired reservation does.
    pub expiry_mode: ExpiryMode,
    /// Period of the background task that handles due retries, scheduled
    /// jobs and expired reservations.
    pub tick: Duration,
    /// Password hash iterations announced in `HI`; `None` = random in
    /// 4000..8096 like the real server.
    pub hash_iterations: Option<usize>,
    /// The client must send `HELLO` within this time.
    pub handshake_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: 0,
            password: None,
            fetch_timeout: Duration::from_secs(2),
            retry_backoff: Duration::from_millis(200),
            default_reserve_for: Duration::from_secs(1800),
            expiry_mode: ExpiryMode::Fail,
            tick: Duration::from_millis(50),
            hash_iterations: None,
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

struct Reservation {
    job: Value,
    wid: Option<String>,
    deadline: Instant,
}

#[derive(Default)]
struct State {
    queues: BTreeMap<String, VecDeque<Value>>,
    paused: HashSet<String>,
    reserved: HashMap<String, Reservation>,
    retries: Vec<(Instant, Value)>,
    scheduled: Vec<(Instant, Value)>,
    dead: Vec<Value>,
    workers: HashMap<String, WorkerState>,
    // history, for assertions
    pushed: Vec<Value>,
    fetched: Vec<String>,
    acked: Vec<String>,
    failed: Vec<(String, Value)>,
    expired: Vec<String>,
    hellos: Vec<Value>,
    // stats
    total_processed: u64,
    total_failures: u64,
    command_count: u64,
}

struct Shared {
    cfg: ServerConfig,
    state: Mutex<State>,
    notify: Notify,
    connections: AtomicU64,
    started: std::time::Instant,
    conns: Mutex<Vec<JoinHandle<()>>>,
}

/// Handle to a running test server. Not `Clone`; wrap it in an `Arc` to
/// share it. Dropping it shuts the server down.
pub struct FaktoryServer {
    shared: Arc<Shared>,
    port: u16,
    acceptor: Mutex<Option<JoinHandle<()>>>,
    reaper: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_str() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// hex(sha256^iterations(password ++ salt)), exactly as Faktory and faktory-rs do.
pub fn password_hash(password: &str, salt: &str, iterations: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(password.as_bytes());
    hasher.update(salt.as_bytes());
    let mut digest = hasher.finalize();
    for _ in 1..iterations.max(1) {
        digest = Sha256::digest(&digest[..]);
    }
    hex(&digest[..])
}

async fn bind(port: u16) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return l,
            // after stop() the old socket may take a moment to go away
            Err(_) if port != 0 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(25)).await
            }
            Err(e) => panic!("faktory test server: cannot bind 127.0.0.1:{port}: {e}"),
        }
    }
}

impl FaktoryServer {
    /// Start on 127.0.0.1 with a free port.
    pub async fn start(password: Option<&str>) -> FaktoryServer {
        Self::start_with(ServerConfig {
            password: password.map(str::to_owned),
            ..ServerConfig::default()
        })
        .await
    }

    /// Start a new server (fresh, empty state) on a specific port, e.g. the
    /// port of a server that was `stop()`ped. Retries binding for up to 5 s.
    pub async fn start_on(port: u16, password: Option<&str>) -> FaktoryServer {
        Self::start_with(ServerConfig {
            port,
            password: password.map(str::to_owned),
            ..ServerConfig::default()
        })
        .await
    }

    /// Start with a full configuration.
    pub async fn start_with(cfg: ServerConfig) -> FaktoryServer {
        let listener = bind(cfg.port).await;
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            cfg,
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            connections: AtomicU64::new(0),
            started: std::time::Instant::now(),
            conns: Mutex::new(Vec::new()),
        });
        let srv = FaktoryServer {
            shared,
            port,
            acceptor: Mutex::new(None),
            reaper: Mutex::new(None),
        };
        srv.spawn_tasks(listener);
        srv
    }

    fn spawn_tasks(&self, listener: TcpListener) {
        let acc = tokio::spawn(accept_loop(self.shared.clone(), listener));
        let reap = tokio::spawn(reaper_loop(self.shared.clone()));
        *lock(&self.acceptor) = Some(acc);
        *lock(&self.reaper) = Some(reap);
    }

    /// Close the listener and every open connection (clients see EOF/reset).
    /// When this returns the port is free and all sockets are closed.
    /// In-memory data is kept (see [`FaktoryServer::restart`]).
    pub async fn stop(&self) {
        let acc = lock(&self.acceptor).take();
        if let Some(h) = acc {
            h.abort();
            let _ = h.await;
        }
        let reap = lock(&self.reaper).take();
        if let Some(h) = reap {
            h.abort();
            let _ = h.await;
        }
        let conns: Vec<_> = lock(&self.shared.conns).drain(..).collect();
        for h in &conns {
            h.abort();
        }
        for h in conns {
            let _ = h.await;
        }
    }

    /// Alias of [`FaktoryServer::stop`].
    pub async fn shutdown(&self) {
        self.stop().await
    }

    /// Listen again on the SAME port (after [`FaktoryServer::stop`]; stops
    /// first if still running). Keeps queues, reservations, retries, dead
    /// jobs and history, like a real Faktory restarted on a persistent Redis.
    pub async fn restart(&self) {
        self.stop().await;
        let listener = bind(self.port).await;
        self.spawn_tasks(listener);
    }

    /// Whether the server is currently accepting connections.
    pub fn is_running(&self) -> bool {
        lock(&self.acceptor).is_some()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `tcp://:password@127.0.0.1:PORT` or `tcp://127.0.0.1:PORT`.
    /// (faktory-rs sends the password as it appears in the URL, i.e. still
    /// percent-encoded, so use URL-safe passwords.)
    pub fn url(&self) -> String {
        match &self.shared.cfg.password {
            Some(p) => self.url_with_password(p),
            None => format!("tcp://127.0.0.1:{}", self.port),
        }
    }

    /// URL with an arbitrary (e.g. wrong) password.
    pub fn url_with_password(&self, password: &str) -> String {
        format!("tcp://:{}@127.0.0.1:{}", password, self.port)
    }

    // ------------------------------------------------------------------
    // inspection helpers

    fn st(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// Every job ever accepted by PUSH/PUSHB (or [`FaktoryServer::enqueue`]), in order,
    /// as stored (with `enqueued_at`/`retry` filled in).
    pub fn pushed(&self) -> Vec<Value> {
        self.st().pushed.clone()
    }

    /// jids handed out by FETCH, in order (a re-delivered job appears again).
    pub fn fetched(&self) -> Vec<String> {
        self.st().fetched.clone()
    }

    /// jids of every ACK received, in order (also ACKs that matched no reservation).
    pub fn acked(&self) -> Vec<String> {
        self.st().acked.clone()
    }

    /// Every FAIL received: (jid, FAIL payload as sent by the client).
    pub fn failed(&self) -> Vec<(String, Value)> {
        self.st().failed.clone()
    }

    /// jids whose reservation expired (or were force-expired/re-delivered).
    pub fn expired(&self) -> Vec<String> {
        self.st().expired.clone()
    }

    /// Jobs in the dead set (retries exhausted or `retry < 0`).
    pub fn dead(&self) -> Vec<Value> {
        self.st().dead.clone()
    }

    /// HELLO payloads received (successful handshakes only), in order.
    pub fn hellos(&self) -> Vec<Value> {
        self.st().hellos.clone()
    }

    /// Worker ids (`wid` from HELLO) seen so far.
    pub fn worker_ids(&self) -> Vec<String> {
        self.st().workers.keys().cloned().collect()
    }

    /// Number of jobs waiting in `queue`.
    pub fn queue_len(&self, queue: &str) -> usize {
        self.st().queues.get(queue).map_or(0, VecDeque::len)
    }

    /// Jobs waiting in `queue`, front first.
    pub fn queue_jobs(&self, queue: &str) -> Vec<Value> {
        self.st()
            .queues
            .get(queue)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// jids currently reserved (fetched, not yet ACKed/FAILed/expired).
    pub fn reserved(&self) -> Vec<String> {
        self.st().reserved.keys().cloned().collect()
    }

    /// Jobs waiting for a retry.
    pub fn retries(&self) -> Vec<Value> {
        self.st().retries.iter().map(|(_, j)| j.clone()).collect()
    }

    /// Jobs scheduled for later (`at` in the future).
    pub fn scheduled(&self) -> Vec<Value> {
        self.st().scheduled.iter().map(|(_, j)| j.clone()).collect()
    }

    /// Currently open connections (after a successful or pending handshake).
    pub fn connection_count(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The same JSON document `INFO` returns.
    pub fn info(&self) -> Value {
        info_value(&self.shared)
    }

    /// Enqueue a job directly (same validation/defaults as PUSH).
    pub fn enqueue(&self, job: Value) -> Result<(), String> {
        let r = push_job(&self.shared, &mut self.st(), job);
        self.shared.notify.notify_waiters();
        r
    }

    /// Put every reserved (fetched but not ACKed/FAILed) job back at the
    /// front of its queue right now, unchanged, so it gets delivered again.
    /// Returns how many jobs were re-delivered. A later ACK/FAIL from the
    /// original worker behaves as for an expired reservation.
    pub fn redeliver_unacked_now(&self) -> usize {
        let n = {
            let mut st = self.st();
            let jids: Vec<String> = st.reserved.keys().cloned().collect();
            for jid in &jids {
                expire_one(&self.shared, &mut st, jid, ExpiryMode::RequeueFront);
            }
            jids.len()
        };
        self.shared.notify.notify_waiters();
        n
    }

    /// Treat every current reservation as expired now, using the configured
    /// [`ExpiryMode`] (default: as a `ReservationExpired` failure, i.e.
    /// retried after the backoff unless `retry` is exhausted/0).
    pub fn expire_reservations_now(&self) -> usize {
        let n = {
            let mut st = self.st();
            let jids: Vec<String> = st.reserved.keys().cloned().collect();
            for jid in &jids {
                expire_one(&self.shared, &mut st, jid, self.shared.cfg.expiry_mode);
            }
            jids.len()
        };
        self.shared.notify.notify_waiters();
        n
    }

    /// Make all due retries/scheduled jobs available now (ignores the backoff).
    pub fn run_retries_now(&self) {
        {
            let mut st = self.st();
            let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
            move_due(&mut st, far);
        }
        self.shared.notify.notify_waiters();
    }

    /// What `BEAT` from worker `wid` answers from now on.
    pub fn set_worker_state(&self, wid: &str, state: WorkerState) {
        self.st().workers.insert(wid.to_owned(), state);
    }

    /// Set the state of every worker seen so far.
    pub fn signal_all_workers(&self, state: WorkerState) {
        for s in self.st().workers.values_mut() {
            *s = state;
        }
    }

    /// Remove all jobs (queues, reservations, retries, scheduled, dead) and
    /// stats, like the `FLUSH` command. The history lists are kept.
    pub fn flush(&self) {
        flush_state(&mut self.st());
    }

    /// Clear the history lists (`pushed`, `fetched`, `acked`, `failed`, `expired`, `hellos`).
    pub fn clear_history(&self) {
        let mut st = self.st();
        st.pushed.clear();
        st.fetched.clear();
        st.acked.clear();
        st.failed.clear();
        st.expired.clear();
        st.hellos.clear();
    }

    /// Poll `cond` every 20 ms until it is true or `timeout` passes.
    pub async fn wait_until<F>(&self, timeout: Duration, mut cond: F) -> bool
    where
        F: FnMut(&FaktoryServer) -> bool,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FaktoryServer {
    fn drop(&mut self) {
        if let Some(h) = lock(&self.acceptor).take() {
            h.abort();
        }
        if let Some(h) = lock(&self.reaper).take() {
            h.abort();
        }
        for h in lock(&self.shared.conns).drain(..) {
            h.abort();
        }
    }
}

// ----------------------------------------------------------------------
// background tasks

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let _ = sock.set_nodelay(true);
                let h = tokio::spawn(handle_conn(shared.clone(), sock));
                let mut conns = lock(&shared.conns);
                conns.retain(|h| !h.is_finished());
                conns.push(h);
            }
            // e.g. too many open files: back off, keep serving
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn reaper_loop(shared: Arc<Shared>) {
    let mut iv = tokio::time::interval(shared.cfg.tick);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        iv.tick().await;
        let woke = {
            let mut st = lock(&shared.state);
            let now = Instant::now();
            let mut woke = move_due(&mut st, now);
            let expired: Vec<String> = st
                .reserved
                .iter()
                .filter(|(_, r)| r.deadline <= now)
                .map(|(jid, _)| jid.clone())
                .collect();
            for jid in &expired {
                expire_one(&shared, &mut st, jid, shared.cfg.expiry_mode);
                woke = true;
            }
            woke
        };
        if woke {
            shared.notify.notify_waiters();
        }
    }
}

/// Move due retries / scheduled jobs onto their queues. Returns whether any moved.
fn move_due(st: &mut State, now: Instant) -> bool {
    let mut due = Vec::new();
    for set in [&mut st.retries, &mut st.scheduled] {
        let mut i = 0;
        while i < set.len() {
            if set[i].0 <= now {
                due.push(set.remove(i));
            } else {
                i += 1;
            }
        }
    }
    due.sort_by_key(|(t, _)| *t);
    let any = !due.is_empty();
    for (_, mut job) in due {
        if let Some(o) = job.as_object_mut() {
            o.insert("enqueued_at".into(), Value::String(now_str()));
        }
        let q = queue_of(&job);
        st.queues.entry(q).or_default().push_back(job);
    }
    any
}

fn expire_one(shared: &Shared, st: &mut State, jid: &str, mode: ExpiryMode) {
    let Some(res) = st.reserved.remove(jid) else {
        return;
    };
    st.expired.push(jid.to_owned());
    match mode {
        ExpiryMode::RequeueFront => {
            let q = queue_of(&res.job);
            st.queues.entry(q).or_default().push_front(res.job);
        }
        ExpiryMode::Fail => process_failure(
            shared,
            st,
            res.job,
            "ReservationExpired",
            "Faktory job reservation expired",
            Vec::new(),
        ),
    }
}

fn queue_of(job: &Value) -> String {
    match job.get("queue").and_then(Value::as_str) {
        Some(q) if !q.is_empty() => q.to_owned(),
        _ => "default".to_owned(),
    }
}

fn flush_state(st: &mut State) {
    st.queues.clear();
    st.paused.clear();
    st.reserved.clear();
    st.retries.clear();
    st.scheduled.clear();
    st.dead.clear();
    st.total_processed = 0;
    st.total_failures = 0;
}

/// Real Faktory's `processFailure` + retry/morgue decision.
fn process_failure(
    shared: &Shared,
    st: &mut State,
    mut job: Value,
    errtype: &str,
    message: &str,
    backtrace: Vec<String>,
) {
    st.total_failures += 1;
    let errtype = match errtype.trim() {
        "" => "unknown".to_owned(),
        t => t.chars().take(100).collect(),
    };
    let message = match message.trim() {
        "" => "unknown".to_owned(),
        m => m.chars().take(1000).collect(),
    };
    let backtrace: Vec<Value> = backtrace.into_iter().take(50).map(Value::String).collect();

    let retry = job
        .get("retry")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_RETRY);
    let Some(obj) = job.as_object_mut() else {
        return;
    };
    let retry_count = match obj.get_mut("failure") {
        Some(Value::Object(f)) => {
            let count = f.get("retry_count").and_then(Value::as_i64).unwrap_or(0) + 1;
            let remaining = f.get("remaining").and_then(Value::as_i64).unwrap_or(0);
            f.insert("retry_count".into(), json!(count));
            f.insert("remaining".into(), json!((remaining - 1).max(0)));
            f.insert("message".into(), json!(message));
            f.insert("errtype".into(), json!(errtype));
            f.insert("backtrace".into(), Value::Array(backtrace));
            count
        }
        _ => {
            let mut f = Map::new();
            f.insert("retry_count".into(), json!(0));
            f.insert("remaining".into(), json!(retry));
            f.insert("failed_at".into(), json!(now_str()));
            f.insert("message".into(), json!(message));
            f.insert("errtype".into(), json!(errtype));
            f.insert("backtrace".into(), Value::Array(backtrace));
            obj.insert("failure".into(), Value::Object(f));
            0
        }
    };

    if retry == 0 {
        // no retry, no death, completely ephemeral, goodbye
        return;
    }
    if retry > 0 && retry_count < retry {
        let delay = shared.cfg.retry_backoff * (retry_count as u32 + 1);
        let next_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        if let Some(Value::Object(f)) = obj.get_mut("failure") {
            f.insert(
                "next_at".into(),
                json!(next_at.to_rfc3339_opts(SecondsFormat::Micros, true)),
            );
        }
        st.retries.push((Instant::now() + delay, job));
    } else {
        if let Some(Value::Object(f)) = obj.get_mut("failure") {
            f.remove("next_at");
        }
        st.dead.push(job);
    }
}

/// Validate + store one job (PUSH semantics). Caller notifies waiters.
fn push_job(shared: &Shared, st: &mut State, mut job: Value) -> Result<(), String> {
    let _ = shared;
    let Some(obj) = job.as_object_mut() else {
        return Err("invalid JSON: job must be an object".into());
    };
    let jid_ok = obj
        .get("jid")
        .and_then(Value::as_str)
        .is_some_and(|j| j.len() >= 8);
    if !jid_ok {
        return Err("jobs must have a reasonable jid parameter".into());
    }
    if obj
        .get("jobtype")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("jobs must have a jobtype parameter".into());
    }
    if !obj.get("args").is_some_and(Value::is_array) {
        return Err("jobs must have an args parameter".into());
    }
    match obj.get("queue") {
        Some(Value::String(q)) if !q.is_empty() => {}
        _ => {
            obj.insert("queue".into(), json!("default"));
        }
    }
    if obj.get("retry").is_none_or(Value::is_null) {
        obj.insert("retry".into(), json!(DEFAULT_RETRY));
    }
    if obj
        .get("created_at")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        obj.insert("created_at".into(), json!(now_str()));
    }
    let mut at_due: Option<Instant> = None;
    if let Some(at) = obj
        .get("at")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let t = DateTime::parse_from_rfc3339(at)
            .map_err(|_| format!("Invalid timestamp for 'at': '{at}'"))?
            .with_timezone(&Utc);
        let now = Utc::now();
        if t > now {
            at_due = Some(Instant::now() + (t - now).to_std().unwrap_or_default());
        }
    }
    st.pushed.push(job.clone());
    match at_due {
        Some(due) => st.scheduled.push((due, job)),
        None => {
            if let Some(o) = job.as_object_mut() {
                o.insert("enqueued_at".into(), json!(now_str()));
            }
            let q = queue_of(&job);
            st.queues.entry(q).or_default().push_back(job);
        }
    }
    Ok(())
}

fn info_value(shared: &Shared) -> Value {
    let st = lock(&shared.state);
    let queues: Map<String, Value> = st
        .queues
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.len())))
        .collect();
    let total_enqueued: usize = st.queues.values().map(VecDeque::len).sum();
    let now = Utc::now();
    json!({
        "now": now.to_rfc3339_opts(SecondsFormat::Micros, true),
        "server_utc_time": now.format("%H:%M:%S UTC").to_string(),
        "faktory": {
            "total_failures": st.total_failures,
            "total_processed": st.total_processed,
            "total_enqueued": total_enqueued,
            "total_queues": st.queues.len(),
            "queues": queues,
            "tasks": {},
        },
        "server": {
            "description": "Faktory (test server)",
            "faktory_version": "1.9.0",
            "uptime": shared.started.elapsed().as_secs(),
            "connections": shared.connections.load(Ordering::SeqCst),
            "command_count": st.command_count,
            "used_memory_mb": 1,
        },
    })
}

// ----------------------------------------------------------------------
// connections

struct ConnGuard(Arc<Shared>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Conn {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    wid: Option<String>,
}

enum Outcome {
    Reply(Vec<u8>),
    Close,
}

fn ok() -> Vec<u8> {
    b"+OK\r\n".to_vec()
}

fn null() -> Vec<u8> {
    b"$-1\r\n".to_vec()
}

fn bulk(data: &[u8]) -> Vec<u8> {
    let mut v = format!("${}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

fn err(msg: &str) -> Vec<u8> {
    let clean: String = msg
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    format!("-ERR {clean}\r\n").into_bytes()
}

/// Read one line without its trailing `\r\n`. `Ok(None)` on EOF.
async fn read_line(rd: &mut BufReader<OwnedReadHalf>) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let n = (&mut *rd)
        .take(MAX_LINE)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        if n as u64 >= MAX_LINE {
            return Err(std::io::Error::other("line too long"));
        }
        return Ok(None); // EOF in the middle of a line
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(buf))
}

/// Answer `msg`, then close gracefully (drain what the client still sends so
/// the close does not turn into a RST that would break the client's Drop).
async fn reject(mut rd: BufReader<OwnedReadHalf>, mut wr: OwnedWriteHalf, msg: Vec<u8>) {
    let _ = wr.write_all(&msg).await;
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut sink = [0u8; 1024];
        while let Ok(n) = rd.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

async fn handle_conn(shared: Arc<Shared>, sock: TcpStream) {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let _guard = ConnGuard(shared.clone());
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);

    // --- handshake
    let (hi, salt, iterations) = match &shared.cfg.password {
        None => ("+HI {\"v\":2}\r\n".to_owned(), String::new(), 1),
        Some(_) => {
            let (iters, salt) = {
                let mut rng = rand::rng();
                let iters = shared
                    .cfg
                    .hash_iterations
                    .unwrap_or_else(|| rng.random_range(4000..8096));
                (iters, format!("{:x}", rng.random::<u64>() >> 1))
            };
            (
                format!("+HI {{\"v\":2,\"i\":{iters},\"s\":\"{salt}\"}}\r\n"),
                salt,
                iters,
            )
        }
    };
    if wr.write_all(hi.as_bytes()).await.is_err() {
        return;
    }
    let line = match tokio::time::timeout(shared.cfg.handshake_timeout, read_line(&mut rd)).await {
        Ok(Ok(Some(l))) => l,
        _ => return,
    };
    let line = String::from_utf8_lossy(&line).into_owned();
    let Some(payload) = line.strip_prefix("HELLO ") else {
        return reject(rd, wr, err("Need a valid HELLO")).await;
    };
    let hello: Value = match serde_json::from_str(payload) {
        Ok(v @ Value::Object(_)) => v,
        _ => return reject(rd, wr, err("Invalid client data in HELLO")).await,
    };
    if let Some(pwd) = &shared.cfg.password {
        let expected = password_hash(pwd, &salt, iterations);
        if hello.get("pwdhash").and_then(Value::as_str) != Some(expected.as_str()) {
            return reject(rd, wr, err("Invalid password")).await;
        }
    }
    let wid = hello
        .get("wid")
        .and_then(Value::as_str)
        .filter(|w| !w.is_empty())
        .map(str::to_owned);
    {
        let mut st = lock(&shared.state);
        st.hellos.push(hello);
        if let Some(w) = &wid {
            st.workers.entry(w.clone()).or_insert(WorkerState::Running);
        }
    }
    if wr.write_all(&ok()).await.is_err() {
        return;
    }

    // --- command loop
    let mut conn = Conn { rd, wr, wid };
    loop {
        let line = match read_line(&mut conn.rd).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                let _ = conn.wr.write_all(&err(&e.to_string())).await;
                return;
            }
        };
        let outcome = match String::from_utf8(line) {
            Ok(line) => dispatch(&shared, &mut conn, &line).await,
            Err(_) => Outcome::Reply(err("invalid UTF-8 in command")),
        };
        match outcome {
            Outcome::Reply(r) => {
                if conn.wr.write_all(&r).await.is_err() {
                    return;
                }
            }
            Outcome::Close => return,
        }
    }
}

fn parse_obj(data: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(data.trim()) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

async fn dispatch(shared: &Arc<Shared>, conn: &mut Conn, line: &str) -> Outcome {
    let (verb, rest) = match line.split_once(' ') {
        Some((v, r)) => (v, r),
        None => (line, ""),
    };
    const KNOWN: &[&str] = &[
        "END", "PUSH", "PUSHB", "FETCH", "ACK", "FAIL", "BEAT", "INFO", "FLUSH", "QUEUE", "MUTATE",
    ];
    if !KNOWN.contains(&verb) {
        return Outcome::Reply(err(&format!("Unknown command {verb}")));
    }
    lock(&shared.state).command_count += 1;

    match verb {
        "END" => Outcome::Close,
        "PUSH" => {
            let job: Value = match serde_json::from_str(rest) {
                Ok(v) => v,
                Err(e) => return Outcome::Reply(err(&format!("invalid JSON: {e}"))),
            };
            let r = push_job(shared, &mut lock(&shared.state), job);
            match r {
                Ok(()) => {
                    shared.notify.notify_waiters();
                    Outcome::Reply(ok())
                }
                Err(e) => Outcome::Reply(err(&e)),
            }
        }
        "PUSHB" => {
            let jobs: Vec<Value> = match serde_json::from_str(rest) {
                Ok(v) => v,
                Err(e) => return Outcome::Reply(err(&format!("invalid JSON: {e}"))),
            };
            let mut errors = Map::new();
            {
                let mut st = lock(&shared.state);
                for job in jobs {
                    let jid = job
                        .get("jid")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    if let Err(e) = push_job(shared, &mut st, job) {
                        errors.insert(jid, Value::String(e));
                    }
                }
            }
            shared.notify.notify_waiters();
            Outcome::Reply(bulk(Value::Object(errors).to_string().as_bytes()))
        }
        "FETCH" => {
            let queues: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
            if queues.is_empty() {
                return Outcome::Reply(err("FETCH needs at least one queue"));
            }
            fetch(shared, conn, &queues).await
        }
        "ACK" => {
            let Some(jid) = parse_obj(rest)
                .and_then(|m| m.get("jid").and_then(Value::as_str).map(str::to_owned))
            else {
                return Outcome::Reply(err(&format!("invalid ACK {rest}")));
            };
            let mut st = lock(&shared.state);
            st.acked.push(jid.clone());
            if st.reserved.get(&jid).is_some_and(|r| r.wid == conn.wid) {
                st.reserved.remove(&jid);
                st.total_processed += 1;
            }
            Outcome::Reply(ok())
        }
        "FAIL" => {
            let Some(payload) = parse_obj(rest) else {
                return Outcome::Reply(err(&format!("invalid FAIL {rest}")));
            };
            let jid = payload
                .get("jid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if jid.is_empty() {
                return Outcome::Reply(err("missing JID"));
            }
            let mut st = lock(&shared.state);
            st.failed
                .push((jid.clone(), Value::Object(payload.clone())));
            if st.reserved.get(&jid).is_none_or(|r| r.wid != conn.wid) {
                return Outcome::Reply(err(&format!("Job not found {jid}")));
            }
            let res = st.reserved.remove(&jid).expect("checked above");
            let s = |k: &str| {
                payload
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let backtrace = payload
                .get("backtrace")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            process_failure(
                shared,
                &mut st,
                res.job,
                &s("errtype"),
                &s("message"),
                backtrace,
            );
            Outcome::Reply(ok())
        }
        "BEAT" => {
            let Some(beat) = parse_obj(rest) else {
                return Outcome::Reply(err(&format!("invalid BEAT {rest}")));
            };
            let wid = beat.get("wid").and_then(Value::as_str).unwrap_or_default();
            let state = lock(&shared.state).workers.get(wid).copied();
            match state {
                None => Outcome::Reply(err(&format!("unknown worker {wid}"))),
                Some(WorkerState::Running) => Outcome::Reply(ok()),
                Some(WorkerState::Quiet) => Outcome::Reply(bulk(br#"{"state":"quiet"}"#)),
                Some(WorkerState::Terminate) => Outcome::Reply(bulk(br#"{"state":"terminate"}"#)),
            }
        }
        "INFO" => Outcome::Reply(bulk(info_value(shared).to_string().as_bytes())),
        "FLUSH" => {
            flush_state(&mut lock(&shared.state));
            Outcome::Reply(ok())
        }
        "QUEUE" => {
            let mut parts = rest.split_whitespace();
            let action = parts.next().unwrap_or_default();
            let names: Vec<String> = parts.map(str::to_owned).collect();
            let mut st = lock(&shared.state);
            let targets: Vec<String> = if names.iter().any(|n| n == "*") {
                st.queues.keys().cloned().collect()
            } else {
                names
            };
            match action {
                "PAUSE" => st.paused.extend(targets),
                "RESUME" => {
                    for q in &targets {
                        st.paused.remove(q);
                    }
                }
                "REMOVE" => {
                    for q in &targets {
                        st.queues.remove(q);
                        st.paused.remove(q);
                    }
                }
                other => return Outcome::Reply(err(&format!("invalid QUEUE action {other}"))),
            }
            drop(st);
            shared.notify.notify_waiters();
            Outcome::Reply(ok())
        }
        "MUTATE" => {
            let Some(m) = parse_obj(rest) else {
                return Outcome::Reply(err(&format!("invalid MUTATE {rest}")));
            };
            let cmd = m.get("cmd").and_then(Value::as_str).unwrap_or_default();
            let target = m.get("target").and_then(Value::as_str).unwrap_or_default();
            if cmd != "clear" {
                return Outcome::Reply(err("test server only supports MUTATE clear"));
            }
            let mut st = lock(&shared.state);
            match target {
                "retries" => st.retries.clear(),
                "scheduled" => st.scheduled.clear(),
                "dead" => st.dead.clear(),
                other => return Outcome::Reply(err(&format!("invalid target {other}"))),
            }
            Outcome::Reply(ok())
        }
        _ => Outcome::Reply(err(&format!("Unknown command {verb}"))),
    }
}

/// Pop the first available job from `queues` (in the given order) and reserve it.
fn try_reserve(shared: &Shared, wid: &Option<String>, queues: &[String]) -> Option<String> {
    let mut st = lock(&shared.state);
    for q in queues {
        if st.paused.contains(q) {
            continue;
        }
        let Some(job) = st.queues.get_mut(q).and_then(VecDeque::pop_front) else {
            continue;
        };
        let jid = job
            .get("jid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let secs = job
            .get("reserve_for")
            .and_then(Value::as_f64)
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(shared.cfg.default_reserve_for);
        let text = job.to_string();
        st.fetched.push(jid.clone());
        st.reserved.insert(
            jid,
            Reservation {
                job,
                wid: wid.clone(),
                deadline: Instant::now() + secs,
            },
        );
        return Some(text);
    }
    None
}

async fn fetch(shared: &Arc<Shared>, conn: &mut Conn, queues: &[String]) -> Outcome {
    let deadline = Instant::now() + shared.cfg.fetch_timeout;
    let running = match &conn.wid {
        Some(w) => lock(&shared.state)
            .workers
            .get(w)
            .is_none_or(|s| *s == WorkerState::Running),
        None => true,
    };
    loop {
        let notified = shared.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(job) = running
            .then(|| try_reserve(shared, &conn.wid, queues))
            .flatten()
        {
            return Outcome::Reply(bulk(job.as_bytes()));
        }
        tokio::select! {
            _ = &mut notified => continue,
            _ = tokio::time::sleep_until(deadline) => return Outcome::Reply(null()),
            r = conn.rd.fill_buf() => {
                // The client closed the connection or sent something else while
                // we were blocking: give up without reserving anything.
                return match r {
                    Ok(buf) if !buf.is_empty() => Outcome::Reply(null()),
                    _ => Outcome::Close,
                };
            }
        }
    }
}
