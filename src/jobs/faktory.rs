//! The Faktory side of the job system: pushing jobs (the gateway) and
//! running them (the `worker` command), with the `faktory` crate.
//!
//! The crate (0.13) unwraps I/O errors in two places that a broker restart
//! reaches: its `Client` writes `END` when dropped and panics if that write
//! fails, and its worker panics when one of its job loops did. So:
//! - every connection goes through [`GuardedStream`]: once the connection
//!   failed or the server closed it, reads see the end and writes vanish,
//!   and the `END` of a dropped client can neither fail nor block;
//! - each worker session runs in its own task: should the crate panic
//!   anyway, the session is restarted (with back-off), never the process;
//! - connecting, the handshake and pushes have deadlines, so a server that
//!   accepts connections and then says nothing cannot hang a loop.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use faktory::{Client, Job as FaktoryJob, Worker};
use tokio::{
    io::{AsyncBufRead, AsyncRead, AsyncWrite, BufStream, ReadBuf},
    net::TcpStream,
    sync::{Mutex, watch},
};

use super::{
    Envelope, Job,
    queue::JobQueue,
    worker::{Batcher, JobContext, Outcome},
};

/// Where and how to reach Faktory.
#[derive(Debug, Clone)]
pub struct FaktoryConfig {
    /// `host:port`.
    pub address: String,
    pub password: Option<String>,
    /// The queue jobs go to and workers fetch from.
    pub queue: String,
    /// How long a worker may hold a job before Faktory hands it to another.
    pub reserve_for: Duration,
    /// How many times a job runs at most (the first run plus retries).
    pub max_attempts: u32,
}

/// Why Faktory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FaktoryError {
    #[error("FAKTORY_URL: {0}")]
    Config(String),
    #[error("FAKTORY_URL: the server refused the password")]
    Authentication,
    #[error("FAKTORY_URL: cannot reach {address}: {reason}")]
    Unreachable { address: String, reason: String },
}

impl FaktoryConfig {
    /// Parse `tcp://[:password@]host[:port]`.
    pub fn from_url(
        url: &str,
        queue: &str,
        reserve_for: Duration,
        max_attempts: u32,
    ) -> Result<Self, FaktoryError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| FaktoryError::Config(format!("malformed URL ({e})")))?;
        if !matches!(parsed.scheme(), "tcp" | "faktory") {
            return Err(FaktoryError::Config(format!(
                "unsupported scheme `{}`; use tcp://:password@host:7419",
                parsed.scheme()
            )));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| FaktoryError::Config("the URL has no host".to_owned()))?;
        let password = parsed.password().map(percent_decode);
        Ok(FaktoryConfig {
            address: format!("{host}:{}", parsed.port().unwrap_or(7419)),
            password,
            queue: queue.to_owned(),
            reserve_for,
            max_attempts: max_attempts.max(1),
        })
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// How long connecting (TCP and the HI/HELLO handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection that, once broken or closed by the server, reads as
/// ended and swallows writes; and once the crate starts writing `END` (it
/// is dropping its client), never fails nor blocks a write again.
pub struct GuardedStream {
    inner: BufStream<TcpStream>,
    address: String,
    broken: bool,
    closing: bool,
}

impl GuardedStream {
    pub async fn connect(address: &str) -> io::Result<Self> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting timed out"))??;
        stream.set_nodelay(true)?;
        Ok(GuardedStream {
            inner: BufStream::new(stream),
            address: address.to_owned(),
            broken: false,
            closing: false,
        })
    }

    /// The outcome of a write or flush as the caller may see it.
    fn guard<T>(&mut self, result: Poll<io::Result<T>>, discarded: T) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(Err(e)) => {
                self.broken = true;
                if self.closing {
                    Poll::Ready(Ok(discarded))
                } else {
                    Poll::Ready(Err(e))
                }
            }
            // A dropping client must not wait on a server that reads nothing.
            Poll::Pending if self.closing => Poll::Ready(Ok(discarded)),
            other => other,
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.broken {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &result {
            Poll::Ready(Err(_)) => this.broken = true,
            // The server closed the connection.
            Poll::Ready(Ok(())) if wanted && buf.filled().len() == before => this.broken = true,
            _ => {}
        }
        result
    }
}

