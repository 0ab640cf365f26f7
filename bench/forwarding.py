#!/usr/bin/env python3
# Booking latency through the facility's owner vs through another node
# (which forwards it, contract §7 "any node"): three real nodes, one
# facility, N sequential bookings (then cancels, so spots stay free) by one
# client through each path, alternating; p50 and p99 of each.
#
#   bench/forwarding.py target/release/parkme [N=500]
import os, statistics, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import call, owner, start, token  # noqa: E402

binary = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
nodes = [start(binary, i) for i in range(3)]
try:
    status, _ = call(0, "PUT", "/v1/facilities/f1",
                     {"name": "bench", "zones": [{"id": "z1", "spots": [{"id": f"s{i:03}"} for i in range(100)]}]})
    assert status == 201, status
    while True:
        views = {owner(i) for i in range(3)}
        if len(views) == 1 and None not in views:
            break
        time.sleep(0.1)
    direct = int(views.pop()[1:])
    other = (direct + 1) % 3
    user = token("bench-user")
    times = {direct: [], other: []}
    for i in range(n):
        for via in (direct, other):
            started = time.perf_counter()
            status, body = call(via, "POST", "/v1/facilities/f1/bookings", {"plate": f"B{i}"}, user)
            took = time.perf_counter() - started
            assert status == 201, status
            times[via].append(took)
            assert call(via, "DELETE", f"/v1/bookings/{body['id']}", auth=user)[0] == 200
    def q(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000
    for name, via in (("direct (owner)", direct), ("through another node", other)):
        print(f"{name}: n={n} p50 {q(times[via], 0.5):.2f} ms, p99 {q(times[via], 0.99):.2f} ms")
    print(f"forwarding adds {q(times[other], 0.5) - q(times[direct], 0.5):.2f} ms at p50")
finally:
    for p in nodes:
        p.terminate()
    for p in nodes:
        p.wait()
