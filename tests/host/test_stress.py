#!/usr/bin/env python3
"""kts-server under load and misbehaving clients, on the engine of KTS_ENGINE:
a slow reader gets the whole file, a reset in the middle of a body is logged
and frees the slot; on the uring engine also 1000 concurrent keep-alive
connections, and receives with the provided buffers run out (-ENOBUFS)."""
import os
import resource
import signal
import socket
import struct
import subprocess
import threading
import time

import ktshost as k

t = k.Suite("stress", deadline=200)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
small = k.write_random(os.path.join(root, "s.bin"), 4096)
mid = k.write_random(os.path.join(root, "m.bin"), 2 * 1024 * 1024 + 17)
big = k.write_random(os.path.join(root, "big.bin"), 16 * 1024 * 1024)

# 1000 client sockets here and as many in the server (which inherits this).
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
FDS = resource.getrlimit(resource.RLIMIT_NOFILE)[0]

GET = b"GET /%s HTTP/1.1\r\nHost: localhost\r\n\r\n"


def stopped_clean(name, srv):
    """SIGTERM: exit 0, and no sanitizer report (leaks, UB) in an ASan build."""
    srv.signal(signal.SIGTERM)
    rc = srv.wait(20)
    err = srv.stderr()
    t.check("%s: SIGTERM, exit 0, nothing leaked or undefined" % name,
            rc == 0 and "Sanitizer" not in err and "runtime error" not in err,
            "rc %s\n%s" % (rc, err[-1500:]))


def download(port, path="m.bin"):
    r = k.kts_client(["--ca", cert, "--get", "/" + path, "localhost:%d" % port], timeout=60)
    return r.returncode == 0 and k.sha256(r.stdout) == {"m.bin": mid, "s.bin": small}[path]


def slow_reader():
    srv = k.KtsServer(d, root, cert, key, "--timeout", "2", name="srv-slow-reader")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", srv.port))
    s = k.tls_context(cert).wrap_socket(raw, server_hostname="localhost")
    s.sendall(GET % b"m.bin")

    class Slow:
        def recv(self, n):
            time.sleep(0.03)  # about 1 MiB/s: slow, but always some progress
            return s.recv(32 * 1024)
    t0 = time.monotonic()
    resp = k.read_response(Slow(), bytearray())
    el = time.monotonic() - t0
    s.close()
    t.check("slow reader (32 KiB every 30 ms): the whole body, by sha256",
            resp.status == 200 and k.sha256(resp.body) == mid and el > 1,
            "status %d, %d bytes in %.1f s" % (resp.status, len(resp.body), el))
    t.check("slow reader: nothing logged as an error",
            " error: " not in srv.stderr(), srv.stderr()[-1000:])
    stopped_clean("slow reader", srv)
    srv.stop()


t.run("slow reader", slow_reader)


def reset_mid_body():
    srv = k.KtsServer(d, root, cert, key, "--max-conn", "1", name="srv-rst")
    s = k.https_connect(srv.port, cert)
    s.sendall(GET % b"big.bin")
    got = 0
    while got < 512 * 1024:
        got += len(s.recv(65536))
    # SO_LINGER 0: close sends a reset instead of a FIN.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    t.check("reset in the middle of a body: logged as a send error",
            srv.logged(r"^conn \S+ error: send: .*\(\d+ of 16777216 body bytes sent\)$", 10),
            srv.stderr()[-1000:])
    end = time.monotonic() + 10
    ok = False
    while not ok and time.monotonic() < end:  # --max-conn 1: the slot must come back
        ok = download(srv.port)
    t.check("reset in the middle of a body: the slot serves the next client", ok,
            srv.stderr()[-1000:])
    stopped_clean("reset in the middle of a body", srv)
    srv.stop()


t.run("reset mid-body", reset_mid_body)


