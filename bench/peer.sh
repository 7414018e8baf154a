#!/usr/bin/env bash
# Benchmark: this service against PostGraphile 4.14 on the same PostgreSQL
# database, the same GraphQL reads, interleaved rounds, one machine.
#   - the core room query: name, its 10 members' usernames, its newest 50
#     messages with id, text, sentAt and the sender's username
#   - the first 15 users, id and username
# This service runs twice on the database: scaled-out mode with the read
# model (`ours`), and with the read model off (`ours-cold`, every read from
# PostgreSQL).
#
#   bash bench/peer.sh      (needs wrk, npm, a PostgreSQL at $PG_URL and a
#                            Redis at $REDIS_URL; installs PostGraphile from
#                            npm into a temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-18720}"
COLD_PORT="${COLD_PORT:-18721}"
PEER_PORT="${PEER_PORT:-18722}"
MESSAGES="${MESSAGES:-200}"
TARGET="${TARGET:-target/release}"
OUT="${OUT:-target/bench-peer.txt}"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is missing" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin chat-gateway

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

echo "installing PostGraphile 4.14 into $WORK" >&2
(cd "$WORK" && npm init -y >/dev/null &&
  npm install --silent --no-audit --no-fund postgraphile@4.14.1 >/dev/null)

DB_URL="${PG_URL%/*}/chat_peer"
psql "$PG_URL" -qc "DROP DATABASE IF EXISTS chat_peer WITH (FORCE)" >/dev/null
psql "$PG_URL" -qc "CREATE DATABASE chat_peer" >/dev/null
PREFIX="bench-peer-$$:"
serve() { # port [env...]
  local port=$1; shift
  env DATABASE_URL="$DB_URL" BIND_ADDR="127.0.0.1:$port" RUST_LOG=warn REDIS_URL="$REDIS_URL" \
    REDIS_KEY_PREFIX="$PREFIX" DB_MAX_CONNECTIONS=16 RATE_LIMIT_SENDS=1000000/10s "$@" \
    "$TARGET/chat-gateway" serve >>"$WORK/server.log" 2>&1 &
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
}
serve "$PORT"
BASE="http://127.0.0.1:$PORT"

gql() { curl -fs "$BASE/graphql" -H 'content-type: application/json' -H "x-user-id: ${2:-1}" -d "$1"; }
ROOM=$(gql '{"query":"mutation { createRoom(name: \"peer\", memberUsernames: [\"user_2\",\"user_3\",\"user_4\",\"user_5\",\"user_6\",\"user_7\",\"user_8\",\"user_9\",\"user_10\"]) { id } }"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["createRoom"]["id"])')
for i in $(seq 1 "$MESSAGES"); do
  curl -fs "$BASE/chat/group/$ROOM/" -H 'content-type: application/json' \
    -d "{\"from\": $(( (i % 10) + 1 )), \"text\": \"message $i of the room\"}" >/dev/null
done
for _ in $(seq 1 100); do
  stored=$(psql "$DB_URL" -tAc "SELECT count(*) FROM messages WHERE room_id = $ROOM")
  [ "$stored" -ge "$MESSAGES" ] && break
  sleep 0.2
done
serve "$COLD_PORT" READ_MODEL_BYTES=0

node "$WORK/node_modules/postgraphile/cli.js" -c "$DB_URL" -s public -n 127.0.0.1 \
  -p "$PEER_PORT" --disable-query-log >"$WORK/postgraphile.log" 2>&1 &
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PEER_PORT/graphql" -H 'content-type: application/json' \
    -d '{"query":"{ __typename }"}' >/dev/null 2>&1 && break
  sleep 0.2
done

