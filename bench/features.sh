#!/usr/bin/env bash
# Benchmark: the chat features, release build.
#   1. search latency over 100,000 stored messages, on SQLite (embedded
#      mode) and on PostgreSQL (one client, queries back to back; on
#      PostgreSQL once right after the fill and once after VACUUM ANALYZE);
#   2. typing fan-out: 1,000 members of one room subscribed to roomEvents,
#      setTyping -> delivery at every subscriber (PostgreSQL + Redis).
#
#   bash bench/features.sh       (needs a PostgreSQL at $PG_URL, Redis at $REDIS_URL)
#   MESSAGES=20000 BACKENDS=sqlite bash bench/features.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS_URL_BENCH="${REDIS_URL:-redis://127.0.0.1:6379}"
PORT="${PORT:-18700}"
BASE="http://127.0.0.1:$PORT"
MESSAGES="${MESSAGES:-100000}"
BACKENDS="${BACKENDS:-sqlite postgres}"
SUBSCRIBERS="${SUBSCRIBERS:-1000}"
SEARCH_SECONDS="${SEARCH_SECONDS:-5}"
TARGET="${TARGET:-target/release}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin chat-gateway --example feature_bench
# The benchmark's own load is far past the per-user limits; their checks
# still run on every request.
export RATE_LIMIT_SENDS=100000000/10s RATE_LIMIT_SENDS_PER_ADDRESS=100000000/10s
export RATE_LIMIT_TYPING=100000000/10s RATE_LIMIT_WS_OPERATIONS_PER_ADDRESS=100000000/10s
WORK=$(mktemp -d)
SERVER=
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

start() {
  env "$@" BIND_ADDR="127.0.0.1:$PORT" RUST_LOG=warn SEED_USERS=$((SUBSCRIBERS + 1)) \
    "$TARGET/chat-gateway" serve >"$WORK/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 300); do curl -fs "$BASE/readyz" >/dev/null && return 0; sleep 0.1; done
  cat "$WORK/server.log" >&2
  return 1
}

stop() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
}

fresh_pg() {
  psql "$PG_URL" -qc "DROP DATABASE IF EXISTS chat_bench WITH (FORCE)" >/dev/null
  psql "$PG_URL" -qc "CREATE DATABASE chat_bench" >/dev/null
  echo "${PG_URL%/*}/chat_bench"
}

# A room of user_1 with the first $1 other users; prints its id.
room_of() {
  local members
  members=$(python3 -c "import json; print(json.dumps(['user_%d' % i for i in range(2, $1 + 2)]))")
  curl -fs "$BASE/graphql" -H 'content-type: application/json' -H 'x-user-id: 1' \
    -d "{\"query\":\"mutation(\$n: String!, \$m: [String!]!) { createRoom(name: \$n, memberUsernames: \$m) { id } }\",\"variables\":{\"n\":\"bench-$1\",\"m\":$members}}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["createRoom"]["id"])'
}

for backend in $BACKENDS; do
  if [ "$backend" = sqlite ]; then
    start DATABASE_URL="sqlite://$WORK/bench.db?mode=rwc" REDIS_URL= FAKTORY_URL=
  else
    start DATABASE_URL="$(fresh_pg)" REDIS_URL= FAKTORY_URL=
  fi
  room=$(room_of 5)
  "$TARGET/examples/feature_bench" fill "$BASE" "$room" "$MESSAGES" | sed "s/^/$backend: /"
  "$TARGET/examples/feature_bench" search "$BASE" "$SEARCH_SECONDS" | sed "s/^/$backend, just filled: /"
  if [ "$backend" = postgres ]; then
    # What autovacuum does by itself in a live database: planner
    # statistics, and the search index's pending entries merged.
    psql "${PG_URL%/*}/chat_bench" -qc "VACUUM ANALYZE messages"
    "$TARGET/examples/feature_bench" search "$BASE" "$SEARCH_SECONDS" | sed "s/^/$backend, vacuumed: /"
  fi
  stop
done

start DATABASE_URL="$(fresh_pg)" REDIS_URL="$REDIS_URL_BENCH" REDIS_KEY_PREFIX="chat-bench-$$:" FAKTORY_URL=
room=$(room_of "$SUBSCRIBERS")
"$TARGET/examples/feature_bench" typing "$BASE" "$room" "$SUBSCRIBERS" 50 | sed 's/^/postgres+redis: /'
echo "postgres+redis: gateway RSS with $SUBSCRIBERS roomEvents subscriptions closed: $(awk '/VmRSS/ {printf "%.1f MB", $2 / 1024}' "/proc/$SERVER/status")"
stop
