#!/usr/bin/env bash
# Benchmark: subscriptions, PostgreSQL mode, release build.
#   1. send -> delivery latency on `unreadMessages` (20 subscribers in one
#      room, 100 messages/s for 10 s)
#   2. gateway memory: idle, then holding 10,000 websocket subscriptions
#
#   bash bench/subscriptions.sh     (needs a PostgreSQL at $PG_URL)
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PORT="${PORT:-18700}"
BASE="http://127.0.0.1:$PORT"
CONNECTIONS="${CONNECTIONS:-10000}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

TARGET="${TARGET:-target/release}"   # another build's directory, to compare builds
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin chat-gateway --example ws_bench
# user_1 sends 1,000 messages in 10 s: raise the per-user send limit past it.
export RATE_LIMIT_SENDS="${RATE_LIMIT_SENDS:-100000000/10s}"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

psql "$PG_URL" -qc "DROP DATABASE IF EXISTS chat_bench WITH (FORCE)" >/dev/null
psql "$PG_URL" -qc "CREATE DATABASE chat_bench" >/dev/null
DATABASE_URL="${PG_URL%/*}/chat_bench" BIND_ADDR="127.0.0.1:$PORT" RUST_LOG=warn SEED_USERS=200 \
  "$TARGET/chat-gateway" serve >"$WORK/server.log" 2>&1 &
SERVER=$!
START=$(date +%s%N)
for _ in $(seq 1 200); do curl -fs "$BASE/readyz" >/dev/null && break; sleep 0.02; done
READY_MS=$(( ($(date +%s%N) - START) / 1000000 ))
sleep 1
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER/status"; }
IDLE=$(rss)

members=$(python3 -c 'import json; print(json.dumps(["user_%d" % i for i in range(2, 22)]))')
ROOM=$(curl -fs "$BASE/graphql" -H 'content-type: application/json' -H 'x-user-id: 1' \
  -d "{\"query\":\"mutation(\$m: [String!]!) { createRoom(name: \\\"bench\\\", memberUsernames: \$m) { id } }\",\"variables\":{\"m\":$members}}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["createRoom"]["id"])')

LATENCY=$("$TARGET/examples/ws_bench" latency "$BASE" "$ROOM" 20 100 10)

"$TARGET/examples/ws_bench" hold "$BASE" "$CONNECTIONS" 200 >"$WORK/hold.log" 2>&1 &
for _ in $(seq 1 600); do grep -q HOLDING "$WORK/hold.log" && break; sleep 0.5; done
sleep 2
HELD=$(grep -c . "$WORK/hold.log" >/dev/null && grep -o 'HOLDING connections=[0-9]*' "$WORK/hold.log" || echo "HOLDING connections=?")
LOADED=$(rss)

echo "start-up to ready (after migrations, fresh database): ${READY_MS} ms"
echo "idle RSS: ${IDLE} MB"
echo "latency (send -> unreadMessages delivery): $LATENCY"
echo "$HELD RSS: ${LOADED} MB"