def many_keepalive(n=1000):
    if FDS < 2 * n + 100:
        t.skip("%d concurrent keep-alive connections" % n, "RLIMIT_NOFILE %d" % FDS)
        return
    srv = k.KtsServer(d, root, cert, key, "--max-conn", str(n + 10), "--timeout", "60",
                      name="srv-many")
    conns = []
    t0 = time.monotonic()
    try:
        for _ in range(n):
            conns.append(k.https_connect(srv.port, cert, timeout=30))
        up = time.monotonic() - t0
        bad = 0
        for rnd in range(2):  # every request sent before any answer is read
            for s in conns:
                s.sendall(GET % b"s.bin")
            for s in conns:
                resp = k.read_response(s, bytearray())
                bad += resp.status != 200 or k.sha256(resp.body) != small or \
                    resp.headers.get("connection") == "close"
        el = time.monotonic() - t0
        t.check("%d concurrent keep-alive connections, 2 requests each: all answered" % n,
                bad == 0, "%d bad answers" % bad)
        t.check("%d connections: one status line each" % n,
                len(srv.conn_lines()) == n, "%d lines" % len(srv.conn_lines()))
        print("# %d handshakes in %.1f s, %d requests in %.1f s" % (n, up, 2 * n, el - up))
        t.check("%d connections: a new client is served meanwhile" % n, download(srv.port))
    finally:
        for s in conns:
            s.close()
    stopped_clean("%d connections" % n, srv)
    srv.stop()


def ran_out(what, srv):
    """After a run short of provided buffers: no errors, a clean stop, and the
    stop's count of receives that found none."""
    t.check(what + ": nothing logged as an error",
            " error: " not in srv.stderr(), srv.stderr()[-1000:])
    stopped_clean(what, srv)
    t.check(what + ": receives did run out (logged at the stop)",
            srv.logged(r"^io_uring: receives found no provided buffer \d+ time\(s\)$"),
            srv.stderr()[-1000:])
    srv.stop()


def no_buffers():
    """Two provided buffers for 24 clients at once: receives meet -ENOBUFS and
    are armed again; every client gets its file. The server is stopped
    (SIGSTOP) while the clients send, so that all 24 requests wait for it
    together and two buffers cannot hold them, however the machine schedules."""
    srv = k.KtsServer(d, root, cert, key, "--threads", "1", name="srv-nobufs",
                      env={"KTS_SERVER_URING_BUFS": "2"})
    results = []
    ready = threading.Barrier(25, timeout=60)

    def one():
        try:
            with k.https_connect(srv.port, cert) as s:
                ready.wait()  # every handshake done; the server is stopped
                ready.wait()
                s.sendall((GET % b"s.bin") * 3 + GET % b"m.bin")
                buf = bytearray()
                rs = [k.read_response(s, buf) for _ in range(4)]
                results.append([k.sha256(r.body) for r in rs] == [small] * 3 + [mid])
        except threading.BrokenBarrierError:
            pass
    threads = [threading.Thread(target=one) for _ in range(24)]
    for th in threads:
        th.start()
    try:
        ready.wait()
        srv.signal(signal.SIGSTOP)
        ready.wait()
        time.sleep(0.5)  # the requests are in the server's socket buffers
    except threading.BrokenBarrierError:
        pass
    finally:
        srv.signal(signal.SIGCONT)
    for th in threads:
        th.join(60)
    t.check("2 provided buffers, 24 clients pipelining 4 requests each: all served",
            len(results) == 24 and all(results), "%s\n%s" % (results, srv.stderr()[-1000:]))
    ran_out("2 provided buffers", srv)


def no_buffers_handshake():
    """Handshakes take provided buffers too: 24 ClientHellos wait for a stopped
    server with two buffers, so most handshake receives meet -ENOBUFS and go
    on in the connection's own buffer; every client gets its file."""
    srv = k.KtsServer(d, root, cert, key, "--threads", "1", name="srv-nobufs-hs",
                      env={"KTS_SERVER_URING_BUFS": "2"})
    results = []
    srv.signal(signal.SIGSTOP)

    def one():
        try:
            with k.https_connect(srv.port, cert, timeout=30) as s:
                s.sendall(GET % b"s.bin")
                results.append(k.sha256(k.read_response(s, bytearray()).body) == small)
        except OSError as e:
            results.append(repr(e))
    threads = [threading.Thread(target=one) for _ in range(24)]
    try:
        for th in threads:
            th.start()
        time.sleep(1.0)  # the ClientHellos are in the server's socket buffers
    finally:
        srv.signal(signal.SIGCONT)
    for th in threads:
        th.join(60)
    t.check("2 provided buffers, 24 handshakes at once: all served",
            len(results) == 24 and all(r is True for r in results),
            "%s\n%s" % (results, srv.stderr()[-1000:]))
    ran_out("2 provided buffers, handshakes", srv)


if k.ENGINE == "uring":
    t.run("1000 keep-alive", many_keepalive)
    t.run("no buffers", no_buffers)
    t.run("no buffers at the handshake", no_buffers_handshake)
t.done()
