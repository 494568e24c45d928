#!/usr/bin/env python3
"""kts-server deadlines that slow clients cannot stretch: request heads sent a
line at a time and ClientHellos sent a byte at a time are cut near --timeout
(408 / logged) while a well-behaved client gets a slot; a client that stops
reading a large body frees its slot within about --timeout; request bodies
shorter than their Content-Length get 408; Expect: 100-continue is answered at
once."""
import os
import re
import select
import socket
import ssl
import threading
import time

import ktshost as k

t = k.Suite("deadlines", deadline=100)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
small = k.write_random(os.path.join(root, "f.bin"), 64 * 1024)
k.write_random(os.path.join(root, "big.bin"), 32 * 1024 * 1024)
TIMEOUT = 2


def client_hello():
    """The bytes of a TLS ClientHello (from Python's ssl, never sent by it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


class Dribbler(threading.Thread):
    """A slow client: sends its bytes in pieces, one piece every `every` seconds,
    for at most `limit` seconds, and notes when the server ended the connection
    (seconds after its first byte) and what it answered."""

    def __init__(self, port, kind, every, limit=15):
        super().__init__(daemon=True)
        self.port, self.kind, self.every, self.limit = port, kind, every, limit
        self.cut_after = None  # seconds from the first byte to the server's close
        self.answer = b""
        self.error = None
        self.ready = threading.Event()

    def pieces(self):
        if self.kind == "hello":
            return [bytes([b]) for b in client_hello()]
        return [b"GET /f.bin HTTP/1.1\r\n"] + [b"X-Slow-%d: y\r\n" % i for i in range(1000)]

    def run(self):
        try:
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            s = raw
            if self.kind == "head":
                s = k.tls_context(cert).wrap_socket(raw, server_hostname="localhost")
            self.ready.set()
            first = time.monotonic()
            for piece in self.pieces():
                if time.monotonic() - first > self.limit:
                    return
                try:
                    s.sendall(piece)
                except OSError:
                    self.cut_after = time.monotonic() - first
                    return
                if self.closed(s):
                    self.cut_after = time.monotonic() - first
                    return
        except Exception as e:  # noqa: BLE001
            self.error = "%s: %s" % (type(e).__name__, e)
        finally:
            self.ready.set()

    def closed(self, s):
        """Wait `every` seconds for the server to answer or close; True if it did."""
        if not select.select([s], [], [], self.every)[0]:
            return False
        try:
            s.settimeout(5)
            data = s.recv(65536)
        except (OSError, ssl.SSLError):
            return True
        if not data:
            return True
        self.answer += data + k.recv_all(s)
        return True


def get_until_served(port, within):
    """kts-client --get until one succeeds; seconds it took, or None."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        r = k.kts_client(["--ca", cert, "--timeout", "3", "--get", "/f.bin",
                          "localhost:%d" % port], timeout=20)
        if r.returncode == 0 and k.sha256(r.stdout) == small:
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def slow_clients():
    srv = k.KtsServer(d, root, cert, key, "--max-conn", "4", "--timeout", str(TIMEOUT),
                      name="srv-slow")
    drips = [Dribbler(srv.port, "head", 1.0) for _ in range(2)] + \
            [Dribbler(srv.port, "hello", 0.1) for _ in range(2)]
    for dr in drips:
        dr.start()
        dr.ready.wait(5)
    time.sleep(0.3)  # every slot taken
    took = get_until_served(srv.port, 12)
    for dr in drips:
        dr.join(20)
    t.check("4 slow clients on --max-conn 4 --timeout 2: a well-behaved client is served "
            "within about the timeout", took is not None and took < TIMEOUT + 4,
            "took %s\n%s" % (took, srv.stderr()[-1500:]))
    for i, dr in enumerate(drips):
        what = "request head a line a second" if dr.kind == "head" else \
            "ClientHello a byte at a time"
        t.check("slow client %d (%s) cut near the deadline" % (i, what),
                dr.error is None and dr.cut_after is not None and
                TIMEOUT - 0.5 < dr.cut_after < TIMEOUT + 3,
                "cut after %s, error %s" % (dr.cut_after, dr.error))
        if dr.kind == "head":
            t.check("slow client %d (%s) answered 408" % (i, what),
                    dr.answer.startswith(b"HTTP/1.1 408 "), repr(dr.answer[:100]))
    err = srv.stderr()
    heads = re.findall(r"^conn \S+ error: request head: \d+ bytes, incomplete within 2 s: "
                       r"answered 408$", err, re.M)
    hellos = re.findall(r"^conn \S+ error: handshake: not complete within 2 s$", err, re.M)
    t.check("the server logs why: request head incomplete (x2), handshake (x2)",
            len(heads) == 2 and len(hellos) == 2, err[-1500:])
    srv.stop()


