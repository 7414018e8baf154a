//! HTTP transport: the router, middleware, and the handlers that are not
//! part of any API (health, readiness). API handlers are thin: they extract
//! input and hand it to the GraphQL schema or the domain.

mod graphiql;
mod graphql;
mod health;
pub mod server;
pub mod ws;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, State},
    http::{HeaderName, HeaderValue, Request, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;

use crate::app::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.body_limit_bytes;
    let transport = Arc::new(Transport {
        body_limit,
        body_deadline: state.config.http_body_timeout(),
        in_flight: Arc::new(Semaphore::new(state.config.max_in_flight.max(1))),
    });
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/readyz", get(health::readyz))
        .route(
            "/graphql",
            get(graphql::graphql_get)
                .post(graphql::graphql_post)
                .fallback(graphql::method_not_allowed),
        )
        .route("/graphql/ws", get(graphql::graphql_ws))
        .route("/graphiql/{file}", get(graphiql::asset))
        .route("/favicon.ico", get(graphiql::favicon))
        .merge(crate::rest::router())
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(transport, guard))
        .layer(CatchPanicLayer::custom(health::panic_response))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let request_id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "http",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, FastRequestId))
}

/// A random UUID per request from the thread's own generator (uuid's v4
/// asks the kernel for randomness on every call).
#[derive(Clone, Copy)]
struct FastRequestId;

impl MakeRequestId for FastRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        HeaderValue::from_str(&id.to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// The client's address: the connection's peer, or with
/// `TRUST_FORWARDED_FOR` the first `X-Forwarded-For` entry.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl ClientIp {
    pub fn of(parts: &axum::http::request::Parts, trust_forwarded_for: bool) -> Self {
        Self::from_parts(&parts.headers, &parts.extensions, trust_forwarded_for)
    }

    pub fn from_parts(
        headers: &axum::http::HeaderMap,
        extensions: &axum::http::Extensions,
        trust_forwarded_for: bool,
    ) -> Self {
        if trust_forwarded_for
            && let Some(forwarded) = headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return ClientIp(Some(forwarded));
        }
        ClientIp(
            extensions
                .get::<Arc<server::ClientAddr>>()
                .map(|client| client.peer.ip()),
        )
    }
}

impl axum::extract::FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp::of(parts, state.config.trust_forwarded_for))
    }
}

/// A JSON error for a request refused by the transport, in the shape of
/// the chat envelope (`{"status", "msg"}`).
fn transport_error(status: StatusCode, msg: &str) -> Response {
    let body = serde_json::json!({"status": status.as_u16(), "msg": msg}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// What every request goes through before its handler, in one middleware
/// (each layer of its own would cost a boxed service and future per request).
struct Transport {
    body_limit: usize,
    body_deadline: Duration,
    in_flight: Arc<Semaphore>,
}

/// For every request, in order:
/// 1. past `MAX_IN_FLIGHT_REQUESTS` requests in flight, a 503 with
///    `Retry-After` instead of a queue (the probes and metrics are always
///    answered);
/// 2. the whole body read within `HTTP_BODY_TIMEOUT_SECS` and
///    `BODY_LIMIT_BYTES` (a 408 and a closed connection for a client that
///    sends it too slowly, a 413 for one too large);
/// 3. counted and timed by route pattern in `/metrics`.
async fn guard(
    State(transport): State<Arc<Transport>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = crate::metrics::method_name(request.method());
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics");
    let permit = if probe {
        None
    } else {
        match transport.in_flight.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                crate::metrics::count("http_requests_shed_total", "reason", "in_flight");
                let mut response = transport_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many requests are in flight; retry shortly",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
        }
    };
    let response = match read_body(&transport, request).await {
        Ok(request) => next.run(request).await,
        Err(refusal) => refusal,
    };
    drop(permit);
    crate::metrics::http_request(
        method,
        route.as_ref().map_or("unmatched", |r| r.as_str()),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The request with its whole body read, or the answer refusing it.
async fn read_body(
    transport: &Transport,
    request: axum::extract::Request,
) -> Result<axum::extract::Request, Response> {
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
        Ok(Ok(collected)) => Ok(axum::extract::Request::from_parts(
            parts,
            Body::from(collected.to_bytes()),
        )),
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

/// How long a readiness probe waits for a dependency.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
