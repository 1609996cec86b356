#!/usr/bin/env python3
"""The early-413 workload against real servers, with real clients.

Each server answers POST /upload with a 413 and a 256 KiB page (the
`axum_upload_limit` example's) without reading the upload: nginx
(`client_max_body_size`, `error_page 413`, `lingering_close` on), HAProxy
(`http-request deny`), Go's net/http, plain axum and axum with the crate
(`GracefulListener`, `AnnounceCloseLayer`, `GracefulConnectInfo`). Clients: curl,
Python requests, Go net/http, Node fetch and headless Chromium (`tests/http_clients/clients/`; Chromium
with one uploader only: a browser per uploader does not fit two cores), at 1, 20 and
200 uploads at once on loopback (10 MB each) and over a 20 Mbit/s link through a
router namespace (1 and 20 with 2 MB each, 200 with 256 KB each; root only). Per cell:
whole 413s, time to the whole answer (median, p99, as the client measures it) and
server CPU per upload (`/proc/PID/task/*/schedstat` of the server's processes, before
and after each server's turn). All servers run at once; a cell gives them its uploads
in rounds (one uploader: 2 rounds of 5 uploads; 20: 2 rounds; 200: 1), one server
after the other, the order rotating from round to round.

    python3 benches/real_servers.py [--quick] [--link-only | --loopback-only]
        [--rounds N] [--link-queue BYTES] [--more-clients] [--server NAME]... [--client NAME]... [--at-once N]...

`--rounds N` gives every picked cell N rounds (a closer look at a few cells).
`--link-queue BYTES` sets the router's queue (256 KB by default): 200 flows share a
20 Mbit/s link with less than one segment each per round trip through a 256 KB queue,
the regime where TCP's losses become retransmission timeouts.
`--more-clients` adds clients the tests do not use, with 1 and 20 uploaders (`benches/real/`):
wget, Python's urllib, httpx and aiohttp, Ruby's Net::HTTP, Perl's LWP, Java's
HttpClient and HttpURLConnection. aiohttp and LWP read the answer while they send (over
the link it comes in 0.1-0.3 s); the others send everything first (0.8 s for 2 MB).

As root it installs what is missing from Debian's packages, PyPI and npm
(nginx-light, haproxy, golang-go, nodejs, npm, chromium, curl, requests,
playwright-core); otherwise what is missing is skipped with its name, and so is the
link. Nothing here is asserted: the figures are for reading
(the correctness of the crate's cells is tested in `tests/http_clients/`).
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import time

# The lab crate (this file is in its benches/), and the workspace root with `target/`.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKSPACE = os.path.dirname(ROOT)
WORK = os.path.join(WORKSPACE, "target", "real_servers")
CLIENTS = os.path.join(ROOT, "tests", "http_clients", "clients")
PLAYWRIGHT = os.path.join(CLIENTS, "node_modules", "playwright-core")
QUICK = "--quick" in sys.argv
LINK_ONLY = "--link-only" in sys.argv
LOOPBACK_ONLY = "--loopback-only" in sys.argv
MORE = "--more-clients" in sys.argv
REAL = os.path.join(ROOT, "benches", "real")
# The clients of `--more-clients`: name -> (command line before URL BODY OUTDIR RUNS,
# a command that succeeds when the client can run, where it comes from: (apt | pip,
# package)).
PY = os.path.join(REAL, "upload_py.py")
JDK = (["javac", "-version"], ("apt", "default-jdk-headless"))
MORE_CLIENTS = {
    "wget": (["python3", PY, "wget"], ["wget", "--version"], ("apt", "wget")),
    "Python urllib": (["python3", PY, "urllib"], ["python3", "-c", "import urllib"], None),
    "Python httpx": (["python3", PY, "httpx"], ["python3", "-c", "import httpx"],
                     ("pip", "httpx")),
    "Python aiohttp": (["python3", PY, "aiohttp"], ["python3", "-c", "import aiohttp"],
                       ("pip", "aiohttp")),
    "Ruby Net::HTTP": (["ruby", os.path.join(REAL, "upload.rb")],
                       ["ruby", "-rnet/http", "-e", "1"], ("apt", "ruby")),
    "Perl LWP": (["perl", os.path.join(REAL, "upload.pl")],
                 ["perl", "-MLWP::UserAgent", "-e", "1"], ("apt", "libwww-perl")),
    "Java HttpClient": (["java", os.path.join(REAL, "Upload.java"), "httpclient"], *JDK),
    "Java HttpURLConnection": (["java", os.path.join(REAL, "Upload.java"),
                                "urlconnection"], *JDK),
}


def succeeds(argv):
    """Whether `argv` runs and succeeds."""
    try:
        return subprocess.run(argv, capture_output=True).returncode == 0
    except OSError:
        return False


def picked(flag):
    """The values given after each `flag` (`--server nginx --server 'axum + crate'`)."""
    return [sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == flag]
PAGE_LEN = 256 * 1024
# 200 uploads at once over the 20 Mbit/s link: 256 KB each (200 x 2 MB would keep the
# link busy for 160 s per cell).
LINK_CROWD_SIZE = 256_000
# The router's queue toward each side, bytes (`--link-queue`).
LINK_QUEUE = int((picked("--link-queue") or ["262144"])[-1])


def page():
    body = bytearray(ord("a") + i % 26 for i in range(PAGE_LEN))
    body[-1] = ord("\n")
    return bytes(body)


def have(cmd):
    return shutil.which(cmd) is not None


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def install_missing():
    """As root, installs the servers and clients that are missing (Debian, PyPI)."""
    wanted = {"nginx": "nginx-light", "haproxy": "haproxy", "go": "golang-go",
              "node": "nodejs", "npm": "npm", "chromium": "chromium", "curl": "curl"}
    missing = [pkg for cmd, pkg in wanted.items() if not have(cmd)]
    if missing and os.geteuid() == 0 and have("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq"] + missing, env=env,
                       stdout=subprocess.DEVNULL)
    if subprocess.run(["python3", "-c", "import requests"], capture_output=True).returncode:
        subprocess.run(["python3", "-m", "pip", "install", "--quiet", "requests"])
    if have("npm") and not os.path.isdir(PLAYWRIGHT):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-package-lock",
                        "--silent"], cwd=CLIENTS)
    if MORE:
        missing = {src for _, check, src in MORE_CLIENTS.values()
                   if src and not succeeds(check)}
        apt = sorted(pkg for how, pkg in missing if how == "apt")
        pip = sorted(pkg for how, pkg in missing if how == "pip")
        if apt and os.geteuid() == 0 and have("apt-get"):
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(["apt-get", "install", "-y", "-qq"] + apt, env=env,
                           stdout=subprocess.DEVNULL)
        if pip:
            subprocess.run(["python3", "-m", "pip", "install", "--quiet"] + pip)
    for cmd in wanted:
        if not have(cmd):
            print(f"SKIP: {cmd} is not installed", file=sys.stderr)


def prepare():
    install_missing()
    os.makedirs(WORK, exist_ok=True)
    sh("cargo", "build", "-q", "--release", "--example", "axum_upload_limit",
       "--features", "axum", cwd=ROOT)
    with open(os.path.join(WORK, "413.html"), "wb") as f:
        f.write(page())
    with open(os.path.join(WORK, "413.http"), "wb") as f:
        f.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: text/html\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n" % PAGE_LEN + page())
    for size in (10_000_000, 2_000_000, LINK_CROWD_SIZE):
        path = os.path.join(WORK, f"upload-{size}")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(b"u" * size)
    if have("go"):
        env = dict(os.environ, GOCACHE=os.path.join(WORK, "gocache"), GO111MODULE="off",
                   GOFLAGS="")
        sh("go", "build", "-o", os.path.join(WORK, "goserver"),
           os.path.join(ROOT, "benches", "real", "goserver.go"), env=env)
        sh("go", "build", "-o", os.path.join(WORK, "goclient"),
           os.path.join(CLIENTS, "upload.go"), env=env)


def nginx_conf(addr, port):
    path = os.path.join(WORK, f"nginx-{port}.conf")
    tmp = os.path.join(WORK, "nginx-tmp")
    os.makedirs(tmp, exist_ok=True)
    with open(path, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
error_log {WORK}/nginx-error.log;
pid {WORK}/nginx-{port}.pid;
events {{}}
http {{
  access_log off;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{
    listen {addr}:{port};
    client_max_body_size 1k;
    error_page 413 /413.html;
    location = /413.html {{ root {WORK}; internal; }}
    location /upload {{ return 200 "ok\\n"; }}
  }}
}}
""")
    return ["nginx", "-c", path]