t.run("slow clients", slow_clients)


def stalled_reader():
    timeout = 3
    srv = k.KtsServer(d, root, cert, key, "--max-conn", "1", "--timeout", str(timeout),
                      name="srv-stall")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", srv.port))
    s = k.tls_context(cert).wrap_socket(raw, server_hostname="localhost")
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    got = b""
    while len(got) < 256 * 1024:
        got += s.recv(65536)
    stopped = time.monotonic()  # from now on the client reads nothing
    m = None
    try:
        m = srv.wait_for(r"^conn \S+ error: send: under 16 KiB taken in 3 s, the client is not "
                         r"reading \((\d+) of 33554432 body bytes sent\)$", timeout=20)
    except RuntimeError as e:
        t.fail("stalled reader: the send gives up, logged", str(e))
    logged = time.monotonic() - stopped
    if m:
        t.check("stalled reader: the send gives up within about --timeout, logged",
                logged < timeout + 2.5, "after %.1f s: %s" % (logged, m.group(0)))
    took = get_until_served(srv.port, 10)
    freed = time.monotonic() - stopped - (took or 0)
    t.check("stalled reader: its slot (--max-conn 1) serves the next client",
            took is not None and freed < timeout + 3,
            "served after %s s, %.1f s after the stall\n%s" % (took, freed, srv.stderr()[-800:]))
    s.close()
    srv.stop()


t.run("stalled reader", stalled_reader)

srv = k.KtsServer(d, root, cert, key, "--timeout", str(TIMEOUT), name="srv-body")


def short_body(method, path):
    name = "%s with a body shorter than its Content-Length" % method
    t0 = time.monotonic()
    out = k.http_exchange(srv.port, cert, b"%s %s HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n"
                          b"\r\nabc" % (method.encode(), path.encode()))
    el = time.monotonic() - t0
    t.check(name + ": 408 at the deadline", out.startswith(b"HTTP/1.1 408 ") and
            TIMEOUT - 0.5 < el < TIMEOUT + 3, "%.1f s: %r" % (el, out[:200]))
    t.check(name + ": logged", srv.logged(r"^conn \S+ error: request body: 3 of 10 bytes within "
                                          r"2 s: answered 408$"), srv.stderr()[-800:])


t.run("short POST body", short_body, "POST", "/")
t.run("short GET body", short_body, "GET", "/f.bin")


def expect_continue():
    slow = k.KtsServer(d, root, cert, key, "--timeout", "20", name="srv-expect")
    for method, path, status in (("POST", "/", 405), ("GET", "/f.bin", 200)):
        t0 = time.monotonic()
        with k.https_connect(slow.port, cert) as s:
            s.sendall(b"%s %s HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: 100-continue"
                      b"\r\n\r\n" % (method.encode(), path.encode()))
            resp = k.read_response(s, bytearray())
            el = time.monotonic() - t0
            rest = k.recv_all(s)
        t.check("%s, Expect: 100-continue, no body sent: answered %d at once, then closed" %
                (method, status), resp.status == status and el < 5 and rest == b"" and
                resp.headers.get("connection") == "close",
                "status %d after %.1f s, %r, rest %r" % (resp.status, el, resp.headers, rest[:50]))
        if status == 200:
            t.check("GET, Expect: 100-continue: the file", k.sha256(resp.body) == small)
    slow.stop()


t.run("expect", expect_continue)


def body_then_next():
    """A GET with a complete body on keep-alive: body dropped, next request served."""
    with k.https_connect(srv.port, cert) as s:
        buf = bytearray()
        s.sendall(b"GET /f.bin HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                  b"HEAD /f.bin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        r1 = k.read_response(s, buf)
        r2 = k.read_response(s, buf, head_only=True)
    t.check("GET with a body, then HEAD on the same connection",
            r1.status == 200 and k.sha256(r1.body) == small and r2.status == 200,
            "%d %d" % (r1.status, r2.status))


t.run("body then next", body_then_next)
t.done()
