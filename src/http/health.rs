//! Liveness and readiness probes.

use std::any::Any;

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{Response, StatusCode, header},
    response::IntoResponse,
};
use serde_json::{Value, json};

use super::PROBE_TIMEOUT;
use crate::app::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Can the service do its work? 503 when the database does not answer or
/// a background loop died (it is being restarted); 200 otherwise. Redis
/// and Faktory outages are ridden out (lists come from the database, sends
/// wait in the outbox), so they make the answer `degraded`, still 200: a
/// load balancer must not drop every gateway at once for them.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    let mut degraded = false;

    let database = tokio::time::timeout(PROBE_TIMEOUT, state.db.ping()).await;
    let database_ok = matches!(database, Ok(Ok(())));
    ready &= database_ok;
    checks.insert(
        "database".into(),
        json!(if database_ok { "ok" } else { "unavailable" }),
    );

    if let Some(redis) = &state.redis {
        let mut conn = redis.clone();
        let pong = tokio::time::timeout(
            PROBE_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        let redis_ok = matches!(pong, Ok(Ok(_)));
        degraded |= !redis_ok;
        checks.insert(
            "redis".into(),
            json!(if redis_ok { "ok" } else { "unavailable" }),
        );
    }

    if state.config.faktory_url.is_some() {
        let faktory = tokio::time::timeout(PROBE_TIMEOUT, state.queue.check()).await;
        let faktory_ok = matches!(faktory, Ok(Ok(())));
        degraded |= !faktory_ok;
        checks.insert(
            "faktory".into(),
            json!(if faktory_ok { "ok" } else { "unavailable" }),
        );
    }

    let down = state.supervisor.down();
    ready &= down.is_empty();
    let loops: serde_json::Map<String, Value> = down
        .into_iter()
        .map(|(name, reason)| (name.to_owned(), json!(reason)))
        .collect();
    checks.insert(
        "background".into(),
        if loops.is_empty() {
            json!("ok")
        } else {
            Value::Object(loops)
        },
    );

    let (status, word) = match (ready, degraded) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (true, true) => (StatusCode::OK, "degraded"),
        (true, false) => (StatusCode::OK, "ready"),
    };
    (status, Json(json!({"status": word, "checks": checks})))
}

/// Prometheus metrics.
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
}

/// A handler panicked: answer a generic 500, never the panic text. The
/// panic hook logged where it happened; its message is dropped unread (it
/// may quote the request).
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    drop(panic);
    tracing::error!("handler panicked: answered 500");
    let body = json!({"status": 500, "msg": "Internal server error"}).to_string();
    Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}
