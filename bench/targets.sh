#!/usr/bin/env bash
# Performance targets 1, 3 and 4 of the performance issue, side by side in
# one go on this machine, so a later change can be compared with an earlier
# one on the same machine. Prints one table of figures and ratios and keeps
# every raw output in OUT_DIR.
#
#   1. bookings ahead of bulk traffic: loadtest booking p99 with sensors
#      flooding (steady, JSON and bincode) over its p99 with sensors nearly
#      idle (RATE_IDLE messages/s); /health/ and /metrics probed every
#      200 ms during each run (curl's total time).
#   3. durable bookings over HTTP: wrk, 64 connections, bench/book.lua,
#      bookings that expire (hold 1 s, the demo city) and bookings that stay
#      held (the 1,000,000-spot layout of bench/million_spots.py).
#   4. fan-out: ws_bench fanout to N subscribers of one facility, against
#      parkme and against the minimal relay (`--relay`, the machine's
#      ceiling), for N in FANOUT_SIZES.
#
# usage: bench/targets.sh [OUT_DIR]
# env:   SECONDS_EACH (loadtest and wrk runs, default 15), FANOUT_SIZES
#        (default "1000 2500 10000"), RATE_IDLE (default 200), ONLY
#        ("1", "3" or "4": one target only), PARKME_BIN, PARKME_LOADTEST,
#        WS_BENCH (default target/release/...)
#
# Build first:
#   cargo build --release -p parkme-gateway -p parkme-loadtest --bin parkme \
#     --bin parkme-loadtest --example ws_bench
# Needs wrk, curl and python3. Exit 0 when every loadtest run found no
# violation (the figures are reported whether or not they meet a target).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT=${1:-$(mktemp -d -t parkme-targets.XXXXXX)}
SECS=${SECONDS_EACH:-15}
SIZES=${FANOUT_SIZES:-1000 2500 10000}
RATE_IDLE=${RATE_IDLE:-200}
ONLY=${ONLY:-}
BIN=${PARKME_BIN:-$ROOT/target/release/parkme}
LOADTEST=${PARKME_LOADTEST:-$ROOT/target/release/parkme-loadtest}
WS_BENCH=${WS_BENCH:-$ROOT/target/release/examples/ws_bench}
ADMIN=adm
SECRET=targets-jwt-secret-0123456789abcdef
PORT=${PORT:-18097}
mkdir -p "$OUT"
for b in "$BIN" "$LOADTEST" "$WS_BENCH"; do
  [[ -x $b ]] || {
    echo "targets: $b missing; build first (see the header of this script)" >&2
    exit 2
  }
done
command -v wrk >/dev/null || { echo "targets: wrk is not installed" >&2; exit 2; }

SERVER=
stop_server() {
  if [[ -n $SERVER ]]; then
    kill -TERM "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=
  fi
}
trap stop_server EXIT

# start_server NAME [serve args...]: a fresh data dir, every limit lifted.
start_server() {
  local name=$1
  shift
  rm -rf "$OUT/$name.data"
  mkdir -p "$OUT/$name.data"
  PARKME_DATA_DIR="$OUT/$name.data" PARKME_LISTEN=127.0.0.1:$PORT \
    PARKME_ADMIN_TOKEN=$ADMIN PARKME_JWT_SECRET=$SECRET \
    PARKME_RATE_ANON_PER_HOUR=0 PARKME_RATE_USER_PER_HOUR=0 \
    PARKME_RATE_BOOKINGS_PER_HOUR=0 PARKME_WS_SOCKETS_PER_IP=0 PARKME_WS_OPS_PER_SEC=0 \
    PARKME_WS_OPS_PER_IP_PER_SEC=0 RUST_LOG=warn \
    "$BIN" serve "$@" >"$OUT/$name.server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 300); do
    curl -sf "127.0.0.1:$PORT/health/" >/dev/null && return 0
    sleep 0.1
  done
  echo "targets: the server ($name) did not start; see $OUT/$name.server.log" >&2
  exit 2
}

# probe FILE: /health/ and /metrics total times (ms), every 200 ms, until killed.
probe() {
  while :; do
    curl -s -o /dev/null -w 'health %{time_total}\n' "127.0.0.1:$PORT/health/" >>"$1" || true
    curl -s -o /dev/null -w 'metrics %{time_total}\n' "127.0.0.1:$PORT/metrics" >>"$1" || true
    sleep 0.2
  done
}

SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
VIOLATIONS=0

if [[ -z $ONLY || $ONLY == 1 ]]; then
  for run in idle json bincode; do
    start_server "t1-$run"
    rate=0
    encoding=$run
    if [[ $run == idle ]]; then
      rate=$RATE_IDLE
      encoding=bincode
    fi
    : >"$OUT/t1-$run.probe"
    probe "$OUT/t1-$run.probe" &
    PROBE=$!
    "$LOADTEST" --url "http://127.0.0.1:$PORT" --admin-token $ADMIN --jwt-secret $SECRET \
      --scenario steady --encoding "$encoding" --rate "$rate" --duration "${SECS}s" --seed 1 \
      --facilities 10 --spots 500 --sensors 100 --apps 100 --quiet \
      --report "$OUT/t1-$run.json" >"$OUT/t1-$run.log" 2>&1 || true
    kill "$PROBE" 2>/dev/null || true
    wait "$PROBE" 2>/dev/null || true
    stop_server
  done
  "$ROOT/bench/targets_report.py" t1 "$OUT" | tee -a "$SUMMARY" || VIOLATIONS=1
fi

if [[ -z $ONLY || $ONLY == 3 ]]; then
  TOKEN=$("$ROOT/bench/jwt.py" "$SECRET" wrk-user)
  start_server t3-expiring --demo
  TOKEN=$TOKEN FACILITIES=20 HOLD=1 wrk -t2 -c64 -d"${SECS}s" -s "$ROOT/bench/book.lua" \
    "http://127.0.0.1:$PORT" >"$OUT/t3-expiring.wrk" 2>&1
  stop_server
  start_server t3-held
  python3 "$ROOT/bench/million_spots.py" "http://127.0.0.1:$PORT" 100 10000 >"$OUT/t3-held.layout"
  # m000..m099 made; m0 + 01..99 books on m001..m099 (990,000 spots).
  TOKEN=$TOKEN PREFIX=m0 FACILITIES=99 HOLD=86400 UNIQUE=1 wrk -t2 -c64 -d"${SECS}s" \
    -s "$ROOT/bench/book.lua" "http://127.0.0.1:$PORT" >"$OUT/t3-held.wrk" 2>&1
  stop_server
  "$ROOT/bench/targets_report.py" t3 "$OUT" | tee -a "$SUMMARY"
fi

if [[ -z $ONLY || $ONLY == 4 ]]; then
  for n in $SIZES; do
    "$WS_BENCH" fanout --subscribers "$n" --events 30 >"$OUT/t4-parkme-$n.log" 2>&1
    "$WS_BENCH" fanout --relay --subscribers "$n" --events 30 >"$OUT/t4-relay-$n.log" 2>&1
  done
  "$ROOT/bench/targets_report.py" t4 "$OUT" "$SIZES" | tee -a "$SUMMARY"
fi

echo "raw outputs and summary.txt in $OUT"
exit $VIOLATIONS
