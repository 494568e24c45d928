#!/usr/bin/env python3
"""kts-server process behaviour: concurrent connections, thread reuse, the
--max-conn cap, idle/read timeouts, graceful stop on SIGTERM/SIGINT, IPv6, startup
errors, the chain sent; and kts-client's own error paths (usage, refused,
--timeout)."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import ktshost as k

t = k.Suite("server", deadline=150)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
digest = k.write_random(os.path.join(root, "f.bin"), 4 * 1024 * 1024 + 1)
big_digest = k.write_random(os.path.join(root, "big.bin"), 16 * 1024 * 1024)
srv = k.KtsServer(d, root, cert, key)


def concurrent():
    procs = [subprocess.Popen([k.tool("kts-client"), "--ca", cert, "--get", "/f.bin",
                               "localhost:%d" % srv.port], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(12)]
    results = []

    def collect(p):
        out, err = p.communicate(timeout=60)
        results.append((p.returncode, k.sha256(out), err))
    threads = [threading.Thread(target=collect, args=(p,)) for p in procs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    bad = [r for r in results if r[0] != 0 or r[1] != digest]
    t.check("12 concurrent downloads", len(results) == 12 and not bad, repr(bad[:2]))


t.run("concurrent", concurrent)


def thread_reuse():
    # A connection thread serves the next connection instead of ending.
    s2 = k.KtsServer(d, root, cert, key, name="srv-reuse")
    task_dir = "/proc/%d/task" % s2.p.pid

    def get():
        r = k.kts_client(["--ca", cert, "--get", "/f.bin", "localhost:%d" % s2.port])
        return r.returncode == 0 and k.sha256(r.stdout) == digest

    def tasks_after_release():
        # The thread is back in the pool a moment after the client is done.
        time.sleep(0.5)
        return sorted(os.listdir(task_dir))

    before = sorted(os.listdir(task_dir))
    ok1 = get()
    after1 = tasks_after_release()
    ok2 = get()
    after2 = tasks_after_release()
    t.check("sequential connections: both served", ok1 and ok2)
    t.check("the first connection's thread stays for the next one",
            len(after1) == len(before) + 1 and after2 == after1,
            "threads before %r, after 1 %r, after 2 %r" % (before, after1, after2))
    s2.stop()


if k.ENGINE == "threads":
    t.run("thread reuse", thread_reuse)


def max_conn():
    s2 = k.KtsServer(d, root, cert, key, "--max-conn", "2", name="srv-max2")
    idle = [k.https_connect(s2.port, cert) for _ in range(2)]  # both slots busy
    t0 = time.monotonic()
    r = k.kts_client(["--ca", cert, "--get", "/f.bin", "localhost:%d" % s2.port], timeout=20)
    el = time.monotonic() - t0
    err = r.stderr.decode(errors="replace")
    t.check("--max-conn 2: a third client is refused at once (not left in the listen queue)",
            r.returncode == 1 and el < 3, "rc %d after %.1fs: %s" % (r.returncode, el, err))
    t.check("--max-conn 2: the refusal is logged",
            s2.logged(r"^conn 127\.0\.0\.1:\d+ refused: all 2 connections busy \(--max-conn\)$"),
            s2.stderr()[-1000:])
    # Refusals are logged at most once a second, with a count of the others.
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", s2.port), timeout=5) as raw:
            raw.sendall(b"\x16")  # a first byte, as a ClientHello: accepted at once
            try:
                raw.recv(1)  # closed by the server at once
            except ConnectionResetError:
                pass
    time.sleep(1.1)
    k.kts_client(["--ca", cert, "--get", "/f.bin", "localhost:%d" % s2.port], timeout=20)
    t.check("--max-conn 2: refusals rate-limited, the next line counts those not logged",
            s2.logged(r"refused: all 2 connections busy \(--max-conn\) \(and [1-3] more since "
                      r"the last such line\)$") and
            len(re.findall(r"refused: all 2", s2.stderr())) < 5, s2.stderr()[-1500:])
    idle[0].close()
    served = False
    end = time.monotonic() + 10
    while not served and time.monotonic() < end:  # the slot frees when the server sees it
        r = k.kts_client(["--ca", cert, "--get", "/f.bin", "localhost:%d" % s2.port], timeout=20)
        served = r.returncode == 0 and k.sha256(r.stdout) == digest
        if not served:
            time.sleep(0.1)
    idle[1].close()
    t.check("--max-conn 2: a client is served once a slot frees", served,
            r.stderr.decode(errors="replace"))
    s2.stop()


def deferred_accept():
    """The listener takes a connection with its first bytes (TCP_DEFER_ACCEPT):
    one that connected and said nothing holds no --max-conn slot for its
    first second, and is still taken (and timed out) after that."""
    with open(os.path.join(root, "small.txt"), "wb") as f:
        f.write(b"small\n")  # served well within the silent one's first second
    s1 = k.KtsServer(d, root, cert, key, "--max-conn", "1", "--timeout", "2", name="srv-max1")
    silent = socket.create_connection(("127.0.0.1", s1.port), timeout=10)
    try:
        r = k.kts_client(["--ca", cert, "--get", "/small.txt", "localhost:%d" % s1.port],
                         timeout=20)
        t.check("a silent connection holds no slot: the next client is served at once",
                r.returncode == 0 and r.stdout == b"small\n",
                r.stderr.decode(errors="replace") + s1.stderr()[-500:])
        t0 = time.monotonic()
        try:
            got = silent.recv(1)  # the server takes it, then its handshake times out
        except ConnectionResetError:
            got = b""
        el = time.monotonic() - t0
        t.check("the silent connection is still taken, and closed at --timeout",
                got == b"" and 1 < el < 8 and
                s1.logged(r"handshake: not complete within 2 s"),
                "recv %r after %.1fs; %s" % (got, el, s1.stderr()[-500:]))
    finally:
        silent.close()
        s1.stop()


t.run("max-conn", max_conn)
t.run("deferred accept", deferred_accept)


def timeouts():
    s3 = k.KtsServer(d, root, cert, key, "--timeout", "1", name="srv-timeout")
    # Idle after the handshake: closed after about a second.
    s = k.https_connect(s3.port, cert)
    t0 = time.monotonic()
    got = k.recv_all(s)
    el = time.monotonic() - t0
    s.close()
    t.check("--timeout 1: idle TLS connection closed in 1-4 s", got == b"" and 0.8 < el < 4,
            "after %.2fs got %r" % (el, got[:100]))
    # No handshake at all.
    raw = socket.create_connection(("127.0.0.1", s3.port), timeout=10)
    t0 = time.monotonic()
    try:
        data = raw.recv(100)
    except ConnectionResetError:
        data = b""
    el = time.monotonic() - t0
    raw.close()
    t.check("--timeout 1: silent TCP client (no handshake) dropped", data == b"" and el < 4,
            "after %.2fs got %r" % (el, data))
    # A request head that never ends: 408.
    s = k.https_connect(s3.port, cert)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
    got = k.recv_all(s)
    s.close()
    t.check("--timeout 1: partial request head gets 408", got.startswith(b"HTTP/1.1 408 "),
            repr(got[:200]))
    time.sleep(0.1)
    t.check("--timeout 1: the server is still serving", k.kts_client(
        ["--ca", cert, "--get", "/f.bin", "localhost:%d" % s3.port]).returncode == 0)
    s3.stop()


t.run("timeouts", timeouts)


def graceful(sig):
    name = signal.Signals(sig).name
    s4 = k.KtsServer(d, root, cert, key, name="srv-" + name)
    idle = k.https_connect(s4.port, cert)
    # A slow download in progress when the signal arrives.
    busy = k.https_connect(s4.port, cert)
    busy.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        buf += busy.recv(65536)
    time.sleep(0.3)
    t0 = time.monotonic()
    s4.signal(sig)
    time.sleep(0.3)
    resp = k.read_response(busy, buf)
    rest = bytes(buf) + k.recv_all(busy)
    idle_got = k.recv_all(idle)
    rc = s4.wait(15)
    el = time.monotonic() - t0
    t.check("%s: in-flight download completes" % name,
            resp.status == 200 and k.sha256(resp.body) == big_digest and rest == b"",
            "status %d, %d bytes" % (resp.status, len(resp.body)))
    t.check("%s: idle keep-alive connection closed" % name, idle_got == b"")
    t.check("%s: exit 0 within a few seconds, 'stopped' logged" % name,
            rc == 0 and el < 8 and "stopped" in s4.stderr(),
            "rc %s after %.1fs\n%s" % (rc, el, s4.stderr()))
    idle.close()
    busy.close()
    try:
        socket.create_connection(("127.0.0.1", s4.port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    t.check("%s: no longer listening" % name, refused)
    s4.stop()


t.run("SIGTERM", graceful, signal.SIGTERM)
t.run("SIGINT", graceful, signal.SIGINT)


def ipv6():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as e:
        t.skip("IPv6 [::1]", "no IPv6 loopback: %s" % e)
        return
    s6 = k.KtsServer(d, root, cert, key, listen="[::1]:0", name="srv-v6")
    t.check("IPv6: 'listening on [::1]:PORT'",
            "listening on [::1]:%d" % s6.port in s6.stderr(), s6.stderr())
    r = k.kts_client(["--ca", cert, "--servername", "localhost", "--get", "/f.bin",
                      "[::1]:%d" % s6.port])
    t.check("IPv6: kts-client [::1]:PORT download", r.returncode == 0 and
            k.sha256(r.stdout) == digest, r.stderr.decode(errors="replace"))
    t.check("IPv6: peer logged as [::1]:port", "conn [::1]:" in s6.stderr(), s6.stderr())
    s6.stop()


t.run("ipv6", ipv6)


def chain():
    # The chain sent is the configured one, never completed from the trust store
    # (OpenSSL would otherwise rebuild it from SSL_CERT_FILE on every handshake).
    ca_root, inter, leaf, leaf_key = k.make_chain(d)
    full = os.path.join(d, "chain-full.pem")
    with open(full, "w") as f:
        f.write(open(leaf).read() + open(inter).read())
    store = {"SSL_CERT_FILE": inter, "SSL_CERT_DIR": os.path.join(d, "no-such-dir")}

    def sent(server):
        r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % server.port,
                            "-servername", "localhost", "-CAfile", ca_root],
                           input=b"", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=20)
        out = r.stdout.decode(errors="replace")
        return (len(re.findall(r"^ *\d+ s:", out, re.M)),
                "Verify return code: 0 (ok)" in out, out[-600:])

    for name, certfile, n_want, ok_want in (("leaf and intermediate", full, 2, True),
                                          ("leaf only", leaf, 1, False)):
        s2 = k.KtsServer(d, root, certfile, leaf_key, env=store, name="srv-chain")
        n, ok, why = sent(s2)
        t.check("cert file with %s: %d certificate(s) sent, verification %s" %
                (name, n_want, "succeeds" if ok_want else "fails"),
                n == n_want and ok == ok_want, "sent %d, verified %s\n%s" % (n, ok, why))
        s2.stop()


t.run("chain", chain)


def run_server(args, timeout=10):
    return subprocess.run([k.tool("kts-server")] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


def startup_errors():
    base = ["--cert", cert, "--key", key, "--root", root]
    r = run_server(["--listen", "127.0.0.1:%d" % srv.port] + base)
    err = r.stderr.decode()
    t.check("port in use: exit 1 with a message", r.returncode == 1 and
            err.startswith("kts-server: listen on") and "in use" in err, err)
    r = run_server(["--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--root",
                    os.path.join(d, "nope")])
    t.check("missing root: exit 1", r.returncode == 1 and "--root" in r.stderr.decode(),
            r.stderr.decode())
    other_cert, other_key = k.make_cert(k.tmpdir())
    r = run_server(["--listen", "127.0.0.1:0", "--cert", cert, "--key", other_key,
                    "--root", root])
    t.check("key not matching the certificate: exit 1", r.returncode == 1 and
            r.stderr.decode().startswith("kts-server: --key"), r.stderr.decode())
    r = run_server(["--listen", "127.0.0.1"] + base)
    t.check("--listen without port: exit 1", r.returncode == 1, r.stderr.decode())
    r = run_server(base)
    t.check("missing --listen: usage, exit 2", r.returncode == 2 and
            "usage:" in r.stderr.decode(), r.stderr.decode())
    r = run_server(["--help"])
    t.check("--help: exit 0", r.returncode == 0 and b"--max-conn" in r.stdout)


t.run("startup errors", startup_errors)


def quiet():
    """--quiet drops the line per connection, not the errors; not with --status."""
    r = run_server(["--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--root", root,
                    "--quiet", "--status"])
    t.check("--quiet --status: exit 1 naming both", r.returncode == 1 and
            b"--quiet and --status" in r.stderr, r.stderr.decode())
    q = k.KtsServer(d, root, cert, key, "--quiet", name="kts-server-quiet")
    try:
        out = subprocess.run([k.tool("kts-client"), "--ca", cert, "--get", "/f.bin",
                              "localhost:%d" % q.port], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=30)
        t.check("--quiet: the file arrives", out.returncode == 0 and
                k.sha256(out.stdout) == digest, out.stderr.decode())
        with socket.create_connection(("127.0.0.1", q.port), timeout=10) as s:
            s.sendall(b"not TLS\r\n\r\n")
            try:
                s.recv(100)  # an alert, the close, or a reset
            except OSError:
                pass
        q.logged(r"conn \S+ error: ")
        err = q.stderr()
        t.check("--quiet: no status line, the failed handshake still logged",
                "offload tx=" not in err and re.search(r"conn \S+ error: ", err), err)
    finally:
        q.stop()


t.run("quiet", quiet)


def client_errors():
    r = k.kts_client([])
    t.check("kts-client without address: usage, exit 2", r.returncode == 2 and
            b"usage:" in r.stderr)
    r = k.kts_client(["--help"])
    t.check("kts-client --help: exit 0, documents the --ciphers rule",
            r.returncode == 0 and b"TLS_" in r.stdout)
    r = k.kts_client(["localhost"])
    t.check("kts-client bad address: exit 1", r.returncode == 1 and
            r.stderr.startswith(b"kts-client: bad address"), r.stderr)
    port = k.free_port()
    r = k.kts_client(["--ca", cert, "127.0.0.1:%d" % port], input=b"")
    t.check("kts-client refused: exit 1, 'connect'", r.returncode == 1 and
            r.stderr.startswith(b"kts-client: connect"), r.stderr)
    # A TCP server that accepts and never speaks: --timeout ends the handshake.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    t0 = time.monotonic()
    r = k.kts_client(["--ca", cert, "--timeout", "1", "--get", "/",
                      "localhost:%d" % ls.getsockname()[1]], timeout=20)
    el = time.monotonic() - t0
    ls.close()
    t.check("kts-client --timeout 1 on a silent server: exit 1 'timed out'",
            r.returncode == 1 and b"handshake: timed out" in r.stderr and el < 5,
            "%.1fs %r" % (el, r.stderr))
    r = k.kts_client(["--get", "/f.bin", "localhost:%d" % srv.port])
    t.check("kts-client without --ca: self-signed certificate refused",
            r.returncode == 1 and b"certificate verification failed" in r.stderr, r.stderr)
    r = k.kts_client(["--insecure", "--get", "/f.bin", "localhost:%d" % srv.port])
    t.check("kts-client --insecure accepts it", r.returncode == 0 and
            k.sha256(r.stdout) == digest, r.stderr)
    r = k.kts_client(["--ca", cert, "--servername", "other.example", "--get", "/f.bin",
                      "127.0.0.1:%d" % srv.port])
    t.check("kts-client --servername mismatch refused", r.returncode == 1 and
            b"certificate verification failed" in r.stderr, r.stderr)


t.run("client errors", client_errors)
t.done()
