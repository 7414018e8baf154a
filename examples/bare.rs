//! Benchmark baseline: a bare axum handler answering `GET /users/` with the
//! bytes of a file (the service's own `/users/` answer, captured first), so
//! the cached endpoint can be compared with doing nothing at all.
//!
//!     cargo run --release --example bare -- users.json 127.0.0.1:18801

use axum::{Router, body::Bytes, http::header, routing::get};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let file = args.next().expect("usage: bare FILE ADDR");
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18801".to_owned());
    let body = Bytes::from(std::fs::read(&file).expect("readable file"));
    let app = Router::new().route(
        "/users/",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
