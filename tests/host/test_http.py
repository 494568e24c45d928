#!/usr/bin/env python3
"""kts-server HTTP behaviour: status codes, HEAD, keep-alive, HTTP/1.0, limits,
and path traversal (.., percent-encoded .., symlinks out of the root), with
openat2 and with the realpath fallback."""
import os
import socket
import ssl
import struct
import subprocess
import time

import ktshost as k

t = k.Suite("http", deadline=100)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.makedirs(os.path.join(root, "sub", "deeper"))
os.makedirs(os.path.join(root, "noindex"))
os.makedirs(os.path.join(root, "dirindex", "index.html"))  # an index that is no file
INDEX = b"<html>kts index</html>\n"
SECRET = b"TOP SECRET outside the root\n"
files = {
    "index.html": INDEX,
    "a.txt": b"plain text\n",
    "with space.txt": b"spaced\n",
    "sub/index.html": b"sub index\n",
    "sub/deeper/x.json": b"{}\n",
    "style.css": b"body{}\n",
    "empty.bin": b"",
}
for name, data in files.items():
    with open(os.path.join(root, name), "wb") as f:
        f.write(data)
with open(os.path.join(d, "secret.txt"), "wb") as f:
    f.write(SECRET)
os.symlink("/etc", os.path.join(root, "etc-link"))                  # absolute, out
os.symlink("/etc/passwd", os.path.join(root, "passwd-link"))        # absolute, out
os.symlink("../secret.txt", os.path.join(root, "rel-out"))          # relative, out
os.symlink("..", os.path.join(root, "sub", "up"))                   # inside: root
os.symlink("../..", os.path.join(root, "sub", "upup"))              # out via dir
os.symlink("a.txt", os.path.join(root, "in-link.txt"))              # inside
os.mkfifo(os.path.join(root, "fifo"))                               # never opened blocking

srv = k.KtsServer(d, root, cert, key)
fallback = k.KtsServer(d, root, cert, key, env={"KTS_SERVER_NO_OPENAT2": "1"},
                       name="kts-server-fallback")
PORT = srv.port


def get1(path, method="GET", port=PORT, extra=b"", version=b"HTTP/1.1"):
    req = b"%s %s %s\r\nHost: localhost\r\nConnection: close\r\n%s\r\n" % (
        method.encode(), path.encode(), version, extra)
    with k.https_connect(port, cert) as s:
        s.sendall(req)
        buf = bytearray()
        resp = k.read_response(s, buf, head_only=(method == "HEAD"))
        rest = bytes(buf) + k.recv_all(s)
    return resp, rest


def expect(name, path, status, body=None, ctype=None, port=PORT, method="GET"):
    resp, rest = get1(path, method=method, port=port)
    ok = resp.status == status and rest == b""
    why = "status %d (%s), body %r, trailing %r" % (resp.status, resp.reason, resp.body[:100],
                                                     rest[:100])
    if body is not None:
        ok = ok and resp.body == body
    if ctype is not None:
        ok = ok and resp.headers.get("content-type", "").startswith(ctype)
        why += ", type %r" % resp.headers.get("content-type")
    ok = ok and int(resp.headers.get("content-length", -1)) == len(resp.body)
    t.check(name, ok and SECRET not in resp.body and b"root:" not in resp.body, why)
    return resp


def raw(name, data, status, port=PORT):
    """Send data, expect one response with status, then the server closing."""
    def one():
        out = k.http_exchange(port, cert, data)
        t.check(name, out.startswith(b"HTTP/1.1 %d " % status) and
                len(k.parse_all_responses(out)) == 1, repr(out[:200]))
    t.run(name, one)


# -- ordinary requests
t.run("index", expect, "GET / -> index.html", "/", 200, INDEX, "text/html")
t.run("file", expect, "GET /a.txt text/plain", "/a.txt", 200, files["a.txt"], "text/plain")
t.run("css", expect, "GET /style.css text/css", "/style.css", 200, files["style.css"], "text/css")
t.run("json", expect, "GET /sub/deeper/x.json", "/sub/deeper/x.json", 200, b"{}\n",
      "application/json")
t.run("subdir", expect, "GET /sub/ -> sub/index.html", "/sub/", 200, b"sub index\n")
t.run("subdir2", expect, "GET /sub (no slash) -> sub/index.html", "/sub", 200, b"sub index\n")
t.run("pct", expect, "GET /with%20space.txt", "/with%20space.txt", 200, b"spaced\n")
t.run("query", expect, "GET /a.txt?x=1#frag ignores the query", "/a.txt?x=1", 200,
      files["a.txt"])
t.run("dots", expect, "GET /./sub//./index.html normalises", "/./sub//./index.html", 200,
      b"sub index\n")
