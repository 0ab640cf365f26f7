#!/usr/bin/env python3
# Shared by the cluster benches (bench/failover.py, bench/forwarding.py):
# start real `parkme` nodes on one CQL keyspace and one Redis prefix of
# their own, talk to them over HTTP, sign user tokens.
#
# Needs the CQL server and Redis of scripts/test (PARKME_TEST_CQL,
# PARKME_TEST_REDIS; defaults 127.0.0.1:9042 and redis://127.0.0.1:6399).
import json, os, signal, statistics, subprocess, sys, time, urllib.request, urllib.error
import base64, hashlib, hmac

cql = os.environ.get("PARKME_TEST_CQL", "127.0.0.1:9042")
redis = os.environ.get("PARKME_TEST_REDIS", "redis://127.0.0.1:6399")
space = f"parkme_bench_{int(time.time())}_{os.getpid()}"
ADMIN, JWT = "bench-admin-token-0123456789", "bench-jwt-secret-0123456789"
ports = [18301, 18302, 18303]


def token(sub):
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=")
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": sub, "exp": int(time.time()) + 86400}).encode())
    sig = b64(hmac.new(JWT.encode(), head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


def start(binary, i, lease_ms="5000"):
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


