#!/usr/bin/env python3
# Failover time of a cluster (contract §7): three real nodes on one CQL
# keyspace and one Redis prefix of their own; ROUNDS times, the owner of a
# facility is killed with SIGKILL while a client books through a survivor;
# the figure is the time from the kill to the first acknowledged booking on
# the survivor. The killed node is started again (a new incarnation) and
# the cluster settles before the next round.
#
#   bench/failover.py target/debug/parkme [ROUNDS=10] [LEASE_MS=5000]
#
# Needs the CQL server and Redis of scripts/test (PARKME_TEST_CQL,
# PARKME_TEST_REDIS; defaults 127.0.0.1:9042 and redis://127.0.0.1:6399).
import json, os, signal, statistics, subprocess, sys, time, urllib.request, urllib.error
import base64, hashlib, hmac

binary = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
lease_ms = sys.argv[3] if len(sys.argv) > 3 else "5000"
cql = os.environ.get("PARKME_TEST_CQL", "127.0.0.1:9042")
redis = os.environ.get("PARKME_TEST_REDIS", "redis://127.0.0.1:6399")
space = f"pm_failover_{os.getpid()}_{int(time.time())}"
ADMIN, JWT = "bench-admin-token-0123456789", "bench-jwt-secret-0123456789"
ports = [18301, 18302, 18303]


def token(sub):
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=")
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": sub, "exp": int(time.time()) + 86400}).encode())
    sig = b64(hmac.new(JWT.encode(), head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


def start(i):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARKME_")}
    env.update(PARKME_LISTEN=f"127.0.0.1:{ports[i]}", PARKME_STORAGE=f"scylla://{cql}/{space}",
               PARKME_REDIS_URL=redis, PARKME_REDIS_PREFIX=f"{space}:", PARKME_NODE_ID=f"n{i}",
               PARKME_CLUSTER_SECRET="bench-cluster-secret-0123456789", PARKME_LEASE_MS=lease_ms,
               PARKME_ADMIN_TOKEN=ADMIN, PARKME_JWT_SECRET=JWT, RUST_LOG="warn",
               PARKME_RATE_ANON_PER_HOUR="0", PARKME_RATE_USER_PER_HOUR="0", PARKME_RATE_BOOKINGS_PER_HOUR="0")
    p = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{ports[i]}/health/", timeout=2)
            return p
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"node n{i} did not start")


def call(i, method, path, body=None, auth=ADMIN, timeout=30):
    req = urllib.request.Request(f"http://127.0.0.1:{ports[i]}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {auth}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def owner(i):
    status, info = call(i, "GET", "/v1/cluster")
    if status != 200:
        return None
    for f in info["facilities"]:
        if f["id"] == "f1":
            return f["owner"]
    return None


nodes = [start(i) for i in range(3)]
spots = [{"id": f"s{i:04}"} for i in range(5000)]
status, _ = call(0, "PUT", "/v1/facilities/f1", {"name": "bench", "zones": [{"id": "z1", "spots": spots}]})
assert status == 201, status
user = token("bench-user")
times = []
for r in range(rounds):
    # Settled: every node names the same owner, unchanged for two leases
    # (a restarted node takes its share back through a handoff first).
    stable_since, last = time.perf_counter(), None
    while True:
        views = {owner(i) for i in range(3)}
        now = time.perf_counter()
        if len(views) != 1 or None in views or views != last:
            stable_since, last = now, views
        elif now - stable_since >= 2 * int(lease_ms) / 1000:
            break
        time.sleep(0.1)
    victim = int(last.pop()[1:])
    survivor = (victim + 1) % 3
    # A booking through the survivor succeeds before the kill.
    assert call(survivor, "POST", "/v1/facilities/f1/bookings", {"plate": f"PRE{r}"}, user)[0] == 201
    killed = time.perf_counter()
    nodes[victim].send_signal(signal.SIGKILL)
    nodes[victim].wait()
    while True:
        status, _ = call(survivor, "POST", "/v1/facilities/f1/bookings", {"plate": f"POST{r}"}, user)
        if status == 201:
            break
        time.sleep(0.01)
    took = time.perf_counter() - killed
    times.append(took)
    print(f"round {r + 1}: owner n{victim} killed; first booking through n{survivor} after {took * 1000:.0f} ms", flush=True)
    nodes[victim] = start(victim)
for p in nodes:
    p.terminate()
for p in nodes:
    p.wait()
print(f"failover, kill -9 to first acknowledged booking on a survivor (PARKME_LEASE_MS={lease_ms}, n={len(times)}): "
      f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