def haproxy_conf(addr, port):
    path = os.path.join(WORK, f"haproxy-{port}.cfg")
    with open(path, "w") as f:
        f.write(f"""global
  tune.bufsize 600000
defaults
  mode http
  timeout client 30s
  timeout connect 5s
  timeout server 30s
  errorfile 413 {WORK}/413.http
frontend upload
  bind {addr}:{port}
  http-request deny deny_status 413 if {{ req.hdr_val(content-length) gt 1024 }}
  http-request return status 200 content-type text/plain string ok
""")
    return ["haproxy", "-db", "-f", path]


def servers(addr):
    example = os.path.join(WORKSPACE, "target", "release", "examples", "axum_upload_limit")
    out = []
    if have("nginx"):
        out.append(("nginx", 8201, lambda a, p: nginx_conf(a, p)))
    if have("haproxy"):
        out.append(("HAProxy", 8202, lambda a, p: haproxy_conf(a, p)))
    if os.path.exists(os.path.join(WORK, "goserver")):
        out.append(("Go net/http", 8203, lambda a, p: [os.path.join(WORK, "goserver"),
                                                       f"{a}:{p}",
                                                       os.path.join(WORK, "413.html")]))
    out.append(("axum plain", 8204, lambda a, p: [example, "--host", a, "--port", str(p)]))
    out.append(("axum + crate", 8205,
                lambda a, p: [example, "--graceful", "--host", a, "--port", str(p)]))
    only = picked("--server")
    return [(name, port, argv(addr, port)) for name, port, argv in out
            if not only or name in only]


