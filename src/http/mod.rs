//! HTTP transport: the router, middleware, and the handlers that are not
//! part of any API (health, readiness). API handlers are thin: they extract
//! input and hand it to the GraphQL schema or the domain.

mod front;
mod graphiql;
mod graphql;
mod health;
pub mod server;
pub mod ws;

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::DefaultBodyLimit, http::StatusCode, routing::get};
use tower::ServiceBuilder;

use crate::app::AppState;
use front::{FrontLayer, InFlight, Transport};

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.body_limit_bytes;
    let front = FrontLayer::new(Transport {
        body_limit,
        body_deadline: state.config.http_body_timeout(),
        in_flight: InFlight::new(state.config.max_in_flight),
    });
    // One layer per route, made of all that wraps it: each `Router::layer`
    // boxes every route once more, and a boxed level costs a clone, a
    // boxed future and a dynamic call per request.
    let around = ServiceBuilder::new()
        .layer(front)
        .layer(DefaultBodyLimit::max(body_limit));
    let api = Router::new()
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
        .fallback(not_found)
        .layer(around.clone());
    let legacy = crate::rest::router().layer(around.layer(crate::rest::CheckQueryLayer));
    api.merge(legacy).with_state(state)
}

/// A path no route matches.
async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
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

/// How long a readiness probe waits for a dependency.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
