#!/usr/bin/env python3
"""The crate's cost on ordinary traffic: a real load generator against the example's
axum server, plain and with `GracefulListener` + `AnnounceCloseLayer`.

    python3 benches/load.py [--rounds N] [--seconds S]

`GET /` (a small page), 50 connections, on loopback: wrk over HTTP/1.1 with
keep-alive and with `Connection: close` (every request opens and closes a
connection), h2load over h2 (prior knowledge). The two servers alternate, N rounds
each (default 9, of 4 s), in pairs; per setting: requests per second and latency (median,
p99) of the median round, and the ratio graceful / plain as the median of the pairs'
ratios (each pair ran back to back, so a slow moment of the machine moves both). With
two or more CPUs and `taskset`, the servers run on the last CPU and the load
generator on the others, so that they do not take turns on one core. As root it installs wrk and h2load
(Debian's `wrk`, `nghttp2-client`) when missing; otherwise what is missing is skipped
with its name. Nothing is asserted: the figures are for reading.
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "target", "release", "examples", "axum_upload_limit")


def arg(flag, default):
    return int(sys.argv[sys.argv.index(flag) + 1]) if flag in sys.argv else default


ROUNDS = arg("--rounds", 9)
SECONDS = arg("--seconds", 4)


def install_missing():
    missing = [pkg for cmd, pkg in (("wrk", "wrk"), ("h2load", "nghttp2-client"))
               if shutil.which(cmd) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq"] + missing, env=env,
                       stdout=subprocess.DEVNULL)


def ms(text):
    """wrk's latency ("812.00us", "1.20ms", "2.01s") in milliseconds."""
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def pinning():
    """(the servers' taskset prefix, the load generator's), or empty ones."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return [], []
    rest = ",".join(str(c) for c in cpus[:-1])
    return ["taskset", "-c", str(cpus[-1])], ["taskset", "-c", rest]


SERVER_CPUS, LOAD_CPUS = pinning()


def wrk(url, close):
    cmd = LOAD_CPUS + ["wrk", "-t1", "-c50", f"-d{SECONDS}s", "--latency", url]
    if close:
        cmd[len(LOAD_CPUS) + 1:len(LOAD_CPUS) + 1] = ["-H", "Connection: close"]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    return rps, p50, p99


def h2load(url):
    cmd = LOAD_CPUS + ["h2load", "-c50", "-m1", f"-D{SECONDS}", url]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    # "time for request:  min  max  mean  sd  +/- sd"
    line = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    return rps, ms(line.group(3)), ms(line.group(2))


def main():
    install_missing()
    subprocess.run(["cargo", "build", "-q", "--release", "--example", "axum_upload_limit",
                    "--features", "axum"], cwd=ROOT, check=True)
    servers = {"plain": 8301, "graceful": 8302}
    procs = [subprocess.Popen(SERVER_CPUS + [EXAMPLE, "--port", str(p)] + (["--graceful"] if n == "graceful"
                                                            else []),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for n, p in servers.items()]
    time.sleep(1)
    settings = []
    if shutil.which("wrk"):
        settings += [("HTTP/1.1 keep-alive (wrk)", lambda u: wrk(u, False)),
                     ("HTTP/1.1 Connection: close (wrk)", lambda u: wrk(u, True))]
    else:
        print("SKIP: wrk is not installed", file=sys.stderr)
    if shutil.which("h2load"):
        settings.append(("h2 (h2load; latency: mean, max)", h2load))
    else:
        print("SKIP: h2load is not installed", file=sys.stderr)
    try:
        pinned = (f"servers on CPU {SERVER_CPUS[-1]}, load on CPU {LOAD_CPUS[-1]}"
                  if SERVER_CPUS else "not pinned")
        print(f"{ROUNDS} rounds of {SECONDS} s per server and setting, alternating "
              f"({pinned}); the median round by requests/s; the ratio: median of the "
              "pairs' ratios\n")
        print("| setting | plain req/s | graceful req/s | ratio | plain latency ms "
              "(p50 / p99) | graceful latency ms (p50 / p99) |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, run in settings:
            got = {n: [] for n in servers}
            for r in range(ROUNDS):
                order = list(servers) if r % 2 == 0 else list(reversed(servers))
                for n in order:
                    got[n].append(run(f"http://127.0.0.1:{servers[n]}/"))
            med = {n: sorted(v)[len(v) // 2] for n, v in got.items()}
            p, g = med["plain"], med["graceful"]
            ratio = statistics.median(gr[0] / pr[0] for pr, gr in zip(got["plain"],
                                                                      got["graceful"]))
            print(f"| {name} | {p[0]:.0f} | {g[0]:.0f} | {ratio:.3f}× | "
                  f"{p[1]:.2f} / {p[2]:.2f} | {g[1]:.2f} / {g[2]:.2f} |", flush=True)
    finally:
        for p in procs:
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()
