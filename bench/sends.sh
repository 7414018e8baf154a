#!/usr/bin/env bash
# Benchmark: accepted sends per second and send-to-stored latency, in the
# embedded mode (in-process queue) on SQLite and on PostgreSQL.
#
#   bash bench/sends.sh            # both databases
#   BACKENDS=postgres bash bench/sends.sh
#
# Needs: wrk (apt-get install wrk), a PostgreSQL at $PG_URL for the
# PostgreSQL run. Prints a Markdown table; copy it into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
BACKENDS="${BACKENDS:-sqlite postgres}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-18700}"
TARGET="${TARGET:-target/release}"   # another build's directory, to compare builds
BIN="$TARGET/chat-gateway"
# One user sends as fast as wrk can: the per-user and per-address send
# limits are raised past the load (their checks still run on every send).
export RATE_LIMIT_SENDS="${RATE_LIMIT_SENDS:-100000000/10s}"
export RATE_LIMIT_SENDS_PER_ADDRESS="${RATE_LIMIT_SENDS_PER_ADDRESS:-100000000/10s}"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

run_backend() {
  local backend=$1 url
  if [ "$backend" = sqlite ]; then
    url="sqlite://$WORK/bench.db?mode=rwc"
  else
    psql "$PG_URL" -qc "DROP DATABASE IF EXISTS chat_bench WITH (FORCE)" >/dev/null
    psql "$PG_URL" -qc "CREATE DATABASE chat_bench" >/dev/null
    url="${PG_URL%/*}/chat_bench"
  fi
  DATABASE_URL="$url" BIND_ADDR="127.0.0.1:$PORT" RUST_LOG=warn DB_MAX_CONNECTIONS="${DB_MAX_CONNECTIONS:-8}" \
    JOB_WORKERS="${JOB_WORKERS:-4}" "$BIN" serve >"$WORK/$backend.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -fs "127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

  local room
  room=$(curl -fs "127.0.0.1:$PORT/graphql" -H 'content-type: application/json' -H 'x-user-id: 1' \
    -d '{"query":"mutation { createRoom(name: \"bench\", memberUsernames: [\"user_2\"]) { id } }"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["createRoom"]["id"])')

  # Warm up, then measure.
  ROOM_ID=$room wrk -t2 -c"$CONNECTIONS" -d2s -s bench/sends.lua "http://127.0.0.1:$PORT" >/dev/null
  local wrk_line
  wrk_line=$(ROOM_ID=$room wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s bench/sends.lua "http://127.0.0.1:$PORT" | grep '^WRK')

  # Let the workers drain, then read latency (task accepted -> message stored)
  # from the database's own timestamps.
  local stats
  for _ in $(seq 1 600); do
    stats=$(python3 bench/task_stats.py "$backend" "$url")
    case "$stats" in *"pending=0 "*) break ;; esac
    sleep 0.5
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$backend $wrk_line $stats"
}

echo "| backend | accepted sends/s | send p50 / p99 (HTTP) | stored/s | accepted->stored p50 / p99 |"
echo "|---|---|---|---|---|"
for backend in $BACKENDS; do
  line=$(run_backend "$backend")
  python3 - "$line" <<'PY'
import sys
parts = sys.argv[1].split()
kv = dict(p.split("=", 1) for p in parts if "=" in p)
print(f"| {parts[0]} | {float(kv['rps']):,.0f} | {float(kv['p50_ms']):.1f} ms / {float(kv['p99_ms']):.1f} ms "
      f"| {float(kv['stored_per_s']):,.0f} | {float(kv['lat_p50_ms']):.1f} ms / {float(kv['lat_p99_ms']):.1f} ms |")
PY
done
