#!/usr/bin/env python3
"""kts-client --get against canned HTTP responses from a Python TLS server:
the request it sends, chunked bodies, interim 1xx, bodies delimited by close,
truncation, non-2xx statuses and malformed responses; and that every failing
exit frees what kts-client allocated (LeakSanitizer or valgrind)."""
import os

import ktshost as k

t = k.Suite("client-http", deadline=100)
d = k.tmpdir()
cert, key = k.make_cert(d)


def get(response, path="/x", clean=True, args=()):
    srv = k.CannedServer(cert, key, response, clean=clean)
    r = k.kts_client(["--ca", cert, "--timeout", "10"] + list(args) +
                     ["--get", path, "localhost:%d" % srv.port], timeout=30)
    srv.join()
    return r, r.stderr.decode(errors="replace"), srv.requests


body = os.urandom(100000)
r, err, reqs = get(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
                   path="/a%20b?q=1")
t.check("Content-Length body", r.returncode == 0 and r.stdout == body, err)
req = reqs[0] if reqs else b""
port_host = b"Host: localhost:"
t.check("request line, Host with port, Connection: close",
        req.startswith(b"GET /a%20b?q=1 HTTP/1.1\r\n") and port_host in req and
        b"\r\nConnection: close\r\n" in req and req.endswith(b"\r\n\r\n"), repr(req))

chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:1], body[1:40000], body[40000:]))
r, err, _ = get(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks +
                b"0\r\nX-Trailer: 1\r\n\r\n")
t.check("chunked body with trailer", r.returncode == 0 and r.stdout == body, err)

r, err, _ = get(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
t.check("interim 100 skipped", r.returncode == 0 and r.stdout == b"hello", err)

r, err, _ = get(b"HTTP/1.0 200 OK\r\n\r\n" + body)
t.check("HTTP/1.0 body delimited by close_notify", r.returncode == 0 and r.stdout == body, err)

r, err, _ = get(b"HTTP/1.0 200 OK\r\n\r\n" + body, clean=False)
t.check("body delimited by a TCP close without close_notify: error (possible truncation)",
        r.returncode == 1 and err.startswith("kts-client: read"), err)

r, err, _ = get(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
t.check("Content-Length truncated: exit 1", r.returncode == 1 and "truncated" in err, err)

r, err, _ = get(b"HTTP/1.1 204 No Content\r\n\r\n")
t.check("204: empty body, exit 0", r.returncode == 0 and r.stdout == b"", err)

r, err, _ = get(b"HTTP/1.1 301 Moved Permanently\r\nLocation: /y\r\nContent-Length: 0\r\n\r\n")
t.check("301: exit 1, status in the message", r.returncode == 1 and
        "server answered 301 Moved Permanently" in err and r.stdout == b"", err)

r, err, _ = get(b"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\nbad",
                args=["--include"])
t.check("500 with --include: head on stdout, exit 1", r.returncode == 1 and
        r.stdout.startswith(b"HTTP/1.1 500 Oops\r\n") and "500" in err, err)

r, err, _ = get(b"SPDY/9 nonsense\r\n\r\n")
t.check("malformed response: exit 1", r.returncode == 1 and "malformed response" in err, err)

r, err, _ = get(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
t.check("malformed chunk: exit 1", r.returncode == 1 and "chunked" in err, err)



def no_leak(name, response, clean=True, args=(), want=b"", ca=True):
    """kts-client --get failing against a canned response frees all it allocated."""
    srv = k.CannedServer(cert, key, response, clean=clean)
    r, checker, leak = k.leak_checked("kts-client", (["--ca", cert] if ca else []) +
                                      ["--timeout", "20"] + list(args) +
                                      ["--get", "/x", "localhost:%d" % srv.port], timeout=90)
    srv.join()
    if checker is None:
        t.skip("no leaks: " + name, "neither an ASan build nor valgrind")
        return
    err = r.stderr.decode(errors="replace")
    t.check("no leaks (%s): %s" % (checker, name), r.returncode == 1 and not leak and
            want in r.stderr, "rc %d\n%s" % (r.returncode, (leak or err)[-1500:]))


no_leak("404", b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", want=b"answered 404")
no_leak("301", b"HTTP/1.1 301 Moved\r\nLocation: /y\r\nContent-Length: 0\r\n\r\n",
        want=b"answered 301")
no_leak("500 with --include", b"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\nbad",
        args=["--include"], want=b"answered 500")
no_leak("malformed response", b"SPDY/9 nonsense\r\n\r\n", want=b"malformed response")
no_leak("truncated body", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        want=b"truncated")
no_leak("TCP close without close_notify", b"HTTP/1.0 200 OK\r\n\r\nbody", clean=False,
        want=b"kts-client: read")
no_leak("certificate not trusted", b"", ca=False, want=b"certificate verification failed")

r = k.kts_client(["--get", "no-slash", "localhost:1"])
err = r.stderr.decode(errors="replace")
t.check("--get without leading /: usage error", r.returncode == 1 and "--get" in err, err)

t.done()
