"""Python clients other than requests: uploads BODY to URL RUNS times, one after the
other, with the standard library's urllib, httpx or aiohttp, or runs wget to do it.

Usage: upload_py.py urllib|httpx|aiohttp|wget URL BODY OUTDIR RUNS

As every client of `benches/real_servers.py`: prints "<run> <status> <seconds>" per
upload (the time to the whole answer; wget's includes its start, a few milliseconds)
and writes the answer's body to OUTDIR/<run>, or prints "<run> ERR <what>". urllib,
httpx and wget send the whole body before they read; aiohttp reads the answer while it
sends.
"""
import asyncio
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

lib, url, body_path, out, runs = sys.argv[1:6]
with open(body_path, "rb") as f:
    body = f.read()


def with_urllib():
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:  # a 413 is an HTTPError whose body is the page
        return e.code, e.read()


def with_httpx():
    import httpx
    with httpx.Client(timeout=30) as c:
        r = c.post(url, content=body)
        return r.status_code, r.content


async def with_aiohttp():
    import aiohttp
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        async with s.post(url, data=body) as r:
            return r.status, await r.read()


def with_wget(run):
    # wget exits 8 on a 413, having written the body it got; -S prints the status line.
    argv = ["wget", "-S", "-q", "-O", f"{out}/{run}", "--content-on-error", "--timeout=30",
            "--tries=1", f"--post-file={body_path}", url]
    err = subprocess.run(argv, capture_output=True, text=True).stderr
    codes = re.findall(r"^\s*HTTP/[\d.]+ (\d+)", err, re.M)
    if not codes:
        raise OSError(err.strip().replace("\n", " ")[-300:] or "no answer")
    with open(f"{out}/{run}", "rb") as f:
        return int(codes[-1]), f.read()


for run in range(int(runs)):
    start = time.monotonic()
    try:
        if lib == "wget":
            status, got = with_wget(run)
        elif lib == "aiohttp":
            status, got = asyncio.run(with_aiohttp())
        else:
            status, got = with_httpx() if lib == "httpx" else with_urllib()
        took = time.monotonic() - start
        with open(f"{out}/{run}", "wb") as f:
            f.write(got)
        print(run, status, took, flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is a result here
        print(run, "ERR", repr(e).replace("\n", " "), flush=True)