def clients():
    out = []
    if have("curl"):
        out.append("curl")
    if subprocess.run(["python3", "-c", "import requests"], capture_output=True).returncode == 0:
        out.append("Python requests")
    if os.path.exists(os.path.join(WORK, "goclient")):
        out.append("Go net/http")
    if have("node"):
        out.append("Node fetch")
    if have("node") and have("chromium") and os.path.isdir(PLAYWRIGHT):
        out.append("headless Chromium")
    if MORE:
        for name, (_, check, _) in MORE_CLIENTS.items():
            if succeeds(check):
                out.append(name)
            else:
                print(f"SKIP: {name} is not installed", file=sys.stderr)
    only = picked("--client")
    return [c for c in out if not only or c in only]


def client_cmd(client, url, body, outdir, runs):
    if client == "curl":
        # A failed upload prints "<i> 000 <time> <curl's error>" (curl 7.75+).
        loop = (f'for i in $(seq 0 {runs - 1}); do curl -s -o {outdir}/$i -H Expect: '
                f'-w "$i %{{http_code}} %{{time_total}} %{{errormsg}}\\n" --max-time 30 '
                f'--data-binary @{body} {url}; done')
        return ["bash", "-c", loop]
    if client in MORE_CLIENTS:
        return MORE_CLIENTS[client][0] + [url, body, outdir, str(runs)]
    if client == "Python requests":
        return ["python3", os.path.join(CLIENTS, "upload.py"), url, body, outdir, str(runs)]
    if client == "Go net/http":
        return [os.path.join(WORK, "goclient"), url, body, outdir, str(runs)]
    if client == "headless Chromium":
        origin = url.rsplit("/", 1)[0]
        return ["node", os.path.join(CLIENTS, "chromium.mjs"), origin, outdir, str(runs),
                str(os.path.getsize(body))]
    return ["node", os.path.join(CLIENTS, "upload.mjs"), url, body, outdir, str(runs)]


def pids_on(port, ns):
    cmd = ["ss", "-ltnpH", f"sport = :{port}"]
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    return sorted({int(p) for p in re.findall(r"pid=(\d+)", out)})


