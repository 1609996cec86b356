#!/usr/bin/env python3
"""The crate's cost on ordinary traffic: a real load generator against the example's
axum server, plain and with `GracefulListener` + `AnnounceCloseLayer`.

    python3 benches/load.py [--rounds N] [--seconds S] [--only TEXT] [--a-a]

`GET /` (a small page), 50 connections per server, on loopback: wrk over HTTP/1.1
with keep-alive and with `Connection: close` (every request opens and closes a
connection), h2load over h2 (prior knowledge). The two servers run side by side on
the same CPU and each round loads both at once, one load generator per server on the
other CPUs (with two or more CPUs and `taskset`): whatever slows the machine during a
round (another guest, a frequency change) slows both, and the scheduler shares the
servers' CPU between them, so that the one that costs more per request serves fewer.
(Run one after the other, the same pair of servers moved by up to ±20 % between
back-to-back runs on a 2-vCPU VM, more than the cost being measured.) N rounds
(default 9) of S seconds (default 4) per setting; per setting: requests per second
and latency (median, p99) of the median round, and two ratios graceful / plain, each
the median over the rounds: requests per second, and the servers' CPU time per
request (their threads' `schedstat`), which holds even where the load generators
rather than the servers set the pace. As root it installs wrk and h2load (Debian's
`wrk`, `nghttp2-client`) when missing; otherwise what is missing is skipped with its
name. `--only TEXT` runs only the settings whose name contains TEXT (`--only h2`);
`--a-a` serves the plain server in both places (an A/A test: what the ratios read
when nothing differs). Nothing is asserted: the figures are for reading.
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import time

from real_servers import cpu_seconds  # the servers' threads' CPU time (schedstat)

# The lab crate (this file is in its benches/), and the workspace root with `target/`.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKSPACE = os.path.dirname(ROOT)
EXAMPLE = os.path.join(WORKSPACE, "target", "release", "examples", "axum_upload_limit")


def arg(flag, default):
    return int(sys.argv[sys.argv.index(flag) + 1]) if flag in sys.argv else default


ROUNDS = arg("--rounds", 9)
# `--a-a`: both servers plain, to read the method's own bias and noise (an A/A test).
A_A = "--a-a" in sys.argv
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
    return cmd


def wrk_result(out, _url):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    return rps, p50, p99


def h2log(url):
    """Where h2load logs each request's time for the server at `url`."""
    return os.path.join(WORKSPACE, "target", f"h2load-{url.rstrip('/').rsplit(':', 1)[1]}.log")


def h2load(url):
    return LOAD_CPUS + ["h2load", "-c50", "-m1", f"-D{SECONDS}", f"--log-file={h2log(url)}",
                        url]


def h2load_result(out, url):
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    # Per request: start (us since the epoch), status, microseconds to the response's end.
    with open(h2log(url)) as f:
        times = sorted(int(line.split("\t")[2]) / 1000 for line in f if line.strip())
    return rps, times[len(times) // 2], times[min(len(times) - 1, len(times) * 99 // 100)]


def round_at_once(servers, pids, command, result, k):
    """Loads every server at once, the load generators started in an order that
    rotates with the round `k`; per server (requests/s, latency, latency, CPU s per
    request)."""
    before = {n: cpu_seconds([pids[n]]) for n in servers}
    urls = {n: f"http://127.0.0.1:{port}/" for n, port in servers.items()}
    names = list(servers)
    names = names[k % len(names):] + names[:k % len(names)]
    loads = {n: subprocess.Popen(command(urls[n]), stdout=subprocess.PIPE, text=True)
             for n in names}
    outs = {n: load.communicate()[0] for n, load in loads.items()}
    got = {}
    for n in servers:
        rps, a, b = result(outs[n], urls[n])
        cpu = cpu_seconds([pids[n]]) - before[n]
        got[n] = (rps, a, b, cpu / max(rps * SECONDS, 1))
    return got


# Rounds per pair of server processes: each pair is fresh, and pairs alternate which
# server takes which port and starts first (an A/A test read 0.99x and 1.02x over 45
# rounds of one pair each: a process's own placement outweighed a 2 % difference).
ROUNDS_PER_PAIR = 3


def start_pair(j):
    """The `j`th pair of servers: (ports, processes, pids), by name."""
    names = ["plain", "graceful"] if j % 2 == 0 else ["graceful", "plain"]
    servers = {n: port for n, port in zip(names, (8301, 8302))}
    procs = {n: subprocess.Popen(SERVER_CPUS + [EXAMPLE, "--port", str(servers[n])]
                                 + (["--graceful"] if n == "graceful" and not A_A else []),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for n in names}
    time.sleep(1)
    return servers, procs, {n: p.pid for n, p in procs.items()}


def stop(procs):
    for p in procs.values():
        p.terminate()
        p.wait()


def main():
    install_missing()
    subprocess.run(["cargo", "build", "-q", "--release", "--example", "axum_upload_limit",
                    "--features", "axum"], cwd=ROOT, check=True)
    settings = []
    if shutil.which("wrk"):
        settings += [("HTTP/1.1 keep-alive (wrk)", lambda u: wrk(u, False), wrk_result),
                     ("HTTP/1.1 Connection: close (wrk)", lambda u: wrk(u, True),
                      wrk_result)]
    else:
        print("SKIP: wrk is not installed", file=sys.stderr)
    if shutil.which("h2load"):
        settings.append(("h2 (h2load)", h2load, h2load_result))
    else:
        print("SKIP: h2load is not installed", file=sys.stderr)
    pinned = (f"servers side by side on CPU {SERVER_CPUS[-1]}, load on CPU "
              f"{LOAD_CPUS[-1]}" if SERVER_CPUS else "not pinned")
    print(f"{ROUNDS} rounds of {SECONDS} s per setting, both servers loaded at once "
          f"({pinned}), a fresh pair of servers every {ROUNDS_PER_PAIR} rounds; the "
          "median round by requests/s; the ratios: medians over the rounds"
          + (" (A/A: both servers plain)" if A_A else "") + "\n")
    print("| setting | plain req/s | graceful req/s | req/s ratio | CPU per request "
          "ratio | plain latency ms (p50 / p99) | graceful latency ms (p50 / p99) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else ""
    for name, command, result in settings:
        if only not in name:
            continue
        rounds = []
        for j in range(-(-ROUNDS // ROUNDS_PER_PAIR)):
            servers, procs, pids = start_pair(j)
            try:
                for k in range(min(ROUNDS_PER_PAIR, ROUNDS - len(rounds))):
                    rounds.append(round_at_once(servers, pids, command, result, k))
            finally:
                stop(procs)
        med = {n: sorted(r[n] for r in rounds)[ROUNDS // 2] for n in ("plain", "graceful")}
        p, g = med["plain"], med["graceful"]
        ratio = statistics.median(r["graceful"][0] / r["plain"][0] for r in rounds)
        cost = statistics.median(r["graceful"][3] / r["plain"][3] for r in rounds)
        print(f"| {name} | {p[0]:.0f} | {g[0]:.0f} | {ratio:.3f}× | {cost:.3f}× | "
              f"{p[1]:.2f} / {p[2]:.2f} | {g[1]:.2f} / {g[2]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
