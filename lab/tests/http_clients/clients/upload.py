"""Python requests client: uploads BODY to URL RUNS times, one after the other.

Usage: upload.py URL BODY OUTDIR RUNS [CAFILE]

Like every client of these tests: prints "<run> <status> <seconds>" per upload (the
time to the whole response) and writes the response body to OUTDIR/<run>, or prints
"<run> ERR <what>". `requests` sends the whole
body before it reads anything: the server must discard the rest of the upload for it
to see an early answer.

An ERR line ends with the upload's timing on `time.monotonic()` (the clock of the
server's close reports in the test's failure), its local address (the server's reports
name it) and how far the request got: whether the body's send returned, and when. A
client stuck in its upload and one waiting for the answer both fail with "timed out".
"""
import http.client
import sys
import time

import requests

# The upload in progress: its local address, bytes sent, when the last send returned.
progress = {}
_send = http.client.HTTPConnection.send


def send(self, data):
    if self.sock is not None and "from" not in progress:
        progress["from"] = "%s:%d" % self.sock.getsockname()[:2]
    _send(self, data)
    progress["sent"] = progress.get("sent", 0) + len(data)
    progress["at"] = time.monotonic()


http.client.HTTPConnection.send = send

url, body_path, out, runs = sys.argv[1:5]
verify = sys.argv[5] if len(sys.argv) > 5 else True
with open(body_path, "rb") as f:
    body = f.read()
for run in range(int(runs)):
    progress.clear()
    start = time.monotonic()
    try:
        # A new session (and connection) per upload, as `requests.post` does.
        r = requests.post(url, data=body, verify=verify, timeout=30)
        took = time.monotonic() - start
        with open(f"{out}/{run}", "wb") as f:
            f.write(r.content)
        print(run, r.status_code, took, flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is a result here
        failed = time.monotonic()
        at = progress.get("at")
        timing = (
            f"started t={start:.3f}, failed t={failed:.3f} ({failed - start:.3f} s)"
            f" from {progress.get('from', '?')}; sent {progress.get('sent', 0)} bytes"
            f" of a {len(body)}-byte body and its head"
            + ("" if at is None else f", last send returned t={at:.3f}")
        )
        print(run, "ERR", repr(e).replace("\n", " "), f"[{timing}]", flush=True)