impl AsyncBufRead for GuardedStream {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let GuardedStream { inner, broken, .. } = self.get_mut();
        if *broken {
            return Poll::Ready(Ok(&[]));
        }
        match Pin::new(inner).poll_fill_buf(cx) {
            Poll::Ready(Err(e)) => {
                *broken = true;
                Poll::Ready(Err(e))
            }
            Poll::Ready(Ok(bytes)) => {
                if bytes.is_empty() {
                    *broken = true;
                }
                Poll::Ready(Ok(bytes))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        let this = self.get_mut();
        if !this.broken {
            Pin::new(&mut this.inner).consume(amount);
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.broken {
            return Poll::Ready(Ok(buf.len()));
        }
        // The crate writes the verb of a command on its own; `END` is only
        // ever written by a client being dropped.
        if buf == b"END" {
            this.closing = true;
        }
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.guard(result, buf.len())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.broken {
            return Poll::Ready(Ok(()));
        }
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.guard(result, ())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.broken {
            return Poll::Ready(Ok(()));
        }
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.guard(result, ())
    }
}

#[async_trait::async_trait]
impl faktory::Reconnect for GuardedStream {
    async fn reconnect(&mut self) -> io::Result<Box<dyn faktory::Connection>> {
        Ok(Box::new(GuardedStream::connect(&self.address).await?))
    }
}

fn classify(config: &FaktoryConfig, error: faktory::Error) -> FaktoryError {
    let text = format!("{error:?}");
    if text.contains("Invalid password") || text.contains("AuthenticationNeeded") {
        FaktoryError::Authentication
    } else {
        FaktoryError::Unreachable {
            address: config.address.clone(),
            reason: error.to_string(),
        }
    }
}

/// Open a client connection (HI/HELLO, password check included).
pub async fn connect(config: &FaktoryConfig) -> Result<Client, FaktoryError> {
    let stream =
        GuardedStream::connect(&config.address)
            .await
            .map_err(|e| FaktoryError::Unreachable {
                address: config.address.clone(),
                reason: e.to_string(),
            })?;
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        Client::connect_with(stream, config.password.clone()),
    )
    .await
    .map_err(|_| FaktoryError::Unreachable {
        address: config.address.clone(),
        reason: "the server did not answer the handshake".to_owned(),
    })?
    .map_err(|e| classify(config, e))
}

/// Pushes jobs to Faktory over one lazily (re)opened connection.
pub struct FaktoryQueue {
    config: FaktoryConfig,
    client: Mutex<Option<Client>>,
}

impl FaktoryQueue {
    /// Check the server and the password. A wrong password is an error; an
    /// unreachable server is not (the outbox keeps the jobs until it is back).
    pub async fn open(config: FaktoryConfig) -> Result<Self, FaktoryError> {
        let client = match connect(&config).await {
            Ok(client) => Some(client),
            Err(FaktoryError::Unreachable { address, reason }) => {
                tracing::warn!(%address, %reason, "Faktory is unreachable; jobs wait in the outbox");
                None
            }
            Err(other) => return Err(other),
        };
        Ok(FaktoryQueue {
            config,
            client: Mutex::new(client),
        })
    }

