#!/usr/bin/env python3
"""run_all.py - every kts benchmark in one run, ratios side by side (bench/README.md).

    bench/run-all.sh [--quick] [--out DIR] [--build DIR] [--vm-build DIR] [--groups LIST]

Groups (default: all): throughput, handshakes, memory (host, userspace TLS) and
vm (kernel TLS in the qemu guest of bench/vm-serve.sh). Writes DIR/results.json,
DIR/results.md, DIR/ratios.png (gnuplot) and each tool's raw log. Prints numbers;
nothing here is a test, and the exit status is 0 unless the harness itself broke.
"""
import argparse
import asyncio
import datetime
import functools
import json
import os
import re
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")

log_fh = None


def say(*a):
    line = " ".join(str(x) for x in a)
    print(line, flush=True)
    if log_fh:
        log_fh.write(line + "\n")
        log_fh.flush()


def median(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def ratio(a, b):
    return a / b if a and b else None


# ---- processes ----------------------------------------------------------------

def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            if int(st.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d))
    return out


def tree(pid):
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children_of(p)
    return seen


def cpu_s(pids):
    """user + system CPU seconds of the processes (all their threads)."""
    t = 0
    for p in pids:
        with open(f"/proc/{p}/stat") as f:
            f_ = f.read().rsplit(")", 1)[1].split()
        t += int(f_[11]) + int(f_[12])
    return t / CLK_TCK


def smaps(pids):
    """(Rss, Pss) in KiB summed over the processes."""
    rss = pss = 0
    for p in pids:
        with open(f"/proc/{p}/smaps_rollup") as f:
            for line in f:
                k, v = line.split(":", 1) if ":" in line else (line, "")
                if k == "Rss":
                    rss += int(v.split()[0])
                elif k == "Pss":
                    pss += int(v.split()[0])
    return rss, pss


class Server:
    """A server pinned to the server core; pids = the processes whose CPU counts."""

    def __init__(self, name, tmp, scpu):
        self.name, self.tmp, self.scpu = name, tmp, scpu
        self.proc = None
        self.port = None
        self.pids = []

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@functools.lru_cache(maxsize=None)
def kts_help(kts):
    """kts-server's --help text, asked once per binary: which options it has."""
    return subprocess.run([kts, "--help"], capture_output=True, text=True).stdout


def start_kts(name, kts, engine, tmp, scpu, extra=()):
    """kts-server; engine None = the build's only engine (no --engine option)."""
    s = Server(name, tmp, scpu)
    logf = os.path.join(tmp, f"{name}.log")
    cmd = ["taskset", "-c", str(scpu), kts, "--listen", "127.0.0.1:0",
           "--cert", f"{tmp}/cert.pem", "--key", f"{tmp}/key.pem", "--root", f"{tmp}/root",
           "--session-lifetime", "3600", "--session-cache", "1024"]
    if engine:
        cmd += ["--engine", engine]
    # No line per connection, as nginx runs with access_log off.
    if "--quiet" in kts_help(kts):
        cmd.append("--quiet")
    cmd += list(extra)
    s.log = logf
    s.proc = subprocess.Popen(cmd, stdout=open(logf, "w"), stderr=subprocess.STDOUT)
    for _ in range(100):
        time.sleep(0.05)
        with open(logf) as f:
            m = re.search(r"listening on .*:(\d+)\s*$", f.read(), re.M)
        if m:
            s.port = int(m.group(1))
            s.pids = [s.proc.pid]
            return s
        if s.proc.poll() is not None:
            break
    with open(logf) as f:
        s.error = f.read().strip().splitlines()[-1:] or ["no output"]
    s.stop()
    return s


