#!/usr/bin/env bash
# Soak: the loadtest `steady` scenario against the release binary for a
# long run (default 30 min), sampling the server once a minute: resident
# memory and open file descriptors (from /proc), live runtime tasks and
# the booking/sensor counters (from /metrics). Prints a table, writes it as
# CSV, and says whether the curves stayed flat after warm-up.
#
# usage: bench/soak.sh [MINUTES] [OUT_DIR]
# env:   SENSORS APPS FACILITIES SPOTS RATE (loadtest shape), PORT,
#        WARMUP (minutes not judged, default 5),
#        PARKME_BIN / PARKME_LOADTEST (default target/release/...)
#
# "Flat" is judged on the samples after WARMUP: resident memory may not
# rise more than 10 % above its first post-warm-up sample and the last
# third may not average above the middle third by more than 5 %; file
# descriptors and tasks may not end more than 5 % (and 20) above their
# post-warm-up median. Exit 0 when flat and the loadtest found no
# violation, 1 otherwise.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MINUTES=${1:-30}
OUT=${2:-$(mktemp -d -t parkme-soak.XXXXXX)}
PORT=${PORT:-18095}
WARMUP=${WARMUP:-5}
BIN=${PARKME_BIN:-$ROOT/target/release/parkme}
LOADTEST=${PARKME_LOADTEST:-$ROOT/target/release/parkme-loadtest}
ADMIN=soak-admin-token-0123456789abcdef
SECRET=soak-jwt-secret-0123456789abcdef0123
mkdir -p "$OUT/data"
[[ -x "$BIN" && -x "$LOADTEST" ]] || {
  echo "soak: build first: cargo build --release -p parkme-gateway -p parkme-loadtest" >&2
  exit 2
}

PARKME_DATA_DIR="$OUT/data" PARKME_ADMIN_TOKEN=$ADMIN PARKME_JWT_SECRET=$SECRET \
  PARKME_RATE_ANON_PER_HOUR=0 PARKME_RATE_USER_PER_HOUR=0 \
  PARKME_RATE_BOOKINGS_PER_HOUR=0 PARKME_WS_SOCKETS_PER_IP=0 PARKME_WS_OPS_PER_SEC=0 \
  PARKME_WS_OPS_PER_IP_PER_SEC=0 PARKME_LOG_FORMAT=json RUST_LOG=warn \
  "$BIN" serve --listen 127.0.0.1:$PORT >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -sf "127.0.0.1:$PORT/health/" >/dev/null && break; sleep 0.1; done
curl -sf "127.0.0.1:$PORT/health/" >/dev/null || { echo "soak: the server did not start" >&2; exit 2; }

"$LOADTEST" --url "http://127.0.0.1:$PORT" --admin-token $ADMIN --jwt-secret $SECRET \
  --scenario steady --duration "${MINUTES}m" --drain 30s --seed 7 \
  --facilities "${FACILITIES:-10}" --spots "${SPOTS:-500}" --sensors "${SENSORS:-100}" \
  --apps "${APPS:-100}" --rate "${RATE:-5000}" --report "$OUT/loadtest.json" --quiet \
  >"$OUT/loadtest.log" 2>&1 &
LOAD=$!

metric() { # family -> summed value
  awk -v f="$1" '$1 ~ "^"f"({|$)" { s += $NF } END { printf "%.0f", s }' "$OUT/metrics.txt"
}
CSV="$OUT/soak.csv"
echo "minute,rss_kib,fds,tasks,bookings_total,sensor_events_total" >"$CSV"
sample() {
  local minute=$1 rss fds
  rss=$(awk '/^VmRSS:/ {print $2}' /proc/$SERVER/status)
  fds=$(ls /proc/$SERVER/fd | wc -l)
  curl -sf "127.0.0.1:$PORT/metrics" >"$OUT/metrics.txt" || : >"$OUT/metrics.txt"
  echo "$minute,$rss,$fds,$(metric parkme_runtime_alive_tasks),$(metric parkme_bookings_total),$(metric parkme_sensor_events_total)" >>"$CSV"
  tail -1 "$CSV"
}
start=$(date +%s)
sample 0
for m in $(seq 1 "$MINUTES"); do
  while (( $(date +%s) < start + 60 * m )); do
    kill -0 $LOAD 2>/dev/null || break 2
    sleep 1
  done
  sample "$m"
done
set +e
wait $LOAD
load_rc=$?
set -e
echo "loadtest exit: $load_rc (0: no invariant broken); report $OUT/loadtest.json"

python3 - "$CSV" "$WARMUP" "$load_rc" <<'EOF'
import csv, statistics, sys
rows = [{k: int(v) for k, v in r.items()} for r in csv.DictReader(open(sys.argv[1]))]
warm, load_rc = int(sys.argv[2]), int(sys.argv[3])
after = [r for r in rows if r["minute"] >= warm]
ok = load_rc == 0
if len(after) < 3:
    print(f"soak: only {len(after)} samples after warm-up: not judged"); sys.exit(1)
rss = [r["rss_kib"] for r in after]
third = max(1, len(rss) // 3)
mid, last = statistics.mean(rss[third:2 * third]), statistics.mean(rss[-third:])
peak_rise = max(rss) / rss[0] - 1
print(f"RSS after warm-up: first {rss[0] / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB "
      f"(+{peak_rise * 100:.1f} %), middle third {mid / 1024:.1f} MiB, last third {last / 1024:.1f} MiB "
      f"({(last / mid - 1) * 100:+.1f} %)")
ok &= peak_rise <= 0.10 and last <= mid * 1.05
for name in ("fds", "tasks"):
    series = [r[name] for r in after]
    median = statistics.median(series)
    end = series[-1]
    flat = end <= median * 1.05 + 20
    print(f"{name}: median {median:.0f}, min {min(series)}, max {max(series)}, last {end}: "
          f"{'flat' if flat else 'GROWING'}")
    ok &= flat
minutes = after[-1]["minute"] - after[0]["minute"]
for name in ("bookings_total", "sensor_events_total"):
    rate = (after[-1][name] - after[0][name]) / max(1, minutes * 60)
    print(f"{name}: {rate:,.0f}/s after warm-up")
print("soak: FLAT" if ok else "soak: NOT FLAT (or the loadtest found a violation)")
sys.exit(0 if ok else 1)
EOF