ours_room=$(printf '{"query":"query($r: ID!) { room(id: $r) { name members { username } messages(last: 50) { edges { node { id text sentAt sender { username } } } } } }","variables":{"r":"%s"}}' "$ROOM")
peer_room=$(printf '{"query":"query($r: BigInt!) { roomById(id: $r) { name membershipsByRoomId(condition: {leftAt: null}, orderBy: USER_ID_ASC) { nodes { userByUserId { username } } } messagesByRoomId(last: 50, orderBy: ID_ASC) { nodes { id text sentAt userBySenderId { username } } } } }","variables":{"r":"%s"}}' "$ROOM")
ours_users='{"query":"{ users(first: 15) { edges { node { id username } } } }"}'
peer_users='{"query":"{ allUsers(first: 15, orderBy: ID_ASC) { nodes { id username } } }"}'
echo "$ours_room" >"$WORK/ours_room.json"
echo "$peer_room" >"$WORK/peer_room.json"
echo "$ours_users" >"$WORK/ours_users.json"
echo "$peer_users" >"$WORK/peer_users.json"

# The two answer the same: the same names, texts and senders.
python3 - "$BASE" "$PEER_PORT" "$WORK" <<'EOF'
import json, sys, urllib.request
base, peer, work = sys.argv[1], sys.argv[2], sys.argv[3]
def post(url, path):
    body = open(f"{work}/{path}").read().encode()
    req = urllib.request.Request(url, body, {"content-type": "application/json", "x-user-id": "1"})
    return json.load(urllib.request.urlopen(req))["data"]
ours = post(f"{base}/graphql", "ours_room.json")["room"]
theirs = post(f"http://127.0.0.1:{peer}/graphql", "peer_room.json")["roomById"]
assert ours["name"] == theirs["name"]
assert [m["username"] for m in ours["members"]] == \
    [n["userByUserId"]["username"] for n in theirs["membershipsByRoomId"]["nodes"]]
assert [(e["node"]["text"], e["node"]["sender"]["username"]) for e in ours["messages"]["edges"]] == \
    [(n["text"], n["userBySenderId"]["username"]) for n in theirs["messagesByRoomId"]["nodes"]]
assert len(ours["messages"]["edges"]) == 50
print("the answers match", file=sys.stderr)
EOF

measure() { # name url body
  local name=$1 url=$2 body=$3 line
  BODY_FILE="$body" wrk -t2 -c"$CONNECTIONS" -d2s -s bench/post_report.lua "$url" >/dev/null
  line=$(BODY_FILE="$body" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s bench/post_report.lua "$url" | grep '^WRK')
  echo "$name $line"
}

: >"$OUT"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round" >&2
  {
    measure "room-postgraphile" "http://127.0.0.1:$PEER_PORT/graphql" "$WORK/peer_room.json"
    measure "room-ours" "$BASE/graphql" "$WORK/ours_room.json"
    measure "room-ours-cold" "http://127.0.0.1:$COLD_PORT/graphql" "$WORK/ours_room.json"
    measure "users-postgraphile" "http://127.0.0.1:$PEER_PORT/graphql" "$WORK/peer_users.json"
    measure "users-ours" "$BASE/graphql" "$WORK/ours_users.json"
  } | tee -a "$OUT" >&2
done

python3 - "$OUT" <<'EOF'
import re, sys, statistics
runs = {}
for line in open(sys.argv[1]):
    name, _, *rest = line.split()
    kv = dict(p.split("=") for p in rest)
    runs.setdefault(name, []).append((float(kv["rps"]), kv["p99_ms"], int(kv["errors"]) + int(kv["non2xx"])))
print("| query | server | req/s (rounds) | median | p99 (last) | errors |")
print("|---|---|---|---|---|---|")
for name, values in runs.items():
    query, server = name.split("-", 1)
    rps = [v[0] for v in values]
    print(f"| {query} | {server} | {' / '.join(f'{r:,.0f}' for r in rps)} | "
          f"{statistics.median(rps):,.0f} | {values[-1][1]} ms | {sum(v[2] for v in values)} |")
def ratio(a, b):
    return statistics.median(r[0] for r in runs[a]) / statistics.median(r[0] for r in runs[b])
print()
print(f"- room query, ours / PostGraphile: {ratio('room-ours', 'room-postgraphile'):.2f}x "
      f"(read model off: {ratio('room-ours-cold', 'room-postgraphile'):.2f}x)")
print(f"- users query, ours / PostGraphile: {ratio('users-ours', 'users-postgraphile'):.2f}x")
EOF
