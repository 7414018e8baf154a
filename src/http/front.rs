//! What every request goes through before its handler, as one service
//! wrapped around each route (a layer of its own per concern would cost a
//! boxed service, a boxed future and a response mapping per request each).
//!
//! For every request, in order:
//! 1. an `x-request-id` (the client's, or a new random one), on the request
//!    and on its response, and a tracing span carrying it;
//! 2. past `MAX_IN_FLIGHT_REQUESTS` requests in flight, a 503 with
//!    `Retry-After` instead of a queue (the probes and metrics are always
//!    answered);
//! 3. the whole body read within `HTTP_BODY_TIMEOUT_SECS` and
//!    `BODY_LIMIT_BYTES` (a 408 and a closed connection for a client that
//!    sends it too slowly, a 413 for one too large);
//! 4. a handler that panics answers a 500 (the panic is logged);
//! 5. counted and timed by route pattern in `/metrics`.

use std::{
    convert::Infallible,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::FutureExt;
use http_body_util::BodyExt;
use tower::{Layer, Service};
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The limits every request is held to.
pub struct Transport {
    pub body_limit: usize,
    pub body_deadline: Duration,
    pub in_flight: InFlight,
}

/// Requests in flight, up to a limit: one shared counter (a semaphore
/// would also lock its queue of waiters on every release, and nothing
/// here waits for a permit).
pub struct InFlight {
    now: AtomicUsize,
    max: usize,
}

impl InFlight {
    pub fn new(max: usize) -> Self {
        InFlight {
            now: AtomicUsize::new(0),
            max: max.max(1),
        }
    }
}

/// What a request's answer holds while it is made: the limits, and its
/// place among the requests in flight (given back when it is dropped,
/// whether the request finished or its client left).
struct Held {
    transport: Arc<Transport>,
    counted: bool,
}

impl Held {
    /// `None` when too many requests are in flight.
    fn enter(transport: Arc<Transport>) -> Option<Held> {
        let in_flight = &transport.in_flight;
        if in_flight.now.fetch_add(1, Ordering::AcqRel) >= in_flight.max {
            in_flight.now.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Held {
            transport,
            counted: true,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.counted {
            self.transport.in_flight.now.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[derive(Clone)]
pub struct FrontLayer {
    transport: Arc<Transport>,
}

impl FrontLayer {
    pub fn new(transport: Transport) -> Self {
        FrontLayer {
            transport: Arc::new(transport),
        }
    }
}

impl<S> Layer<S> for FrontLayer {
    type Service = Front<S>;

    fn layer(&self, inner: S) -> Front<S> {
        Front {
            inner,
            transport: self.transport.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Front<S> {
    inner: S,
    transport: Arc<Transport>,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for Front<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Answer {
        let started = Instant::now();
        let id = match request.headers().get(REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                request.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        let span = tracing::info_span!(
            "http",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = id.to_str().unwrap_or("-"),
        );
        let method = crate::metrics::method_name(request.method());
        // Taken, not cloned: no handler reads it, and a clone would touch a
        // count that every request of the route shares.
        let route = request.extensions_mut().remove::<MatchedPath>();
        let probe = matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics");
        let transport = self.transport.clone();
        let held = if probe {
            Held {
                transport,
                counted: false,
            }
        } else {
            match Held::enter(transport) {
                Some(held) => held,
                None => return Box::pin(std::future::ready(Ok(shed(id)))),
            }
        };
        // A request without a body goes to the route now (the service made
        // ready is the one called); one with a body, once it is read, to a
        // clone made ready in its place.
        let call = if http_body::Body::is_end_stream(request.body()) {
            Call::Now(self.inner.call(request))
        } else {
            let clone = self.inner.clone();
            Call::AfterBody(Box::new((
                std::mem::replace(&mut self.inner, clone),
                request,
            )))
        };
        Box::pin(
            async move {
                tracing::debug!("started processing request");
                let mut response = match call {
                    Call::Now(answer) => guarded(answer).await,
                    Call::AfterBody(waiting) => {
                        let (mut inner, request) = *waiting;
                        match read_body(&held.transport, request).await {
                            Ok(request) => guarded(inner.call(request)).await,
                            Err(refusal) => refusal,
                        }
                    }
                };
                drop(held);
                finished(&response, method, route.as_ref(), started.elapsed());
                response.headers_mut().entry(REQUEST_ID).or_insert(id);
                Ok(response)
            }
            .instrument(span),
        )
    }
}

enum Call<S: Service<Request>> {
    Now(S::Future),
    AfterBody(Box<(S, Request)>),
}

/// The route's answer, or a 500 if its handler panicked.
async fn guarded(answer: impl Future<Output = Result<Response, Infallible>>) -> Response {
    match AssertUnwindSafe(answer).catch_unwind().await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(panic) => super::health::panic_response(panic),
    }
}

/// Past `MAX_IN_FLIGHT_REQUESTS`: a 503 asking to come back in a second.
fn shed(id: HeaderValue) -> Response {
    crate::metrics::count("http_requests_shed_total", "reason", "in_flight");
    let mut response = transport_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Too many requests are in flight; retry shortly",
    );
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(REQUEST_ID, id);
    response
}

/// Count and log a request that was answered.
fn finished(
    response: &Response,
    method: &'static str,
    route: Option<&MatchedPath>,
    elapsed: Duration,
) {
    let status = response.status();
    crate::metrics::http_request(
        method,
        route.map_or("unmatched", |r| r.as_str()),
        status.as_u16(),
        elapsed,
    );
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(status = status.as_u16(), latency_ms, "response failed");
    } else {
        tracing::debug!(
            status = status.as_u16(),
            latency_ms,
            "finished processing request"
        );
    }
}

/// A random UUID, from a small generator per thread (seeded by the
/// system; a request id needs to be unique, not secret), written without a
/// `String`.
fn new_request_id() -> HeaderValue {
    use rand::{Rng, SeedableRng, rngs::SmallRng};
    thread_local! {
        static RNG: std::cell::RefCell<SmallRng> = std::cell::RefCell::new(SmallRng::from_os_rng());
    }
    let bytes: [u8; 16] = RNG.with(|rng| rng.borrow_mut().random());
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = id.hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"))
}

/// A JSON error for a request refused by the transport, in the shape of
/// the chat envelope (`{"status", "msg"}`).
pub fn transport_error(status: StatusCode, msg: &str) -> Response {
    let body = serde_json::json!({"status": status.as_u16(), "msg": msg}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The request with its whole body read, or the answer refusing it.
async fn read_body(transport: &Transport, request: Request) -> Result<Request, Response> {
    // Most requests (GETs, upgrades) have no body: nothing to read.
    if http_body::Body::is_end_stream(request.body()) {
        return Ok(request);
    }
    let limit = transport.body_limit;
    let too_large = || {
        transport_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("The request body is larger than {limit} bytes"),
        )
    };
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = announced.filter(|length| *length > limit as u64) {
        // A client reads no answer while it is still sending: take in (and
        // drop) a body of moderate size first, so it sees the 413 rather
        // than a reset connection. Past that, answer and close.
        let mut response = too_large();
        if length <= 8 * limit as u64 {
            let mut body = request.into_body().into_data_stream();
            let drain =
                async { while let Some(Ok(_)) = futures::StreamExt::next(&mut body).await {} };
            let _ = tokio::time::timeout(transport.body_deadline, drain).await;
        }
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Err(response);
    }
    let (parts, body) = request.into_parts();
    let read = http_body_util::Limited::new(body, limit).collect();
    match tokio::time::timeout(transport.body_deadline, read).await {
        Ok(Ok(collected)) => Ok(Request::from_parts(parts, Body::from(collected.to_bytes()))),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(transport_error(
            StatusCode::BAD_REQUEST,
            "The request body could not be read",
        )),
        Err(_) => {
            crate::metrics::count("http_connections_dropped_total", "reason", "body");
            let mut response = transport_error(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "The request body did not arrive within {} s",
                    transport.body_deadline.as_secs()
                ),
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(response)
        }
    }
}
