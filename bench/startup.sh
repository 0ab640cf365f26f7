#!/bin/bash
# Start-up with 1,000,000 spots: creates 100 facilities x 10 zones x 1,000
# spots through the API, stops the engine (SIGTERM), starts it again and
# times it until /health/ answers 200.
# usage: bench/startup.sh <embedded|scylla://host:9042/keyspace> [data dir]
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STORAGE=${1:-embedded}; DIR=${2:-$(mktemp -d)}; PORT=${PORT:-18090}
rm -rf $DIR; mkdir -p $DIR
run() { (cd $DIR && PARKME_STORAGE=$STORAGE PARKME_DATA_DIR=$DIR PARKME_ADMIN_TOKEN=adm PARKME_JWT_SECRET=sec RUST_LOG=info PARKME_LOG_FORMAT=json nohup "$ROOT/target/release/parkme" serve --listen 127.0.0.1:$PORT >> $DIR/log 2>&1 &); }
run; for i in $(seq 1 300); do curl -sf localhost:$PORT/health/ >/dev/null && break; sleep 0.1; done
python3 "$(dirname "$0")/million_spots.py" http://127.0.0.1:$PORT 100 10000
kill -TERM $(pgrep -f "listen 127.0.0.1:$PORT"); for i in $(seq 1 100); do pgrep -f "listen 127.0.0.1:$PORT" >/dev/null || break; sleep 0.1; done
s=$(date +%s%N); run; for i in $(seq 1 3000); do curl -sf localhost:$PORT/health/ >/dev/null && break; sleep 0.02; done; e=$(date +%s%N)
echo "restart to healthy: $(( (e-s)/1000000 )) ms"; grep "state recovered" $DIR/log | tail -1
curl -s localhost:$PORT/v1/facilities | python3 -c "import json,sys; d=json.load(sys.stdin)['facilities']; print(len(d), 'facilities', sum(f['totals']['total'] for f in d), 'spots')"
ps -o rss= -p $(pgrep -f "listen 127.0.0.1:$PORT") | awk '{print "RSS", $1/1024, "MiB"}'
kill -TERM $(pgrep -f "listen 127.0.0.1:$PORT")
