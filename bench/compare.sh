#!/usr/bin/env bash
# Run the benchmarks against two builds in one session, interleaved
# (baseline, current, baseline, current), so a regression shows against the
# same machine state rather than against figures from another day.
#
#   bash bench/compare.sh REV                # REV: the baseline commit
#   SUITES="reads sends" bash bench/compare.sh REV
#
# The baseline is built from a git worktree of REV into its own target
# directory (kept under target/bench-baseline, so a rerun reuses it).
set -euo pipefail
cd "$(dirname "$0")/.."

REV="${1:?usage: bench/compare.sh REV}"
SUITES="${SUITES:-reads sends subscriptions}"
ROUNDS="${ROUNDS:-2}"
BASE_TREE=target/bench-baseline/tree
BASE_TARGET="$PWD/target/bench-baseline/target"

if [ ! -d "$BASE_TREE" ] || [ "$(git -C "$BASE_TREE" rev-parse HEAD)" != "$(git rev-parse "$REV")" ]; then
  rm -rf "$BASE_TREE"
  git worktree prune
  git worktree add --detach "$BASE_TREE" "$REV" >/dev/null
fi
(cd "$BASE_TREE" && CARGO_TARGET_DIR="$BASE_TARGET" cargo build --release --quiet \
  --bin chat-gateway --example bare --example ws_bench)
cargo build --release --quiet --bin chat-gateway --example bare --example ws_bench

for suite in $SUITES; do
  for round in $(seq 1 "$ROUNDS"); do
    for build in baseline current; do
      target=target/release
      [ "$build" = baseline ] && target="$BASE_TARGET/release"
      echo "### $suite, round $round, $build ($( [ "$build" = baseline ] && echo "$REV" || git rev-parse --short HEAD))"
      case $suite in
        sends) BACKENDS="${BACKENDS:-postgres}" TARGET="$target" SKIP_BUILD=1 bash bench/sends.sh ;;
        *) TARGET="$target" SKIP_BUILD=1 bash "bench/$suite.sh" ;;
      esac
      echo
    done
  done
done