t.run("empty", expect, "GET /empty.bin (0 bytes)", "/empty.bin", 200, b"")
t.run("inlink", expect, "symlink inside the root is served", "/in-link.txt", 200,
      files["a.txt"])
t.run("abs", expect, "absolute-form target", "http://localhost/a.txt", 200, files["a.txt"])

# -- errors
t.run("404", expect, "GET /missing -> 404", "/missing", 404)
t.run("404dir", expect, "directory without index.html -> 404", "/noindex/", 404)
t.run("404dirindex", expect, "index.html that is a directory -> 404", "/dirindex/", 404)
t.run("404notdir", expect, "GET /a.txt/x -> 404", "/a.txt/x", 404)
t.run("404slash", expect, "GET /a.txt/ (a file with a trailing slash) -> 404", "/a.txt/", 404)
t.run("404slashlink", expect, "GET /in-link.txt/ (symlink to a file, trailing slash) -> 404",
      "/in-link.txt/", 404)
t.run("404slashdot", expect, "GET /a.txt/. -> 404 (the '.' keeps the slash)", "/a.txt/.", 404)
t.run("fifo", expect, "GET /fifo (not a regular file) -> 404", "/fifo", 404)
r405 = expect("POST / -> 405", "/", 405, method="POST")
t.check("405 has Allow: GET, HEAD", r405.headers.get("allow") == "GET, HEAD",
        repr(r405.headers))
