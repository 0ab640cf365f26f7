import json, sys, urllib.request, time
base = sys.argv[1]; n_fac = int(sys.argv[2]); per = int(sys.argv[3])
t0 = time.time()
for f in range(n_fac):
    zones = []
    for z in range(10):
        zones.append({"id": f"z{z}", "spots": [{"id": f"z{z}-{i}"} for i in range(per // 10)]})
    body = json.dumps({"name": f"F{f}", "zones": zones}).encode()
    req = urllib.request.Request(f"{base}/v1/facilities/m{f:03d}", data=body, method="PUT",
        headers={"Authorization": "Bearer adm", "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
print(f"created {n_fac * per} spots in {time.time() - t0:.1f} s")