def cpu_seconds(pids):
    """CPU time of the processes' threads (`schedstat`, nanoseconds), in seconds."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue  # the process ended
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:
                pass  # a thread that ended meanwhile
    return total / 1e9


def cell(client, addr, port, ns_client, pids, body, at_once, each):
    """`at_once` uploaders, `each` uploads one after the other each: whole answers,
    uploads, the times of the whole answers (ms) and the server's CPU time (ms)."""
    expected = page()
    procs = []
    for w in range(at_once):
        outdir = os.path.join(WORK, "out", f"{port}-{w}")
        shutil.rmtree(outdir, ignore_errors=True)
        os.makedirs(outdir)
        cmd = client_cmd(client, f"http://{addr}:{port}/upload", body, outdir, each)
        if ns_client:
            cmd = ["ip", "netns", "exec", ns_client] + cmd
        procs.append((outdir, subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                               stderr=subprocess.DEVNULL, text=True)))
    before = cpu_seconds(pids)
    whole, times, failed = 0, [], []
    for outdir, p in procs:
        out, _ = p.communicate(timeout=600)
        for line in out.splitlines():
            f = line.split()
            if len(f) < 3 or f[1] != "413":
                failed.append(line)
                continue
            try:
                with open(os.path.join(outdir, f[0]), "rb") as g:
                    got = g.read()
            except FileNotFoundError:
                continue
            if got == expected:
                whole += 1
                times.append(float(f[2]) * 1000)
    # The closes' last steps (the client's FIN, the last acknowledgement) come after the
    # client has its answer: they are the server's cost too.
    time.sleep(0.3)
    cpu = (cpu_seconds(pids) - before) * 1000
    if failed:
        # What the clients said of the answers they did not get (the server's log names
        # the closes that failed).
        print(f"  {port}: {len(failed)} failed, first: {failed[0][:300]}", file=sys.stderr)
    return whole, at_once * each, times, cpu


NAMESPACES = ("tgcbench-a", "tgcbench-r", "tgcbench-b")