    fn to_faktory(&self, envelope: &Envelope) -> Result<FaktoryJob, String> {
        let payload = serde_json::to_value(envelope).map_err(|e| e.to_string())?;
        Ok(FaktoryJob::builder(envelope.job.kind())
            .args(vec![payload])
            .queue(self.config.queue.clone())
            .reserve_for(self.config.reserve_for)
            .retry(self.config.max_attempts.saturating_sub(1) as isize)
            .build())
    }
}

#[async_trait::async_trait]
impl JobQueue for FaktoryQueue {
    async fn push(&self, jobs: &[Envelope]) -> Result<(), String> {
        let batch = jobs
            .iter()
            .map(|job| self.to_faktory(job))
            .collect::<Result<Vec<_>, _>>()?;
        let mut slot = self.client.lock().await;
        if slot.is_none() {
            *slot = Some(connect(&self.config).await.map_err(|e| e.to_string())?);
        }
        let client = slot.as_mut().expect("connected above");
        let push = async {
            if batch.len() == 1 {
                client
                    .enqueue(batch.into_iter().next().expect("one job"))
                    .await
            } else {
                client.enqueue_many(batch).await.map(|_| ())
            }
        };
        let failure = match tokio::time::timeout(PUSH_TIMEOUT, push).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => format!("Faktory push failed: {e}"),
            Err(_) => "Faktory push timed out".to_owned(),
        };
        // Drop the connection; the next push reconnects.
        *slot = None;
        Err(failure)
    }

    fn loses_jobs(&self) -> bool {
        // A broker restarted without its data has forgotten what it held.
        true
    }

    async fn check(&self) -> Result<(), String> {
        let mut slot = self.client.lock().await;
        if slot.is_none() {
            *slot = Some(connect(&self.config).await.map_err(|e| e.to_string())?);
        }
        let client = slot.as_mut().expect("connected above");
        match tokio::time::timeout(CONNECT_TIMEOUT, client.current_info()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                *slot = None;
                Err(e.to_string())
            }
            Err(_) => {
                *slot = None;
                Err("Faktory did not answer INFO".to_owned())
            }
        }
    }

    fn name(&self) -> &'static str {
        "faktory"
    }
}

/// The attempt number of a delivered Faktory job (1 for the first run).
fn attempt_of(job: &FaktoryJob) -> u32 {
    job.failure().map(|f| f.retry_count as u32 + 2).unwrap_or(1)
}

/// Why a Faktory handler asks for a retry.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RetryLater(String);

async fn handle(batcher: Batcher, max_attempts: u32, job: FaktoryJob) -> Result<(), RetryLater> {
    let Some(payload) = job.args().first() else {
        tracing::error!(jid = ?job.id(), "job without arguments dropped");
        return Ok(());
    };
    let envelope = match Envelope::parse(payload) {
        Ok(envelope) => envelope,
        Err(reason) => {
            tracing::error!(jid = ?job.id(), %reason, "job dropped");
            return Ok(());
        }
    };
    let last = attempt_of(&job) >= max_attempts;
    match batcher.run(envelope, last).await {
        Outcome::Done | Outcome::Failed => Ok(()),
        Outcome::Retry(reason) => Err(RetryLater(reason)),
    }
}

