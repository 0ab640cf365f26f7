#!/usr/bin/env python3
# Failover time of a cluster (contract §7): three real nodes on one CQL
# keyspace and one Redis prefix of their own; ROUNDS times, the owner of a
# facility is killed with SIGKILL while a client books through a survivor;
# the figure is the time from the kill to the first acknowledged booking on
# the survivor. The killed node is started again (a new incarnation) and
# the cluster settles before the next round.
#
#   bench/failover.py target/debug/parkme [ROUNDS=10] [LEASE_MS=5000]
import os, signal, statistics, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import call, owner, start, token  # noqa: E402

binary = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
lease_ms = sys.argv[3] if len(sys.argv) > 3 else "5000"

nodes = [start(binary, i, lease_ms) for i in range(3)]
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
    nodes[victim] = start(binary, victim, lease_ms)
for p in nodes:
    p.terminate()
for p in nodes:
    p.wait()
print(f"failover, kill -9 to first acknowledged booking on a survivor (PARKME_LEASE_MS={lease_ms}, n={len(times)}): "
      f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
