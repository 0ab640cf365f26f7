#!/usr/bin/env python3
# Mints an HS256 user token valid for a day: bench/jwt.py <secret> <sub>
import hmac,hashlib,base64,json,sys,time
def b(x): return base64.urlsafe_b64encode(x).rstrip(b'=').decode()
h=b(json.dumps({"alg":"HS256","typ":"JWT"}).encode()); p=b(json.dumps({"sub":sys.argv[2],"exp":int(time.time())+86400}).encode())
s=b(hmac.new(sys.argv[1].encode(),f"{h}.{p}".encode(),hashlib.sha256).digest()); print(f"{h}.{p}.{s}")
