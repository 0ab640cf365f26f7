#!/usr/bin/env python3
# Times layout replaces of a 10-zone, 5,000-spot facility in which every zone
# changes, on a fresh embedded data dir: bench/relayout.py target/release/parkme
import json, subprocess, time, urllib.request, tempfile, os, sys, statistics
binary = sys.argv[1]
d = tempfile.mkdtemp()
env = dict(os.environ, PARKME_DATA_DIR=d, PARKME_LISTEN="127.0.0.1:18181", PARKME_ADMIN_TOKEN="T", PARKME_JWT_SECRET="S", RUST_LOG="warn",
           PARKME_RATE_ANON_PER_HOUR="0", PARKME_RATE_USER_PER_HOUR="0", PARKME_RATE_BOOKINGS_PER_HOUR="0")
p = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = "http://127.0.0.1:18181"
for _ in range(200):
    try:
        urllib.request.urlopen(base + "/health/"); break
    except Exception: time.sleep(0.05)
def layout(extra):
    zones = [{"id": f"Z{z}", "spots": [{"id": f"Z{z}-{i}"} for i in range(500 + extra)]} for z in range(10)]
    return {"name": "bench", "zones": zones}
def put(doc):
    req = urllib.request.Request(base + "/v1/facilities/f1", data=json.dumps(doc).encode(), method="PUT",
                                 headers={"Authorization": "Bearer T", "Content-Type": "application/json"})
    t = time.perf_counter(); urllib.request.urlopen(req).read(); return time.perf_counter() - t
put(layout(0))
times = [put(layout(i % 2)) for i in range(1, 41)]
p.terminate(); p.wait()
print(f"10 zones x 500-501 spots, every zone changed: n={len(times)} mean {statistics.mean(times)*1000:.1f} ms, p50 {statistics.median(times)*1000:.1f} ms, max {max(times)*1000:.1f} ms")
