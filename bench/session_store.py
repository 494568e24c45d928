#!/usr/bin/env python3
"""session_store.py - what kts-server --session-store (Redis) costs against
the local session cache alone, on this machine, in one run.

  bench/session_store.py [--build DIR] [--seconds S] [--rounds N] [--lookups N]

1. Rate: TLS 1.2 session-ID resumptions per server CPU-second (hs_bench
   --mode session-id --parallel 2), kts-server with --session-cache only
   against the same with --session-store, server and load pinned to
   different cores, rounds interleaved, medians. Goal: the store within 10%
   of the local cache (ratio >= 0.90).
2. Lookup latency: sessions made on server A, each resumed on server B
   twice: first through a Redis lookup (B has never seen it), then from B's
   local cache. Handshake times, p50 and p99 of each, and what the lookup
   adds. A benchmark: prints numbers, asserts nothing (exit 1 only when a
   run fails). See bench/README.md."""
import argparse
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cores():
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[0], allowed[1] if len(allowed) > 1 else allowed[0]


class Run:
    def __init__(self, args):
        self.a = args
        self.d = tempfile.mkdtemp(prefix="kts-sessbench-")
        self.procs = []
        self.scpu, self.ccpu = cores()
        self.kts = os.path.join(args.build, "tools", "kts-server")
        self.ctl = os.path.join(args.build, "tools", "ktsctl")
        self.hs = os.path.join(args.build, "bench", "hs_bench")
        for p in (self.kts, self.ctl, self.hs):
            if not os.access(p, os.X_OK):
                sys.exit("%s missing: build first (ninja -C %s)" % (p, args.build))
        self.cert, self.key = os.path.join(self.d, "c.pem"), os.path.join(self.d, "k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key, "-out",
                        self.cert, "-days", "1", "-subj", "/CN=localhost"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.root = os.path.join(self.d, "root")
        os.mkdir(self.root)
        self.pw = "bench-%d" % os.getpid()
        self.rport = free_port()
        self.start([shutil.which("redis-server") or "/usr/bin/redis-server", "--port",
                    str(self.rport), "--requirepass", self.pw, "--save", "", "--appendonly",
                    "no", "--dir", self.d], "redis", ready=b"Ready to accept", where="out")
        self.kek = os.path.join(self.d, "kek")
        subprocess.run([self.ctl, "kek", "init", self.kek], check=True, stdout=subprocess.DEVNULL)
        self.url = "redis://:%s@127.0.0.1:%d/bench" % (self.pw, self.rport)

    def start(self, argv, name, ready, where="err"):
        out = open(os.path.join(self.d, name + ".log"), "wb")
        p = subprocess.Popen(argv, stdout=out if where == "out" else subprocess.DEVNULL,
                             stderr=out if where == "err" else subprocess.DEVNULL)
        self.procs.append(p)
        path = out.name
        for _ in range(200):
            with open(path, "rb") as f:
                text = f.read()
            m = re.search(ready, text)
            if m:
                return p, m
            if p.poll() is not None:
                sys.exit("%s exited: %s" % (name, text.decode(errors="replace")))
            time.sleep(0.02)
        sys.exit("%s did not start" % name)

    def server(self, name, store):
        argv = ["taskset", "-c", str(self.scpu), self.kts, "--listen", "127.0.0.1:0", "--cert",
                self.cert, "--key", self.key, "--root", self.root, "--session-lifetime", "300",
                "--session-cache", "20000", "--session-id", "bench", "--threads", "1"]
        if store:
            argv += ["--session-store", self.url, "--kek", self.kek, "--control",
                     os.path.join(self.d, name + ".sock")]
        p, m = self.start(argv, name, ready=rb"listening on 127\.0\.0\.1:(\d+)")
        return p, int(m.group(1))

    def rate(self, port, pid):
        r = subprocess.run(["taskset", "-c", str(self.ccpu), self.hs, "--connect",
                            "127.0.0.1:%d" % port, "--tls", "1.2", "--mode", "session-id",
                            "--parallel", "2", "--seconds", str(self.a.seconds), "--server-pid",
                            str(pid)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=self.a.seconds + 30)
        out = r.stdout.decode()
        m = re.search(r"per_server_cpu_s=([\d.]+)", out)
        res = re.search(r"resumed=(\d+)/(\d+)", out)
        if r.returncode or not m or not res or int(res.group(1)) < 0.95 * int(res.group(2)):
            sys.exit("hs_bench failed:\n" + out)
        print("  " + out.strip())
        return float(m.group(1))

    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.d, ignore_errors=True)


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


CTX = client_ctx()  # one context: Python resumes only sessions of its own context


def handshake(port, session=None):
    """One TLS 1.2 handshake without tickets; (seconds, resumed, session)."""
    ctx = CTX
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.perf_counter()
    s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    took = time.perf_counter() - t0
    out = (took, s.session_reused, s.session)
    # A request read to the server's close, as hs_bench does: a connection
    # dropped without close_notify loses its session.
    s.sendall(b"HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    try:
        while s.recv(4096):
            pass
    except (ssl.SSLError, OSError):
        pass
    s.close()
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lookups", type=int, default=400)
    a = ap.parse_args()
    run = Run(a)
    try:
        local, lport = run.server("local", False)
        store, sport = run.server("store", True)
        print("# rate: server on core %d, hs_bench on core %d, %d rounds of %d s"
              % (run.scpu, run.ccpu, a.rounds, a.seconds))
        rates = {"local": [], "store": []}
        for r in range(a.rounds):
            order = [("local", lport, local), ("store", sport, store)]
            for name, port, p in (order if r % 2 == 0 else order[::-1]):
                rates[name].append(run.rate(port, p.pid))
        ml, ms = statistics.median(rates["local"]), statistics.median(rates["store"])
        print("resumed TLS 1.2 session-ID handshakes per server CPU-second (median): "
              "local cache %.0f, session store %.0f: ratio %.3f (goal >= 0.90)"
              % (ml, ms, ms / ml))
        _, aport = run.server("a", True)
        _, bport = run.server("b", True)
        via, loc, missed = [], [], 0
        for _ in range(a.lookups):
            _, _, sess = handshake(aport)
            time.sleep(0.002)  # the put is queued: let it reach Redis
            t1, r1, _ = handshake(bport, sess)
            t2, r2, _ = handshake(bport, sess)
            if not (r1 and r2):
                missed += 1
                continue
            via.append(t1)
            loc.append(t2)
        if not via:
            sys.exit("no lookup resumed")
        st = subprocess.run([run.ctl, "status", "--json", os.path.join(run.d, "b.sock")],
                            stdout=subprocess.PIPE, timeout=10).stdout.decode()
        hits = re.search(r'"session_store": \{[^}]*"hits": (\d+)', st)
        print("# B's status: %s Redis lookups found the session" % (hits.group(1) if hits else "?"))
        print("# lookups: %d sessions made on A, each resumed on B through Redis, then from "
              "B's local cache; %d not resumed" % (a.lookups, missed))
        for name, xs in (("through Redis", via), ("local cache", loc)):
            print("resumption on B %s: p50 %.3f ms, p99 %.3f ms" % (name, pct(xs, 50) * 1e3,
                                                                  pct(xs, 99) * 1e3))
        print("added by a Redis lookup: p50 %+.3f ms, p99 %+.3f ms"
              % ((pct(via, 50) - pct(loc, 50)) * 1e3, (pct(via, 99) - pct(loc, 99)) * 1e3))
    finally:
        run.close()


if __name__ == "__main__":
    main()
