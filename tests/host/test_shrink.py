#!/usr/bin/env python3
"""kts-server's io_uring engine frees OpenSSL's state of an idle userspace
connection (kts_shrink) and serves it on through kts's own record work, with
real peers: Python's ssl (TLS 1.2 always; TLS 1.3 unless --no-tls13-seal
leaves its secrets uncollected), bodies checked by hash after the switch, and
openssl s_client sending a KeyUpdate that asks for one back. ktsctl status
counts the connections that freed OpenSSL. Where the host has kTLS these
connections are in the kernel and freed at the handoff instead: the same
counts hold."""
import json
import os
import socket
import ssl
import subprocess
import threading
import time

import ktshost as k

t = k.Suite("shrink", deadline=90)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
SMALL = k.write_random(os.path.join(root, "small.bin"), 1000)
BIG = k.write_random(os.path.join(root, "big.bin"), 3 << 20)
IDLE = 0.3  # several of the engine's 50 ms ticks


def freed(sock):
    rc, out, err = k.ktsctl("status", "--json", sock)
    if rc != 0:
        raise RuntimeError("ktsctl status: rc %d: %s%s" % (rc, out, err))
    return json.loads(out)["connections"]["openssl_freed"]


def wait_freed(sock, n, timeout=5):
    end = time.monotonic() + timeout
    while True:
        got = freed(sock)
        if got >= n or time.monotonic() > end:
            return got
        time.sleep(0.05)


def get(s, buf, path):
    s.sendall(b"GET /%s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path.encode())
    return k.read_response(s, buf)


def keep_alive(port, version):
    """Two requests, idle between them: (sha of the first body, of the second)."""
    ctx = k.tls_context(cert)
    ctx.minimum_version = ctx.maximum_version = version
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=15),
                         server_hostname="localhost") as s:
        buf = bytearray()
        first = k.sha256(get(s, buf, "small.bin").body)
        yield first
        second = k.sha256(get(s, buf, "big.bin").body)
        third = k.sha256(get(s, buf, "small.bin").body)
        yield (second, third)
        s.unwrap()  # close_notify both ways


def scenario(name, extra, version, want_free):
    sock = os.path.join(d, name + ".sock")
    srv = k.KtsServer(d, root, cert, key, "--control", sock, *extra, name="srv-" + name)
    try:
        it = keep_alive(srv.port, version)
        first = next(it)
        time.sleep(IDLE)
        got = wait_freed(sock, want_free, timeout=5 if want_free else IDLE)
        t.check("%s: idle connection freed OpenSSL's state: %d (want %d)" % (name, got, want_free),
                got == want_free)
        second, third = next(it)
        t.check("%s: bodies by hash before and after (1000 B, 3 MiB, 1000 B)" % name,
                (first, second, third) == (SMALL, BIG, SMALL))
        for _ in it:
            pass
        errors = [line for line in srv.stderr().splitlines() if " error: " in line]
        t.check("%s: no connection errors logged" % name, not errors, errors)
    finally:
        srv.stop()


def key_update():
    """openssl s_client asks for a KeyUpdate on a connection kts took over."""
    sock = os.path.join(d, "ku.sock")
    srv = k.KtsServer(d, root, cert, key, "--control", sock, name="srv-ku")
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port,
                          "-servername", "localhost", "-tls1_3", "-no_ign_eof"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        req = b"GET /small.bin HTTP/1.1\r\nHost: localhost\r\n\r\n"
        p.stdin.write(req)
        p.stdin.flush()
        time.sleep(IDLE)
        got = wait_freed(sock, 1)
        t.check("KeyUpdate: the s_client connection freed OpenSSL's state", got == 1, got)
        p.stdin.write(b"K\n")  # KeyUpdate, update_requested
        p.stdin.flush()
        time.sleep(0.2)
        p.stdin.write(req.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        p.stdin.flush()
        # stdin stays open: at its end s_client would quit before the answer.
        killer = threading.Timer(20, p.kill)
        killer.start()
        out = p.stdout.read()  # until the server closes after the answer
        killer.cancel()
        p.stdin.close()
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        srv.stop()
    bodies = []
    for chunk in out.split(b"HTTP/1.1 ")[1:]:
        _, body = k.http_body(b"HTTP/1.1 " + chunk)
        bodies.append(k.sha256(body))
    t.check("KeyUpdate: s_client sent it, and both responses arrived whole",
            b"KEYUPDATE" in out and bodies == [SMALL, SMALL],
            (bodies, out[-400:].decode("latin-1")))
    errors = [line for line in srv.stderr().splitlines() if " error: " in line]
    t.check("KeyUpdate: no connection errors logged", not errors, errors)


if k.ENGINE != "uring":
    t.skip("idle connections", "only the io_uring engine owns its connections' I/O")
else:
    kt = k.host_has_ktls()
    t.run("tls12", scenario, "tls12", [], ssl.TLSVersion.TLSv1_2, 1)
    t.run("tls13", scenario, "tls13", [], ssl.TLSVersion.TLSv1_3, 1)
    # Without kTLS, --no-tls13-seal collects no TLS 1.3 secrets: OpenSSL stays.
    t.run("tls13-noseal", scenario, "tls13-noseal", ["--no-tls13-seal"], ssl.TLSVersion.TLSv1_3,
          1 if kt else 0)
    if kt:
        t.skip("key-update", "kTLS here: a KeyUpdate goes to the kernel (the kernel tier tests it)")
    else:
        t.run("key-update", key_update)
t.done()