def start_nginx(tmp, scpu, worker_conns=1024, keepalive="75s"):
    s = Server("nginx", tmp, scpu)
    d = os.path.join(tmp, f"nginx-{worker_conns}")
    os.makedirs(d, exist_ok=True)
    user = "user root;" if os.getuid() == 0 else ""
    for _ in range(5):
        port = 20000 + int.from_bytes(os.urandom(2), "little") % 40000
        conf = f"""daemon off;
worker_processes 1;
worker_rlimit_nofile {worker_conns * 2 + 100};
{user}
error_log {d}/error.log;
pid {d}/nginx.pid;
events {{ worker_connections {worker_conns}; }}
http {{
	access_log off;
	sendfile on;
	keepalive_timeout {keepalive};
	keepalive_requests 100000000;
	client_body_temp_path {d};
	proxy_temp_path {d};
	fastcgi_temp_path {d};
	uwsgi_temp_path {d};
	scgi_temp_path {d};
	server {{
		listen 127.0.0.1:{port} ssl;
		ssl_certificate {tmp}/cert.pem;
		ssl_certificate_key {tmp}/key.pem;
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_session_cache shared:kts_bench:10m;
		ssl_session_timeout 1h;
		ssl_session_tickets on;
		root {tmp}/root;
	}}
}}
"""
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(conf)
        for x in ("nginx.pid", "error.log"):
            if os.path.exists(f"{d}/{x}"):
                os.unlink(f"{d}/{x}")
        s.proc = subprocess.Popen(["taskset", "-c", str(scpu), NGINX, "-p", d, "-e", f"{d}/error.log",
                                   "-c", f"{d}/nginx.conf"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        for _ in range(50):
            time.sleep(0.1)
            kids = children_of(s.proc.pid)
            if kids:
                s.port, s.pids = port, [s.proc.pid] + kids
                return s
            if s.proc.poll() is not None:
                break
        s.stop()
    try:
        with open(f"{d}/error.log") as f:
            s.error = f.read().strip().splitlines()[-1:]
    except OSError:
        s.error = ["no error log"]
    return s


# ---- setup --------------------------------------------------------------------

def make_cert(tmp):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem"],
                   check=True, capture_output=True)


SIZES = [("1k", 1024), ("16k", 16384), ("1m", 1 << 20)]


def make_root(tmp):
    os.makedirs(f"{tmp}/root", exist_ok=True)
    with open(f"{tmp}/root/index.html", "w") as f:
        f.write("hello\n")
    for name, n in SIZES:
        with open(f"{tmp}/root/f{name}", "wb") as f:
            f.write(os.urandom(n))


# The uring engine with the other TLS 1.3 setting, by label: kts-server
# collects the TLS 1.3 secrets by default and then does the record work
# itself (--no-tls13-seal leaves it to OpenSSL; builds before that default
# had it opt-in, --tls13-seal). Saving the key log costs a copy of each byte
# and OpenSSL's state per idle connection.
VARIANTS = {"kts-uring-noseal": "--no-tls13-seal", "kts-uring-seal": "--tls13-seal"}


def uring_variant(kts):
    """The label of the variant this kts-server has, or None."""
    help_text = kts_help(kts)
    return next((label for label, opt in VARIANTS.items() if opt in help_text), None)


def kts_engines(kts, variant=False):
    """[(label, engine arg)] this kts-server takes, and a note on uring;
    variant: with the uring variant too."""
    if "--engine" not in kts_help(kts):
        return [("kts-threads", None)], "kts-server has no --engine option yet"
    v = uring_variant(kts) if variant else None
    return [("kts-uring", "uring")] + ([(v, "uring")] if v else []) + [("kts-threads", "threads")], None


def label_args(label):
    """kts-server options a server label stands for."""
    return [VARIANTS[label]] if label in VARIANTS else []


# ---- group 1: keep-alive requests per server CPU-second (wrk) -----------------

def wrk_run(server, path, secs, ccpu, conns=16):
    url = f"https://127.0.0.1:{server.port}/{path}"
    c0 = cpu_s(server.pids)
    t0 = time.monotonic()
    p = subprocess.run(["timeout", str(secs + 30), "taskset", "-c", str(ccpu), "wrk", "-t1",
                        f"-c{conns}", f"-d{secs}s", url], capture_output=True, text=True)
    wall = time.monotonic() - t0
    c1 = cpu_s(server.pids)
    out = p.stdout + p.stderr
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    r = {"raw": out.strip().replace("\n", " | ")}
    if p.returncode != 0 or not m:
        r["error"] = f"wrk exit {p.returncode}"
        return r
    n = int(m.group(1))
    errs = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        r["error"] = f"{non2xx.group(1)} non-2xx responses"
    if errs and re.search(r"[1-9]", errs.group(1)):
        r["socket_errors"] = errs.group(1)
    cpu = c1 - c0
    r.update(requests=n, server_cpu_s=round(cpu, 3), wall_s=round(wall, 2),
             req_per_s=round(n / secs, 1), server_cpu_pct=round(100 * cpu / wall, 1),
             req_per_cpu_s=round(n / cpu, 1) if cpu > 0 else None)
    return r


def group_throughput(a, tmp, kts, scpu, ccpu):
    engines, uring_note = kts_engines(kts, variant=True)
    servers = []
    res = {"what": "keep-alive HTTPS GETs per server CPU-second, wrk -t1 -c16, TLS default (1.3)",
           "rows": [], "not_available": {}}
    if uring_note:
        res["not_available"]["kts-uring"] = uring_note
        say(f"uring: not available ({uring_note})")
    for label, eng in engines:
        s = start_kts(label, kts, eng, tmp, scpu, label_args(label))
        if s.port:
            servers.append(s)
        else:
            res["not_available"][label] = "did not start: " + " ".join(s.error)
            say(f"{label.split('-')[1]}: not available ({' '.join(s.error)})")
    if NGINX:
        s = start_nginx(tmp, scpu)
        if s.port:
            servers.append(s)
        else:
            res["not_available"]["nginx"] = "did not start: " + " ".join(s.error)
    else:
        res["not_available"]["nginx"] = "not installed"
    try:
        for s in servers:  # warm-up: caches, lazily allocated buffers
            wrk_run(s, "f16k", 1, ccpu)
        data = {}
        for rnd in range(a.rounds):
            for name, _ in SIZES:
                for s in servers:  # interleaved: A B C A B C ...
                    r = wrk_run(s, f"f{name}", a.secs, ccpu)
                    r.update(round=rnd + 1, server=s.name, size=name)
                    res["rows"].append(r)
                    data.setdefault((s.name, name), []).append(r.get("req_per_cpu_s") if "error" not in r else None)
                    say(f"throughput round={rnd + 1} server={s.name} size={name} "
                        + (f"FAILED {r['error']}: {r['raw'][:200]}" if "error" in r else
                           f"req/s={r['req_per_s']} srv_cpu={r['server_cpu_pct']}% req_per_cpu_s={r['req_per_cpu_s']}"))
    finally:
        for s in servers:
            s.stop()
    res["medians"] = [{"server": k[0], "size": k[1], "req_per_cpu_s": median(v),
                       "rounds": len([x for x in v if x])} for k, v in data.items()]
    return res


# ---- group 1b: handshakes (bench/handshakes.sh) --------------------------------

def group_handshakes(a, out, scpu, ccpu):
    env = dict(os.environ, HS_BENCH_SECONDS=str(a.hs_secs), HS_BENCH_ROUNDS=str(a.hs_rounds),
               HS_BENCH_PARALLEL="4", HS_BENCH_CPUS=f"{scpu} {ccpu}")
    logf = os.path.join(out, "handshakes.log")
    say(f"handshakes: bench/handshakes.sh {a.build} (HS_BENCH_SECONDS={a.hs_secs} "
        f"HS_BENCH_ROUNDS={a.hs_rounds} HS_BENCH_PARALLEL=4), log {logf}")
    p = subprocess.run([os.path.join(HERE, "handshakes.sh"), a.build], env=env,
                       capture_output=True, text=True)
    with open(logf, "w") as f:
        f.write(p.stdout + p.stderr)
    rows, intable = [], False
    for line in p.stdout.splitlines():
        if line.startswith("server "):
            intable = True
            continue
        w = line.split()
        if intable and len(w) >= 9 and w[1].startswith(("hs_bench", "s_time")):
            def num(x):
                try:
                    return float(x)
                except ValueError:
                    return None
            rows.append({"server": w[0], "client": w[1], "tls": w[2], "mode": w[3], "n": int(w[4]),
                         "per_sec": num(w[5]), "resumed": w[6], "srv_cpu": w[7],
                         "per_cpu_s": num(w[8]), "failed": "FAILED" in line})
    say(f"handshakes: {len(rows)} rows, exit {p.returncode}")
    return {"what": "handshakes per server CPU-second (hs_bench --parallel 4 rows, medians of rounds)",
            "exit": p.returncode, "rows": rows}


# ---- group 3: memory per idle keep-alive connection ------------------------------

async def idle_client(port, n, path, conc=64):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if os.environ.get("BENCH_IDLE_TLS") == "1.2":  # the default negotiates TLS 1.3
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    sem = asyncio.Semaphore(conc)
    conns, fails = [], []
    req = f"GET /{path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()

    async def one():
        async with sem:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 60)
                w.write(req)
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 60)
                m = re.search(rb"content-length:\s*(\d+)", head, re.I)
                if not head.startswith(b"HTTP/1.1 200") or not m:
                    raise RuntimeError(head[:40])
                await asyncio.wait_for(r.readexactly(int(m.group(1))), 60)
                conns.append((r, w))
            except Exception as e:  # noqa: BLE001 - counted and reported
                fails.append(repr(e)[:100])

    await asyncio.gather(*(one() for _ in range(n)))
    print(f"ready ok={len(conns)} failed={len(fails)} first_error={fails[0] if fails else ''}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for _, w in conns:
        w.transport.abort()


def measure_memory(s, n, ccpu):
    """Server RSS/PSS before and with n idle keep-alive connections."""
    # Warm-up: a few connections through the whole path, then closed.
    subprocess.run(["taskset", "-c", str(ccpu), sys.executable, __file__, "--idle-client",
                    str(s.port), "16"], input="\n", capture_output=True, text=True, timeout=60)
    time.sleep(0.5)
    pids = tree(s.pids[0])
    base = smaps(pids)
    c = subprocess.Popen(["taskset", "-c", str(ccpu), sys.executable, __file__, "--idle-client",
                          str(s.port), str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = c.stdout.readline().strip()
    time.sleep(1.0)
    pids = tree(s.pids[0])
    with_conns = smaps(pids)
    c.stdin.write("\n")
    c.stdin.flush()
    c.wait(60)
    m = re.search(r"ok=(\d+) failed=(\d+)", line)
    ok = int(m.group(1)) if m else 0
    r = {"server": s.name, "connections": ok, "failed": int(m.group(2)) if m else None,
         "client_line": line, "base_rss_kib": base[0], "base_pss_kib": base[1],
         "rss_kib": with_conns[0], "pss_kib": with_conns[1]}
    if ok:
        r["rss_per_conn_kib"] = round((with_conns[0] - base[0]) / ok, 2)
        r["pss_per_conn_kib"] = round((with_conns[1] - base[1]) / ok, 2)
    return r


def group_memory(a, tmp, kts, scpu, ccpu):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = min(a.conns, hard - 200)
    res = {"what": f"server RSS/PSS growth per idle keep-alive TLS connection (GET /f1k answered, then idle), "
                   f"{n} connections, RLIMIT_NOFILE {hard}", "rows": [], "not_available": {}}
    engines, uring_note = kts_engines(kts, variant=True)
    if uring_note:
        res["not_available"]["kts-uring"] = uring_note
    starters = [(label, lambda label=label, eng=eng: start_kts(
        label, kts, eng, tmp, scpu, ["--max-conn", str(n + 64), "--timeout", "3600"] + label_args(label)))
        for label, eng in engines]
    if NGINX:
        starters.append(("nginx", lambda: start_nginx(tmp, scpu, worker_conns=n + 64, keepalive="3600s")))
    for rnd in range(a.mem_rounds):
        for label, start in starters:
            s = start()
            if not s.port:
                res["not_available"][label] = "did not start: " + " ".join(s.error)
                continue
            try:
                r = measure_memory(s, n, ccpu)
            finally:
                s.stop()
            r["round"] = rnd + 1
            res["rows"].append(r)
            say(f"memory round={rnd + 1} server={label} conns={r['connections']} failed={r['failed']} "
                f"rss/conn={r.get('rss_per_conn_kib')}KiB pss/conn={r.get('pss_per_conn_kib')}KiB")
    by = {}
    for r in res["rows"]:
        by.setdefault(r["server"], []).append(r)
    res["medians"] = [{"server": k, "connections": min(x["connections"] for x in v),
                       "rss_per_conn_kib": median([x.get("rss_per_conn_kib") for x in v]),
                       "pss_per_conn_kib": median([x.get("pss_per_conn_kib") for x in v])}
                      for k, v in by.items()]
    return res


# ---- group 2: the VM ----------------------------------------------------------------

def group_vm(a, out):
    logf = os.path.join(out, "vm.log")
    env = dict(os.environ, KTS_LOG_DIR=out, VM_BENCH_SIZE=a.vm_size, VM_BENCH_ROUNDS=str(a.vm_rounds),
               VM_BENCH_CONNS=str(a.vm_conns))
    cmd = [os.path.join(HERE, "vm-serve.sh"), a.vm_build]
    say(f"vm: {' '.join(cmd)} (VM_BENCH_SIZE={a.vm_size} VM_BENCH_ROUNDS={a.vm_rounds} "
        f"VM_BENCH_CONNS={a.vm_conns}), log {logf}")
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    with open(logf, "w") as f:
        f.write(p.stdout + p.stderr)
    say(f"vm: exit {p.returncode} after {time.monotonic() - t0:.0f} s")
    res = {"what": "server CPU per GB (instruction-count clock, one boot), 1 vCPU", "exit": p.returncode,
           "serve": [], "cipher": [], "decipher": [], "rx": [], "mem": [], "not_measured": {}, "tls_stat": {},
           "lines": []}
    for line in p.stdout.splitlines():
        w = line.split()
        if not w:
            continue
        kv = dict(x.split("=", 1) for x in w[1:] if "=" in x)
        if w[0] == "serve":
            res["serve"].append(kv)
        elif w[0] in ("cipher", "decipher"):
            res[w[0]].append(kv)
        elif w[0] == "rx":
            res["rx"].append(kv)
        elif w[0] == "mem":
            res["mem"].append(kv)
        elif w[0] == "not-measured":
            res["not_measured"][w[1].rstrip(":")] = line.split(":", 1)[1].strip() if ":" in line else line
        elif w[0] == "tls_stat":
            res["tls_stat"][w[1]] = w[2]
        if w[0] in ("serve", "cipher", "decipher", "rx", "mem", "not-measured", "bench", "vm", "VM"):
            res["lines"].append(line)
    if p.returncode and not res["serve"]:
        res["error"] = (p.stdout + p.stderr).strip().splitlines()[-3:]
    return res


# ---- report --------------------------------------------------------------------------

def fmt(x, nd=1):
    return "–" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def goal_row(goals, name, value, op, target, note=""):
    met = None if value is None else (value >= target if op == ">=" else value <= target)
    goals.append({"goal": name, "value": None if value is None else round(value, 3), "op": op,
                  "target": target, "met": met, "note": note})


def report(res, out, quick):
    md, goals = [], []
    md.append(f"# kts benchmarks, {res['meta']['date']}{' (--quick)' if quick else ''}\n")
    md.append(f"host {res['meta']['host_kernel']}, {res['meta']['cpus']} cores, server on core "
              f"{res['meta']['server_cpu']}, load on core {res['meta']['client_cpu']}, "
              f"{res['meta']['openssl']}, {res['meta']['nginx']}\n")

    t = res["groups"].get("throughput")
    if t:
        md.append("## 1. Host, userspace TLS: keep-alive requests per server CPU-second\n")
        md.append(t["what"] + f"; medians of {res['meta']['rounds']} interleaved rounds.\n")
        med = {(m["server"], m["size"]): m["req_per_cpu_s"] for m in t["medians"]}
        var = next((v for v in VARIANTS if any(k[0] == v for k in med)), None)
        srvs = [s for s in ("kts-uring", var, "kts-threads", "nginx")
                if s and any(k[0] == s for k in med)]
        md.append("| size | " + " | ".join(srvs) + " | uring/nginx |" +
                  (f" {var[4:]}/nginx |" if var else "") + " threads/nginx |")
        md.append("|---|" + "---|" * (len(srvs) + 2 + bool(var)))
        for size, _ in SIZES:
            u, th, n = med.get(("kts-uring", size)), med.get(("kts-threads", size)), med.get(("nginx", size))
            uv = med.get((var, size))
            md.append(f"| {size} | " + " | ".join(fmt(med.get((s, size))) for s in srvs) +
                      f" | {fmt(ratio(u, n), 2)} |" + (f" {fmt(ratio(uv, n), 2)} |" if var else "") +
                      f" {fmt(ratio(th, n), 2)} |")
            target = 1.0 if size == "1m" else 1.25
            goal_row(goals, f"uring req/CPU-s vs nginx, {size}", ratio(u, n), ">=", target,
                     t["not_available"].get("kts-uring", ""))
            if var:
                goal_row(goals, f"(info) uring {VARIANTS[var]} req/CPU-s vs nginx, {size}", ratio(uv, n),
                         ">=", target)
            goal_row(goals, f"(info) threads req/CPU-s vs nginx, {size}", ratio(th, n), ">=", target)
        for k, v in t["not_available"].items():
            md.append(f"\n{k}: not available ({v})")
        md.append("")

    h = res["groups"].get("handshakes")
    if h:
        md.append("## 1b. Host: new connections per server CPU-second (hs_bench --parallel 4)\n")
        rows = {(r["server"], r["client"], r["tls"], r["mode"]): r for r in h["rows"]}
        md.append("| tls | mode | kts-server | nginx | kts/nginx |")
        md.append("|---|---|---|---|---|")
        for tls, mode in (("1.2", "full"), ("1.2", "ticket"), ("1.2", "session-id"), ("1.3", "full"),
                          ("1.3", "ticket")):
            k = rows.get(("kts-server", "hs_bench/4", tls, mode), {}).get("per_cpu_s")
            n = rows.get(("nginx", "hs_bench/4", tls, mode), {}).get("per_cpu_s")
            md.append(f"| {tls} | {mode} | {fmt(k)} | {fmt(n)} | {fmt(ratio(k, n), 2)} |")
            if tls == "1.2" and mode != "full":
                goal_row(goals, f"resumed TLS 1.2 ({mode}) handshakes/CPU-s vs nginx", ratio(k, n), ">=", 1.2)
        if h["exit"]:
            md.append(f"\nhandshakes.sh exit status {h['exit']} (see handshakes.log)")
        md.append("")

    m = res["groups"].get("memory")
    if m:
        md.append("## 3. Host: memory per idle keep-alive connection\n")
        md.append(m["what"] + ".\n")
        md.append("| server | connections | RSS KiB/conn | PSS KiB/conn |")
        md.append("|---|---|---|---|")
        med = {x["server"]: x for x in m["medians"]}
        for x in m["medians"]:
            md.append(f"| {x['server']} | {x['connections']} | {fmt(x['rss_per_conn_kib'], 2)} | "
                      f"{fmt(x['pss_per_conn_kib'], 2)} |")
        ng = med.get("nginx", {}).get("pss_per_conn_kib")
        for s in ("kts-uring", *VARIANTS, "kts-threads"):
            v = med.get(s, {}).get("pss_per_conn_kib")
            if s in VARIANTS and v is None:
                continue  # not in this run
            goal_row(goals, f"{'' if s == 'kts-uring' else '(info) '}{s} PSS/conn vs nginx",
                     ratio(v, ng), "<=", 1.0, m["not_available"].get(s, ""))
        for k, v in m["not_available"].items():
            md.append(f"\n{k}: not available ({v})")
        md.append("")

    v = res["groups"].get("vm")
    if v:
        md.append("## 2. VM, kernel TLS: server CPU per GB (instruction counts, one boot)\n")
        md.append(v["what"] + ".\n")
        md.append("| server | tls | TX path | size | server CPU s/GB | / nginx-ktls | / (floor + cipher) |")
        md.append("|---|---|---|---|---|---|---|")
        cost = {}
        for r in v["serve"]:
            c = float(r["cpu_s_per_gb"]) if r.get("cpu_s_per_gb") else None
            # A kTLS variant whose TX stayed in userspace is not what its name says.
            if r.get("server") in ("nginx-ktls", "kts-uring", "kts-threads") and r.get("path") != "ktls":
                v["not_measured"].setdefault(r["server"], f"TLS {r.get('tls')}: TX not on kTLS (path={r.get('path')})")
                c = None
            cost[(r.get("server"), r.get("tls"))] = c
        ciph0 = {r.get("tls"): float(r["cpu_s_per_gb"]) for r in v["cipher"] if r.get("cpu_s_per_gb")}
        floor0 = cost.get(("tcp-sendfile", "none"))
        for r in v["serve"]:
            c = cost.get((r.get("server"), r.get("tls")))
            fc0 = floor0 + ciph0[r["tls"]] if floor0 and ciph0.get(r.get("tls")) else None
            md.append(f"| {r.get('server')} | {r.get('tls')} | {r.get('path', '')} | {r.get('size', '')} | "
                      f"{fmt(c, 3)} | {fmt(ratio(c, cost.get(('nginx-ktls', r.get('tls')))), 2)} | "
                      f"{fmt(ratio(c, fc0), 2)} |")
        ciph = {r.get("tls"): float(r["cpu_s_per_gb"]) for r in v["cipher"] if r.get("cpu_s_per_gb")}
        for r in v["cipher"]:
            md.append(f"\ncipher cost alone, {r.get('tls')} {r.get('cipher', '')}: {r.get('cpu_s_per_gb')} s/GB")
        for tls in ("1.2", "1.3"):
            best = cost.get(("kts-uring", tls)) or None
            label = "kts-uring"
            goal_row(goals, f"VM {label} CPU/GB vs nginx-kTLS, TLS {tls}",
                     ratio(best, cost.get(("nginx-ktls", tls))), "<=", 1.0,
                     v["not_measured"].get("nginx-ktls", v["not_measured"].get("kts-uring", "")))
            floor = cost.get(("tcp-sendfile", None)) or cost.get(("tcp-sendfile", "none"))
            fc = floor + ciph[tls] if floor and ciph.get(tls) else None
            goal_row(goals, f"VM {label} CPU/GB vs (floor + cipher), TLS {tls}", ratio(best, fc), "<=", 1.25,
                     v["not_measured"].get("kts-uring", ""))
            if best is None and cost.get(("kts-threads", tls)):
                goal_row(goals, f"(info) VM kts-threads CPU/GB vs (floor + cipher), TLS {tls}",
                         ratio(cost.get(("kts-threads", tls)), fc), "<=", 1.25)
                goal_row(goals, f"(info) VM kts-threads CPU/GB vs nginx-kTLS, TLS {tls}",
                         ratio(cost.get(("kts-threads", tls)), cost.get(("nginx-ktls", tls))), "<=", 1.0,
                         v["not_measured"].get("nginx-ktls", ""))
        if v["rx"]:
            deciph = {r.get("tls"): float(r["cpu_s_per_gb"]) for r in v["decipher"] if r.get("cpu_s_per_gb")}
            for r in v["decipher"]:
                md.append(f"\ncipher cost alone, opening, {r.get('tls')} {r.get('cipher', '')}: "
                          f"{r.get('cpu_s_per_gb')} s/GB")
            md.append("\n| receive | tls | offload | NO_PAD | read size | path | receiver CPU s/GB |")
            md.append("|---|---|---|---|---|---|---|")
            rx = {}
            for r in v["rx"]:
                key = (r.get("tls"), r.get("offload"), r.get("no_pad", "off"), r.get("buf", "256KiB"))
                rx[key] = float(r["cpu_s_per_gb"]) if r.get("cpu_s_per_gb") else None
                md.append(f"| {'tcp' if r.get('tls') == 'none' else 'kts'} | {r.get('tls')} | "
                          f"{r.get('offload')} | {r.get('no_pad', 'off')} | {r.get('buf', '')} | "
                          f"{r.get('path')} | {r.get('cpu_s_per_gb')} |")
            tcp = rx.get(("none", "tcp", "off", "256KiB"))
            for tls in ("1.2", "1.3"):
                off = rx.get((tls, "off", "off", "256KiB"))
                goal_row(goals, f"VM kts receive kernel RX vs offload off, TLS {tls}",
                         ratio(rx.get((tls, "auto", "off", "256KiB")), off), "<=", 0.8)
                floor = tcp + deciph[tls] if tcp and deciph.get(tls) else None
                goal_row(goals, f"(info) VM kernel RX vs (TCP receive + opening cipher), TLS {tls}",
                         ratio(rx.get((tls, "auto", "off", "256KiB")), floor), "<=", 1.0)
            goal_row(goals, "VM kts receive kernel RX + NO_PAD vs offload off, TLS 1.3",
                     ratio(rx.get(("1.3", "auto", "on", "256KiB")), rx.get(("1.3", "off", "off", "256KiB"))),
                     "<=", 0.8, "the kernel refused TLS_RX_EXPECT_NO_PAD")
        if v["mem"]:
            md.append("\n| idle connections | tls | connections | server kTLS TX / RX | PSS KiB/conn |")
            md.append("|---|---|---|---|---|")
            mem = {}
            for r in v["mem"]:
                kib = float(r["pss_kib_per_conn"]) if r.get("pss_kib_per_conn") else None
                # Counted only when the server's side of every connection was kernel TLS.
                n = int(r.get("conns", 0) or 0)
                full = r.get("server") != "kts-uring" or (int(r.get("server_ktls_tx", -1)) >= n and
                                                          int(r.get("server_ktls_rx", -1)) >= n)
                mem[r.get("server")] = kib if full else None
                md.append(f"| {r.get('server')} | {r.get('tls')} | {r.get('conns')} | "
                          f"{r.get('server_ktls_tx', '–')} / {r.get('server_ktls_rx', '–')} | {fmt(kib, 2)} |")
            goal_row(goals, "VM kts-uring PSS KiB per idle kTLS connection (absolute)", mem.get("kts-uring"),
                     "<=", 2.0, "no mem line, or not every connection on kernel TX and RX")
            goal_row(goals, "(info) VM kts-uring PSS/conn vs nginx-ktls", ratio(mem.get("kts-uring"),
                     mem.get("nginx-ktls")), "<=", 1.0)
        for k, why in v["not_measured"].items():
            md.append(f"\nnot measured: {k}: {why}")
        if v.get("tls_stat"):
            md.append("\ntls_stat deltas of the boot: " + ", ".join(f"{k} {x}" for k, x in v["tls_stat"].items()))
        if v.get("error"):
            md.append("\nVM run failed: " + " / ".join(v["error"]))
        md.append("")

    md.append("## Goals\n")
    md.append("| goal | ratio | target | met |")
    md.append("|---|---|---|---|")
    for g in goals:
        met = "not measured" if g["met"] is None else ("yes" if g["met"] else "NO")
        note = f" ({g['note']})" if g["met"] is None and g["note"] else ""
        md.append(f"| {g['goal']} | {fmt(g['value'], 2)} | {g['op']} {g['target']} | {met}{note} |")
    res["goals"] = goals
    text = "\n".join(md) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    chart(goals, out)
    return text


def chart(goals, out):
    pts = [g for g in goals if g["value"] is not None]
    if not shutil.which("gnuplot") or not pts:
        say("chart: " + ("gnuplot not installed (Debian: gnuplot-nox)" if pts else "no ratios to plot"))
        return
    dat = os.path.join(out, "ratios.dat")
    with open(dat, "w") as f:
        for i, g in enumerate(pts):
            label = g["goal"].replace('"', "'").replace("handshakes/CPU-s", "hs/CPU-s")
            f.write(f'{i} "{label}" {g["value"]} {g["target"]} {1 if g["met"] else 0}\n')
    gp = f"""set terminal pngcairo size 1400,{300 + 28 * len(pts)} font ",10"
set output "{out}/ratios.png"
set title "kts: measured ratio (bar) and goal (line); green met, red not"
set yrange [{len(pts) - 0.3}:-0.7]
set ytics nomirror
set xrange [0:*]
set grid x
set style fill solid 0.7
set key off
set lmargin 60
plot "{dat}" using (0):1:(0):3:($1-0.35):($1+0.35):($5 > 0 ? 0x33aa33 : 0xcc3333):ytic(2) with boxxyerror lc rgb variable, \\
     "{dat}" using 4:($1-0.45):(0):(0.9) with vectors nohead lc rgb "black" lw 3, \\
     "{dat}" using 3:1:(sprintf("%.2f", $3)) with labels left offset 1,0
"""
    with open(os.path.join(out, "ratios.gp"), "w") as f:
        f.write(gp)
    p = subprocess.run(["gnuplot", os.path.join(out, "ratios.gp")], capture_output=True, text=True)
    if p.returncode:
        p2 = subprocess.run(["gnuplot", "-e", "set terminal png", os.path.join(out, "ratios.gp")],
                            capture_output=True, text=True)
        say(f"chart: gnuplot failed: {p.stderr.strip()[:300]} {p2.stderr.strip()[:100]}")


# ---- main ----------------------------------------------------------------------------

def main():
    global log_fh
    ap = argparse.ArgumentParser(description="all kts benchmarks, one run (bench/README.md)")
    ap.add_argument("--quick", action="store_true", help="fewer rounds, shorter runs, smaller sizes")
    ap.add_argument("--out", help="output directory (default bench/results/<timestamp>)")
    ap.add_argument("--build", default=os.path.join(TOP, "build-bench"))
    ap.add_argument("--vm-build", default=os.path.join(TOP, "build-bench-vm"))
    ap.add_argument("--groups", default="throughput,handshakes,memory,vm")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--conns", type=int, help="idle connections for the memory group (default 10000)")
    a = ap.parse_args()
    q = a.quick
    a.rounds = a.rounds or (1 if q else 5)
    a.secs = 2 if q else 5
    a.hs_secs = 2 if q else 5
    a.hs_rounds = min(a.rounds, 3)  # 20 runs a round: 3 rounds take about 7 minutes
    a.conns = a.conns or (1000 if q else 10000)
    a.mem_rounds = 1 if q else 3
    a.vm_size = "32M" if q else "256M"
    a.vm_rounds = 1  # instruction counts repeat to a fraction of a percent
    a.vm_conns = 1000 if q else 10000  # idle kTLS connections per server (about 50 ms each)
    a.build, a.vm_build = os.path.abspath(a.build), os.path.abspath(a.vm_build)
    groups = [g for g in a.groups.split(",") if g]
    for g in groups:
        if g not in ("throughput", "handshakes", "memory", "vm"):
            sys.exit(f"run-all: unknown group {g}")
    out = a.out or os.path.join(HERE, "results", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    out = os.path.abspath(out)
    log_fh = open(os.path.join(out, "run.log"), "w")
    kts = os.path.join(a.build, "tools", "kts-server")
    host_groups = [g for g in groups if g != "vm"]
    if host_groups and not os.access(kts, os.X_OK):
        sys.exit(f"run-all: {kts} missing: meson setup {a.build} -Dkernel_tests=false && ninja -C {a.build}")
    need = {"throughput": ["wrk"], "handshakes": ["openssl"], "memory": []}
    for g in host_groups:
        for t in need[g] + ["taskset"]:
            if not shutil.which(t):
                sys.exit(f"run-all: {t} not found (tools/setup-debian.sh bench)")
    cpus = sorted(os.sched_getaffinity(0))
    scpu, ccpu = cpus[0], cpus[1] if len(cpus) > 1 else cpus[0]
    ngv = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip() if NGINX else "no nginx"
    res = {"meta": {"date": datetime.datetime.now().isoformat(timespec="seconds"), "quick": q,
                    "host_kernel": os.uname().release, "cpus": os.cpu_count(), "server_cpu": scpu,
                    "client_cpu": ccpu, "rounds": a.rounds,
                    "openssl": subprocess.run(["openssl", "version"], capture_output=True,
                                              text=True).stdout.strip(),
                    "nginx": ngv, "build": a.build, "vm_build": a.vm_build, "git": subprocess.run(
                        ["git", "-C", TOP, "describe", "--always", "--dirty"], capture_output=True,
                        text=True).stdout.strip()},
           "groups": {}}
    say(f"run-all: out {out}; server core {scpu}, load core {ccpu}; groups {','.join(groups)}"
        f"{' (quick)' if q else ''}")
    tmp = tempfile.mkdtemp(prefix="kts-runall.")
    try:
        make_cert(tmp)
        make_root(tmp)
        for g in groups:
            t0 = time.monotonic()
            if g == "throughput":
                res["groups"][g] = group_throughput(a, tmp, kts, scpu, ccpu)
            elif g == "handshakes":
                res["groups"][g] = group_handshakes(a, out, scpu, ccpu)
            elif g == "memory":
                res["groups"][g] = group_memory(a, tmp, kts, scpu, ccpu)
            elif g == "vm":
                res["groups"][g] = group_vm(a, out)
            res["groups"][g]["seconds"] = round(time.monotonic() - t0)
            # Partial results survive a later group's failure.
            report(res, out, q)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = report(res, out, q)
    say("\n" + text)
    say(f"run-all: wrote {out}/results.json, results.md, ratios.png")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--idle-client":
        resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
        asyncio.run(idle_client(int(sys.argv[2]), int(sys.argv[3]), "f1k"))
    else:
        main()
