#!/usr/bin/env python3
"""The tables of bench/targets.sh, from the raw outputs it keeps.

usage: bench/targets_report.py t1|t3|t4 OUT_DIR [FANOUT_SIZES]
t1 exits 1 when a loadtest run reported a violated invariant.
"""
import json
import re
import sys

NAN = float("nan")


def t1(out):
    def load(run):
        with open(f"{out}/t1-{run}.json") as f:
            return json.load(f)

    def probe(run):
        lat = {"health": [], "metrics": []}
        with open(f"{out}/t1-{run}.probe") as f:
            for line in f:
                kind, t = line.split()
                lat[kind].append(float(t) * 1000)
        return {k: (max(v) if v else NAN) for k, v in lat.items()}

    base = load("idle")["booking_latency_ms"]["p99"]
    print("target 1: booking p99 under a sensor flood <= 3 x idle; health and metrics <= 50 ms")
    print(f"  {'run':<9}{'sensor ev/s':>12}{'bookings/s':>11}{'book p50':>10}{'book p99':>10}"
          f"{'x idle':>8}{'health max':>12}{'metrics max':>12}  invariants")
    bad = 0
    for run in ("idle", "json", "bincode"):
        r = load(run)
        b = r["booking_latency_ms"]
        p = probe(run)
        ratio = b["p99"] / base if base else NAN
        if r["invariants_ok"]:
            verdict = "ok"
        else:
            bad += 1
            verdict = "VIOLATED: " + "; ".join(r["violations"][:3])
        print(f"  {run:<9}{r['sensor_events_per_sec']:>12.0f}{r['bookings_per_sec']:>11.0f}"
              f"{b['p50']:>8.1f}ms{b['p99']:>8.1f}ms{ratio:>8.2f}"
              f"{p['health']:>10.1f}ms{p['metrics']:>10.1f}ms  {verdict}")
    return 1 if bad else 0


def t3(out):
    print("target 3: durable bookings over HTTP, wrk -c64: >= 30k/s with p99 <= 5 ms")
    print(f"  {'run':<10}{'bookings/s':>11}{'/ 30k':>7}{'p50':>9}{'p99':>9}{'/ 5 ms':>8}"
          f"{'p99.9':>9}  non-2xx")
    for run in ("expiring", "held"):
        with open(f"{out}/t3-{run}.wrk") as f:
            text = f.read()
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
        q = {k: float(v) for k, v in re.findall(r"(p50|p99|p99\.9)=([\d.]+)ms", text)}
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        print(f"  {run:<10}{rps:>11.0f}{rps / 30000:>7.2f}{q['p50']:>7.2f}ms{q['p99']:>7.2f}ms"
              f"{q['p99'] / 5:>8.2f}{q['p99.9']:>7.2f}ms  {non2xx.group(1) if non2xx else 0}")
    return 0


def t4(out, sizes):
    def parse(kind, n):
        with open(f"{out}/t4-{kind}-{n}.log") as f:
            text = f.read()
        cpu = float(re.search(r"server ([\d.]+) µs per delivery", text).group(1))
        lat = re.search(r"latency from sensor send p50 ([\d.]+) ms, p99 ([\d.]+) ms", text)
        done = int(re.search(r"(\d+) subscribers complete", text).group(1))
        return cpu, float(lat.group(1)), float(lat.group(2)), done

    def div(a, b):
        return a / b if b else NAN

    print("target 4: fan-out, server CPU per delivery <= 5 us; parkme over the minimal relay (ceiling)")
    print(f"  {'subscribers':>11}{'parkme us':>11}{'relay us':>10}{'ratio':>7}"
          f"{'parkme p50/p99 ms':>20}{'relay p50/p99 ms':>19}{'p99 ratio':>10}  complete")
    for n in sizes:
        pc, p50, p99, pd = parse("parkme", n)
        rc, r50, r99, rd = parse("relay", n)
        print(f"  {n:>11}{pc:>11.1f}{rc:>10.1f}{div(pc, rc):>7.2f}"
              f"{f'{p50:.1f} / {p99:.1f}':>20}{f'{r50:.1f} / {r99:.1f}':>19}{div(p99, r99):>10.2f}"
              f"  {pd} / {rd}")
    return 0


if __name__ == "__main__":
    part, out = sys.argv[1], sys.argv[2]
    if part == "t1":
        sys.exit(t1(out))
    if part == "t3":
        sys.exit(t3(out))
    if part == "t4":
        sys.exit(t4(out, sys.argv[3].split()))
    sys.exit(f"unknown part {part}")
