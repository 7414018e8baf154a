# Multi-stage build: compile in the Rust image, run in a small Debian image.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin chat-gateway \
    && cp target/release/chat-gateway /usr/local/bin/chat-gateway

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data chat \
    && mkdir -p /data && chown chat /data
COPY --from=build /usr/local/bin/chat-gateway /usr/local/bin/chat-gateway
USER chat
WORKDIR /data
ENV BIND_ADDR=0.0.0.0:8000 \
    DATABASE_URL=sqlite:///data/chat.db?mode=rwc
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
ENTRYPOINT ["chat-gateway"]
CMD ["serve"]
