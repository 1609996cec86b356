"""Python requests client: uploads BODY to URL RUNS times, one after the other.

Usage: upload.py URL BODY OUTDIR RUNS [CAFILE]

Like every client of these tests: prints "<run> <status> <seconds>" per upload (the
time to the whole response) and writes the response body to OUTDIR/<run>, or prints
"<run> ERR <what>". `requests` sends the whole
body before it reads anything: the server must discard the rest of the upload for it
to see an early answer.
"""
import sys
import time

import requests

url, body_path, out, runs = sys.argv[1:5]
verify = sys.argv[5] if len(sys.argv) > 5 else True
with open(body_path, "rb") as f:
    body = f.read()
for run in range(int(runs)):
    try:
        # A new session (and connection) per upload, as `requests.post` does.
        start = time.monotonic()
        r = requests.post(url, data=body, verify=verify, timeout=30)
        took = time.monotonic() - start
        with open(f"{out}/{run}", "wb") as f:
            f.write(r.content)
        print(run, r.status_code, took, flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is a result here
        print(run, "ERR", repr(e).replace("\n", " "), flush=True)