def lab(up):
    """Server (`tgcbench-a`, 10.79.0.1) and clients (`tgcbench-b`) joined through a
    router namespace whose two egresses are shaped to 20 Mbit/s (tbf, a 256 KB queue
    unless `--link-queue` says otherwise).

    The bottleneck sits in the router, as on a real path: a full queue drops packets
    where the sender cannot see it, and TCP recovers as it does on the Internet. A tbf
    in the server's own namespace refuses packets locally instead (`TCPRetransFail`),
    which TCP treats as local congestion, re-trying every 500 ms without backoff
    (`TCP_RESOURCE_PROBE_INTERVAL`, `net/ipv4/tcp_timer.c`); with 200 uploads at once
    that lab lost answers to the kernel's own aborts (`TCPAbortOnTimeout`) for every
    server.
    """
    for ns in NAMESPACES:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    if not up:
        return
    a, r, b = NAMESPACES
    cmds = [f"ip netns add {ns}" for ns in NAMESPACES] + [
        f"ip link add v0 netns {a} type veth peer name va netns {r}",
        f"ip link add v0 netns {b} type veth peer name vb netns {r}",
        f"ip -n {a} addr add 10.79.0.1/24 dev v0",
        f"ip -n {r} addr add 10.79.0.254/24 dev va",
        f"ip -n {r} addr add 10.79.1.254/24 dev vb",
        f"ip -n {b} addr add 10.79.1.2/24 dev v0",
        f"ip netns exec {r} sysctl -qw net.ipv4.ip_forward=1",
    ]
    # The servers share the server namespace, and the kernel keeps what a connection
    # learned about its peer's address (its RTT above all) when it ends, to start the
    # next connection to that address from it (`tcp_update_metrics`, `tcp_init_metrics`
    # in net/ipv4/tcp_metrics.c: a cached RTT above the handshake's sets the first
    # retransmission timeout). All clients come from one address, so a cell would start
    # from what the previous server's cell left (RTTs of 175 ms over the full link).
    # Each server is measured from a clean start, as on a machine of its own.
    cmds += [f"ip netns exec {ns} sysctl -qw net.ipv4.tcp_no_metrics_save=1"
             for ns in NAMESPACES]
    for ns, devs in ((a, ["v0"]), (r, ["va", "vb"]), (b, ["v0"])):
        cmds += [f"ip -n {ns} link set lo up"] + [f"ip -n {ns} link set {d} up" for d in devs]
    cmds += [f"ip -n {a} route add default via 10.79.0.254",
             f"ip -n {b} route add default via 10.79.1.254"]
    cmds += [f"tc -n {r} qdisc replace dev {d} root tbf rate 20mbit burst 10000 "
             f"limit {LINK_QUEUE}"
             for d in ("va", "vb")]
    for c in cmds:
        sh(*c.split())


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main():
    prepare()
    rows = []
    # (name, server address, server and client namespaces, [(at once, upload size)]).
    transports = [("loopback", "127.0.0.1", None, None,
                   [(n, 10_000_000) for n in ([1, 20] if QUICK else [1, 20, 200])])]
    if os.geteuid() == 0 and have("tc"):
        transports.append(("20 Mbit/s link", "10.79.0.1", "tgcbench-a", "tgcbench-b",
                           [(1, 2_000_000)] if QUICK else
                           [(1, 2_000_000), (20, 2_000_000), (200, LINK_CROWD_SIZE)]))
    else:
        print("SKIP: the 20 Mbit/s link needs root and tc", file=sys.stderr)
    found = clients()
    print(f"clients: {', '.join(found)}", file=sys.stderr)
    if LINK_ONLY:
        transports = transports[1:]
    if LOOPBACK_ONLY:
        transports = transports[:1]
    at_once_only = [int(n) for n in picked("--at-once")]
    rounds_picked = [int(n) for n in picked("--rounds")]
    for tname, addr, ns_srv, ns_cli, levels in transports:
        levels = [lv for lv in levels if not at_once_only or lv[0] in at_once_only]
        if not levels:
            continue
        lab(ns_srv is not None)
        # Every server runs for the whole transport; each cell gives them its uploads in
        # rounds, one server after the other, the order rotating from round to round, so
        # a passing disturbance (the shared link, the other core) falls on all of them.
        running = []
        try:
            for name, port, argv in servers(addr):
                cmd = (["ip", "netns", "exec", ns_srv] + argv) if ns_srv else argv
                log = open(os.path.join(
                    WORK, f"server-{port}-{'link' if ns_srv else 'loopback'}.log"), "w")
                running.append((name, port, subprocess.Popen(
                    cmd, stdout=subprocess.DEVNULL, stderr=log), log))
            time.sleep(1.0)
            pids = {port: pids_on(port, ns_srv) for _, port, _, _ in running}
            for at_once, size in levels:
                body = os.path.join(WORK, f"upload-{size}")
                # One uploader: 2 rounds of 5 uploads (a client process's first upload
                # carries its start-up: Node's fetch loads undici on first use); crowds:
                # 2 rounds (20) or 1 (200) of one upload per uploader.
                rounds, each = ((1 if QUICK else 2), 5) if at_once == 1 else \
                    ((1 if at_once >= 200 else 2), 1)
                rounds = rounds_picked[-1] if rounds_picked else rounds
                label = tname if size in (10_000_000, 2_000_000) else \
                    f"{tname} ({size // 1000} KB)"
                for client in found:
                    if client == "headless Chromium" and at_once > 1:
                        continue
                    # A process per uploader: 200 runtimes (a JVM each) do not fit.
                    if client in MORE_CLIENTS and at_once > 20:
                        continue
                    got = {port: (0, 0, [], 0.0) for _, port, _, _ in running}
                    for r in range(rounds):
                        k = r % len(running)
                        for _, port, _, _ in running[k:] + running[:k]:
                            whole, n, times, cpu = cell(client, addr, port, ns_cli,
                                                        pids[port], body, at_once, each)
                            w0, n0, t0, c0 = got[port]
                            got[port] = (w0 + whole, n0 + n, t0 + times, c0 + cpu)
                    for name, port, _, _ in running:
                        whole, n, times, cpu = got[port]
                        row = (label, at_once, client, name, whole, n,
                               statistics.median(times) if times else float("nan"),
                               pct(times, 0.99), cpu / n)
                        rows.append(row)
                        print("| {} | {} | {} | {} | {} / {} | {:.1f} | {:.1f} | {:.2f} |"
                              .format(*row), flush=True)
        finally:
            for _, _, srv, log in running:
                srv.terminate()
                srv.wait()
                log.close()
            time.sleep(0.5)
        lab(False)
    print("\n| transport | at once | client | server | whole 413s | median ms | p99 ms "
          "| server CPU ms / upload |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for r in rows:
        print("| {} | {} | {} | {} | {} / {} | {:.1f} | {:.1f} | {:.2f} |".format(*r))


if __name__ == "__main__":
    main()