/// Run job handlers fetching from Faktory until `shutdown` turns true.
/// Reconnects (with back-off) when the server goes away; a wrong password
/// is returned as an error at once.
pub async fn run_worker(
    config: FaktoryConfig,
    ctx: JobContext,
    concurrency: usize,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), FaktoryError> {
    // Concurrent handlers hand their jobs to shared batch runners.
    let batcher = Batcher::start(ctx, 2);
    let mut failures: u32 = 0;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let mut builder = Worker::builder()
            .hostname(hostname())
            .labels(vec!["chat-gateway".to_owned()])
            .workers(concurrency.max(1))
            .shutdown_timeout(grace);
        for kind in Job::KINDS {
            let batcher = batcher.clone();
            let max = config.max_attempts;
            builder = builder.register_fn(kind, move |job| handle(batcher.clone(), max, job));
        }
        let mut stop = shutdown.clone();
        builder = builder.with_graceful_shutdown(async move {
            let _ = crate::shutdown::requested(&mut stop).await;
        });
        let stream = GuardedStream::connect(&config.address).await;
        let worker = match stream {
            Ok(stream) => builder
                .connect_with(stream, config.password.clone())
                .await
                .map_err(|e| classify(&config, e)),
            Err(e) => Err(FaktoryError::Unreachable {
                address: config.address.clone(),
                reason: e.to_string(),
            }),
        };
        let mut worker = match worker {
            Ok(worker) => worker,
            Err(FaktoryError::Unreachable { address, reason }) => {
                failures += 1;
                let wait = reconnect_wait(failures);
                tracing::warn!(%address, %reason, ?wait, "Faktory unreachable; retrying");
                if !waited(wait, &shutdown).await {
                    return Ok(());
                }
                continue;
            }
            Err(other) => return Err(other),
        };
        tracing::info!(address = %config.address, queue = %config.queue, concurrency, "worker fetching jobs");
        // A session of its own: a panic inside the crate ends the session,
        // not the process.
        let queue = config.queue.clone();
        let session = tokio::spawn(async move { worker.run(&[queue.as_str()]).await });
        match session.await {
            Ok(Ok(details)) => {
                tracing::info!(reason = ?details.reason, "worker stopped");
                if *shutdown.borrow() {
                    return Ok(());
                }
                failures = 0;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = ?e, "lost the Faktory connection; reconnecting");
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                tracing::error!(error = %e, "the Faktory worker session failed; starting a new one");
                crate::metrics::count("background_restarts_total", "loop", "faktory_worker");
                if !waited(reconnect_wait(failures), &shutdown).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Back-off before reconnecting: 0.5 s, 1 s, 2 s, then every 4 s.
fn reconnect_wait(failures: u32) -> Duration {
    Duration::from_millis(250 * (1u64 << failures.clamp(1, 4)))
}

/// Sleep for `wait`; false when shutdown came first.
async fn waited(wait: Duration, shutdown: &watch::Receiver<bool>) -> bool {
    let mut stop = shutdown.clone();
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = crate::shutdown::requested(&mut stop) => false,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "chat-worker".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the crate does when it drops a client: write `END` and unwrap.
    async fn end(stream: &mut GuardedStream) -> io::Result<()> {
        stream.write_all(b"END").await?;
        stream.write_all(b"\r\n").await?;
        stream.flush().await
    }

    #[tokio::test]
    async fn a_dead_connection_never_fails_the_final_end() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (socket, _) = listener.accept().await.unwrap();
                drop(socket);
            }
        });
        // The server closed: a read sees the end, and `END` vanishes.
        let mut stream = GuardedStream::connect(&address).await.unwrap();
        let mut buffer = [0u8; 8];
        assert_eq!(stream.read(&mut buffer).await.unwrap(), 0);
        end(&mut stream).await.unwrap();
        // Writes into a closed connection fail (broken pipe) ... but never
        // the `END` after them.
        let mut stream = GuardedStream::connect(&address).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut failed = false;
        for _ in 0..20 {
            if stream.write_all(b"BEAT {}\r\n").await.is_err() || stream.flush().await.is_err() {
                failed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(failed, "writes to a closed connection report it");
        end(&mut stream).await.unwrap();
        server.await.unwrap();
    }

    #[test]
    fn urls_are_parsed() {
        let config = FaktoryConfig::from_url(
            "tcp://:s3cr%40t@queue:7420",
            "chat",
            Duration::from_secs(30),
            5,
        )
        .unwrap();
        assert_eq!(config.address, "queue:7420");
        assert_eq!(config.password.as_deref(), Some("s3cr@t"));
        let config =
            FaktoryConfig::from_url("tcp://localhost", "chat", Duration::from_secs(30), 5).unwrap();
        assert_eq!(config.address, "localhost:7419");
        assert_eq!(config.password, None);
        assert!(FaktoryConfig::from_url("http://x", "chat", Duration::from_secs(1), 1).is_err());
        assert!(FaktoryConfig::from_url("nonsense", "chat", Duration::from_secs(1), 1).is_err());
    }
}