expect("DELETE /a.txt -> 405", "/a.txt", 405, method="DELETE")
raw("garbage request line -> 400", b"GARBAGE\r\n\r\n", 400)
raw("missing Host in HTTP/1.1 -> 400", b"GET / HTTP/1.1\r\n\r\n", 400)
raw("two Host headers -> 400", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)
raw("space before colon -> 400", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400)
raw("bad Content-Length -> 400", b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400)
raw("bad percent escape -> 400", b"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400)
raw("%00 in path -> 400", b"GET /a.txt%00.html HTTP/1.1\r\nHost: a\r\n\r\n", 400)
raw("HTTP/2.0 request line -> 505", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505)
raw("relative target -> 400", b"GET a.txt HTTP/1.1\r\nHost: a\r\n\r\n", 400)
raw("Transfer-Encoding request -> 501",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501)
raw("17 KiB of headers -> 431",
    b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Pad: " + b"p" * (17 * 1024) + b"\r\n\r\n", 431)
raw("head without end past the limit -> 431", b"GET / HTTP/1.1\r\nX: " + b"y" * 20000, 431)

# -- traversal, with openat2 and with the fallback
for label, port in (("openat2", PORT), ("fallback", fallback.port)):
    for path in ("/../etc/passwd", "/../../../../etc/passwd", "/%2e%2e/etc/passwd",
                 "/%2E%2E/%2e%2e/etc/passwd", "/sub/..%2f..%2fetc/passwd",
                 "/sub/%2e%2e/%2e%2e/secret.txt", "/..", "/sub/../../secret.txt"):
        t.run(label + path, expect, "[%s] %s -> 403" % (label, path), path, 403, port=port)
    for path in ("/etc-link/passwd", "/passwd-link", "/rel-out", "/sub/upup/secret.txt",
                 "/etc-link/"):
        resp, _ = get1(path, port=port)
        t.check("[%s] symlink out of the root %s refused" % (label, path),
                resp.status in (403, 404) and SECRET not in resp.body and
                b"root:" not in resp.body, "status %d body %r" % (resp.status, resp.body[:80]))
    t.run(label + "up", expect, "[%s] symlink to the root itself is fine" % label,
          "/sub/up/a.txt", 200, files["a.txt"], port=port)
    t.run(label + "upindex", expect, "[%s] GET /sub/up/ -> the root's index.html" % label,
          "/sub/up/", 200, INDEX, port=port)
    # The raw request line, without any client-side normalisation.
    out = k.http_exchange(port, cert, b"GET /../secret.txt HTTP/1.1\r\nHost: a\r\n"
                          b"Connection: close\r\n\r\n")
    t.check("[%s] raw GET /../secret.txt refused" % label,
            out.startswith(b"HTTP/1.1 403 ") and SECRET not in out, repr(out[:200]))

# -- HEAD
resp, rest = get1("/a.txt", method="HEAD")
t.check("HEAD: 200, Content-Length of the file, no body",
        resp.status == 200 and resp.headers.get("content-length") == str(len(files["a.txt"]))
        and rest == b"", "status %d headers %r rest %r" % (resp.status, resp.headers, rest))
resp, rest = get1("/missing", method="HEAD")
t.check("HEAD of a missing file: 404 without body", resp.status == 404 and rest == b"",
        "status %d rest %r" % (resp.status, rest))
resp, rest = get1("/a.txt/", method="HEAD")
t.check("HEAD /a.txt/ (a file with a trailing slash): 404", resp.status == 404 and rest == b"",
        "status %d rest %r" % (resp.status, rest))


# -- keep-alive
def keepalive():
    with k.https_connect(PORT, cert) as s:
        buf = bytearray()
        s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        r1 = k.read_response(s, buf)
        s.sendall(b"HEAD /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
        r2 = k.read_response(s, buf, head_only=True)
        s.sendall(b"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        r3 = k.read_response(s, buf)
        s.sendall(b"GET /sub/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        r4 = k.read_response(s, buf)
        rest = bytes(buf) + k.recv_all(s)
    t.check("keep-alive: 4 requests on one connection (GET, HEAD, POST with body, GET)",
            (r1.status, r2.status, r3.status, r4.status) == (200, 200, 405, 200) and
            r1.body == files["a.txt"] and r4.body == b"sub index\n" and rest == b"",
            "%r %r" % ([r.status for r in (r1, r2, r3, r4)], rest))
    t.check("keep-alive: Connection headers", r1.headers.get("connection") == "keep-alive"
            and r4.headers.get("connection") == "close", "%r %r" % (r1.headers, r4.headers))


t.run("keepalive", keepalive)


# -- reply sizes around the engine's buffer sizes (a small reply takes a 4 KiB
# buffer with its head, others 64 KiB chunks): every byte must arrive
SIZES = sorted(set(list(range(3700, 4400, 23)) + [4095, 4096, 4097, 16383, 16384, 16385,
                                                   65535, 65536, 65537, 200001]))
for n in SIZES:
    with open(os.path.join(root, "size-%d.bin" % n), "wb") as f:
        f.write(os.urandom(n))


def sizes():
    bad = []
    with k.https_connect(PORT, cert) as s:
        buf = bytearray()
        for n in SIZES:
            s.sendall(b"GET /size-%d.bin HTTP/1.1\r\nHost: localhost\r\n\r\n" % n)
            r = k.read_response(s, buf)
            with open(os.path.join(root, "size-%d.bin" % n), "rb") as f:
                if r.status != 200 or r.body != f.read():
                    bad.append((n, r.status, len(r.body)))
    t.check("reply sizes %d..%d on one connection arrive whole (%d files)" %
            (SIZES[0], SIZES[-1], len(SIZES)), not bad, repr(bad[:5]))


t.run("sizes", sizes)


def pipelined():
    out = k.http_exchange(PORT, cert, b"GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n"
                          b"GET /sub/ HTTP/1.1\r\nHost: a\r\n\r\n"
                          b"GET /missing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    rs = k.parse_all_responses(out)
    t.check("pipelined: 3 requests in one write", [r.status for r in rs] == [200, 200, 404] and
            rs[0].body == files["a.txt"], repr(out[:300]))


t.run("pipelined", pipelined)


def http10():
    out = k.http_exchange(PORT, cert, b"GET /a.txt HTTP/1.0\r\n\r\n")
    rs = k.parse_all_responses(out)
    t.check("HTTP/1.0 without keep-alive: one response, then close",
            len(rs) == 1 and rs[0].status == 200 and rs[0].headers.get("connection") == "close",
            repr(out[:300]))
    with k.https_connect(PORT, cert) as s:
        buf = bytearray()
        s.sendall(b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r1 = k.read_response(s, buf)
        s.sendall(b"GET /sub/ HTTP/1.0\r\n\r\n")
        r2 = k.read_response(s, buf)
        rest = bytes(buf) + k.recv_all(s)
    t.check("HTTP/1.0 with keep-alive: second request on the same connection",
            r1.status == 200 and r1.headers.get("connection") == "keep-alive" and
            r2.status == 200 and r2.body == b"sub index\n" and rest == b"",
            "%r %r %r" % (r1.headers, r2.headers, rest))


t.run("http10", http10)


TCP_CLOSE = 7  # tcpi_state


def after_close(req):
    """Send req, read every response to the server's FIN, then send a byte on
    the bare socket: (responses, whether the FIN came, whether the server
    answered the byte with a reset)."""
    with k.https_connect(PORT, cert) as s:
        s.sendall(req)
        out = k.recv_all(s)
        raw = socket.socket(fileno=os.dup(s.fileno()))
    with raw:
        raw.settimeout(5)
        fin = raw.recv(1) == b""
        raw.sendall(b"x")
        # A reset after the FIN shows in TCP's state (recv still says EOF); a
        # lingering server keeps it in close-wait for at least a quarter second.
        end = time.monotonic() + 0.2
        reset = False
        while not reset and time.monotonic() < end:
            reset = raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == TCP_CLOSE
            time.sleep(0.01)
    return k.parse_all_responses(out), fin, reset


def closing():
    close = b"GET /a.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    rs, fin, reset = after_close(close)
    t.check("Connection: close, nothing after: answered, then closed at once (a later "
            "byte meets a reset)", [r.status for r in rs] == [200] and fin and reset,
            "%r fin %s reset %s" % (rs, fin, reset))
    rs, fin, reset = after_close(close + b"GET /sub/ HTTP/1.1\r\nHost: a\r\n\r\n")
    t.check("Connection: close with a request after it: answered, then a lingering close "
            "(a later byte is dropped, no reset)",
            [r.status for r in rs] == [200] and rs[0].body == files["a.txt"] and fin and
            not reset, "%r fin %s reset %s" % (rs, fin, reset))


t.run("closing", closing)

DATA_SEGS_IN = 152  # offset of tcpi_data_segs_in in struct tcp_info (4.6+)
ENGINE_USER_TX = k.ENGINE == "uring" and not k.host_has_ktls()


def last_segment():
    """The uring engine on userspace TX sends the last answer, close_notify and
    the FIN in one segment: count the data segments (a FIN counts as one) that
    reach the client after its request. TLS 1.2, so that no ticket comes after
    the handshake."""
    if not ENGINE_USER_TX:
        t.skip("last answer, close_notify and FIN in one segment",
               "only the uring engine on userspace TX (engine %s, kTLS %s)"
               % (k.ENGINE, k.host_has_ktls()))
        return
    ctx = k.tls_context(cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    raw = socket.create_connection(("127.0.0.1", PORT), timeout=15)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        def segs():
            info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, DATA_SEGS_IN + 4)
            return struct.unpack_from("I", info, DATA_SEGS_IN)[0]
        before = segs()
        s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        out = k.recv_all(s)  # to close_notify
        n = segs() - before
    rs = k.parse_all_responses(out)
    t.check("last answer, close_notify and FIN in one segment",
            [r.status for r in rs] == [200] and n == 1, "%r, %d data segments" % (rs, n))


t.run("last segment", last_segment)


def via_s_client():
    """Two requests on one connection with openssl s_client (the brief's recipe)."""
    req = (b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
           b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % PORT, "-servername",
                        "localhost", "-CAfile", cert, "-verify_return_error", "-quiet"],
                       input=req, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    rs = k.parse_all_responses(r.stdout)
    t.check("s_client: two requests, one connection",
            [x.status for x in rs] == [200, 200] and rs[1].body == INDEX, repr(r.stdout[:300]))


t.run("s_client", via_s_client)


def kts_client_http():
    r = k.kts_client(["--ca", cert, "--include", "--get", "/a.txt", "localhost:%d" % PORT])
    t.check("kts-client --include writes head and body",
            r.returncode == 0 and r.stdout.startswith(b"HTTP/1.1 200 OK\r\n") and
            r.stdout.endswith(b"\r\n\r\n" + files["a.txt"]), repr(r.stdout[:300]))
    r = k.kts_client(["--ca", cert, "--get", "/missing", "localhost:%d" % PORT])
    err = r.stderr.decode(errors="replace")
    t.check("kts-client --get 404: exit 1, message, no body on stdout",
            r.returncode == 1 and "404" in err and err.startswith("kts-client: ") and
            r.stdout == b"", "rc %d out %r err %r" % (r.returncode, r.stdout, err))
    r = k.kts_client(["--ca", cert, "--get", "/with%20space.txt", "127.0.0.1:%d" % PORT])
    t.check("kts-client to a numeric address verifies the IP SAN",
            r.returncode == 0 and r.stdout == b"spaced\n", r.stderr.decode(errors="replace"))


t.run("kts-client http", kts_client_http)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def no_fd_left():
    """Every file and socket the requests opened is closed once they end
    (the uring engine closes them on the ring, with its next submit)."""
    base = fd_count(srv.p.pid)
    for path in ["/a.txt", "/sub/", "/missing", "/empty.bin", "/index.html"]:
        get1(path)
        get1(path, method="HEAD")
    with k.https_connect(PORT, cert) as s:  # keep-alive, then the client leaves
        s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        k.read_response(s, bytearray())
    end = time.monotonic() + 5
    while fd_count(srv.p.pid) != base and time.monotonic() < end:
        time.sleep(0.05)
    t.check("after 11 connections, the server holds as many fds as before (%d)" % base,
            fd_count(srv.p.pid) == base, "%d fds now" % fd_count(srv.p.pid))


t.run("no fd left", no_fd_left)

time.sleep(0.2)
t.check("server logged no unexpected errors",
        all(" error: " not in l or "handshake" in l for l in srv.stderr().splitlines()),
        srv.stderr()[-2000:])
t.done()
