#!/usr/bin/env bash
# Benchmark: the read paths, PostgreSQL mode, 32 connections, release build.
#   - GET /users/ (cached) against a bare axum handler returning the same bytes,
#     in $ROUNDS interleaved rounds, with the ratio of the two
#   - GET /chat/chatroom/?user_id=1 (10 rooms with 6 members each)
#   - room history, 50 messages with senders: REST and GraphQL
#
#   bash bench/reads.sh        (needs wrk and a PostgreSQL at $PG_URL)
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-18700}"
BARE_PORT="${BARE_PORT:-18801}"
BASE="http://127.0.0.1:$PORT"

TARGET="${TARGET:-target/release}"   # another build's directory, to compare builds
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin chat-gateway --example bare

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

psql "$PG_URL" -qc "DROP DATABASE IF EXISTS chat_bench WITH (FORCE)" >/dev/null
psql "$PG_URL" -qc "CREATE DATABASE chat_bench" >/dev/null
DATABASE_URL="${PG_URL%/*}/chat_bench" BIND_ADDR="127.0.0.1:$PORT" RUST_LOG=warn \
  DB_MAX_CONNECTIONS="${DB_MAX_CONNECTIONS:-16}" "$TARGET/chat-gateway" serve >"$WORK/server.log" 2>&1 &
for _ in $(seq 1 100); do curl -fs "$BASE/readyz" >/dev/null && break; sleep 0.1; done

gql() { curl -fs "$BASE/graphql" -H 'content-type: application/json' -H "x-user-id: ${2:-1}" -d "$1"; }
for r in $(seq 1 10); do
  gql "{\"query\":\"mutation { createRoom(name: \\\"room-$r\\\", memberUsernames: [\\\"user_2\\\",\\\"user_3\\\",\\\"user_4\\\",\\\"user_5\\\",\\\"user_6\\\"]) { id } }\"}" >/dev/null
done
ROOM=$(gql '{"query":"mutation { createRoom(name: \"history\", memberUsernames: [\"user_2\",\"user_3\",\"user_4\",\"user_5\"]) { id } }"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["createRoom"]["id"])')
for i in $(seq 1 50); do
  curl -fs "$BASE/chat/group/$ROOM/" -H 'content-type: application/json' \
    -d "{\"from\": $(( (i % 5) + 1 )), \"text\": \"message $i of the history\"}" >/dev/null
done
sleep 2
# Read once, so the reader has seen everything (no mark-seen work per read).
curl -fs "$BASE/chat/messages/$ROOM/?user_id=1" >/dev/null
sleep 1

curl -fs "$BASE/users/" >"$WORK/users.json"
"$TARGET/examples/bare" "$WORK/users.json" "127.0.0.1:$BARE_PORT" &
sleep 0.5

measure() { # name url [lua]
  local name=$1 url=$2 script=${3:-bench/report.lua}
  wrk -t2 -c"$CONNECTIONS" -d1s -s "$script" "$url" >/dev/null
  local line
  line=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$script" "$url" | grep '^WRK')
  echo "$name $line"
}

printf '{"query":"query($r: ID!) { room(id: $r) { name members { username } messages(last: 50) { edges { node { id text sentAt sender { username } } } } } }","variables":{"r":"%s"}}' "$ROOM" >"$WORK/history.json"

ROUNDS="${ROUNDS:-3}"
{
  # The bare handler and the cached list in interleaved rounds, so a pause
  # in the machine's other load favours neither.
  for round in $(seq 1 "$ROUNDS"); do
    measure "bare-axum-users#$round" "http://127.0.0.1:$BARE_PORT/users/"
    measure "users-cached#$round" "$BASE/users/"
  done
  measure "chatroom-list" "$BASE/chat/chatroom/?user_id=1"
  measure "history-rest" "$BASE/chat/messages/$ROOM/?user_id=1"
  BODY_FILE="$WORK/history.json" USER_ID=1 measure "history-graphql" "$BASE/graphql" bench/post_report.lua
} | python3 bench/table.py
