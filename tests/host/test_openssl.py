#!/usr/bin/env python3
"""Interop with the openssl command:
  kts-client -> openssl s_server -WWW (file download) and s_server -rev (echo),
  openssl s_client -> kts-server (HTTP request on stdin),
for TLS 1.2 and 1.3 x AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305; and the
TLS 1.2 defaults (ECDHE + AEAD only) against s_client offering CBC or static RSA."""
import os
import subprocess

import ktshost as k

t = k.Suite("openssl", deadline=150)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
digest = k.write_random(os.path.join(root, "file.bin"), 2 * 1024 * 1024 + 5)
want = k.expected_paths()


def proto_args(tls, cipher):
    if tls == "1.2":
        return ["-tls1_2", "-cipher", cipher]
    return ["-tls1_3", "-ciphersuites", cipher]


def client_to_s_server(tls, version, cipher):
    name = "kts-client -> s_server -WWW %s %s" % (version, cipher)
    ss = k.SServer(d, cert, key, "-WWW", *proto_args(tls, cipher), cwd=root)
    try:
        r = k.kts_client(["--ca", cert, "--status", "--get", "/file.bin",
                          "localhost:%d" % ss.port], timeout=30)
    finally:
        ss.stop()
    err = r.stderr.decode(errors="replace")
    st = k.parse_status(err)
    if t.check(name + ": exit 0", r.returncode == 0, err + ss.stderr()):
        t.check(name + ": sha256", k.sha256(r.stdout) == digest, "%d bytes" % len(r.stdout))
        t.check(name + ": status", st and st["version"] == version and st["cipher"] == cipher
                and st["tx"] == want and st["rx"] == want, err)


def client_to_s_server_rev(tls, version, cipher):
    """Both directions in pipe mode: s_server -rev answers each line reversed."""
    name = "kts-client pipe <-> s_server -rev %s %s" % (version, cipher)
    ss = k.SServer(d, cert, key, "-rev", *proto_args(tls, cipher))
    lines = [("line %d " % i) + os.urandom(300).hex() for i in range(2000)]
    data = "".join(l + "\n" for l in lines).encode()
    try:
        r = k.kts_client(["--ca", cert, "--status", "localhost:%d" % ss.port], input=data,
                         timeout=30)
    finally:
        ss.stop()
    err = r.stderr.decode(errors="replace")
    expect = "".join(l[::-1] + "\n" for l in lines).encode()
    st = k.parse_status(err)
    t.check(name, r.returncode == 0 and r.stdout == expect and st and
            st["version"] == version and st["cipher"] == cipher,
            "rc %d, %d of %d bytes back\n%s" % (r.returncode, len(r.stdout), len(expect), err))


srv = k.KtsServer(d, root, cert, key)


def s_client_to_server(tls, version, cipher):
    name = "s_client -> kts-server %s %s" % (version, cipher)
    req = b"GET /file.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port, "-servername",
            "localhost", "-CAfile", cert, "-verify_return_error", "-brief", "-quiet"]
    r = subprocess.run(argv + proto_args(tls, cipher), input=req, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    err = r.stderr.decode(errors="replace")
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    t.check(name + ": 200 + sha256", r.returncode == 0 and head.startswith(b"HTTP/1.1 200 ")
            and k.sha256(body) == digest,
            "rc %d head %r body %d bytes\n%s" % (r.returncode, head[:200], len(body), err))
    t.check(name + ": s_client saw " + version, "Protocol version: " + version in err and
            "Ciphersuite: " + cipher in err, err)
    lines = [c for c in srv.conn_lines() if c["version"] == version and c["cipher"] == cipher]
    t.check(name + ": server status", lines and lines[-1]["tx"] == want and
            lines[-1]["rx"] == want, srv.stderr()[-1500:])


def default_ciphers():
    """TLS 1.2 defaults are ECDHE + AEAD: s_client offering only CBC or static
    RSA suites gets no handshake; a server's own --ciphers list wins."""
    rd = k.tmpdir()
    rcert, rkey = os.path.join(rd, "rsa.pem"), os.path.join(rd, "rsa.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", rkey,
                    "-out", rcert, "-days", "2", "-subj", "/CN=localhost"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    srv = k.KtsServer(d, root, rcert, rkey, name="rsa-defaults")
    try:
        for cipher in ("AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA",
                       "ECDHE-RSA-AES256-SHA384"):
            rc, how, resp, why = k.s_client(srv.port, "-tls1_2", "-cipher", cipher)
            t.check("default ciphers refuse " + cipher,
                    rc != 0 and not resp and "handshake failure" in why, why)
        rc, how, resp, why = k.s_client(srv.port, "-tls1_2", "-cipher",
                                        "ECDHE-RSA-AES128-GCM-SHA256")
        t.check("default ciphers take ECDHE-RSA-AES128-GCM-SHA256", rc == 0 and how == "New", why)
    finally:
        srv.stop()
    srv = k.KtsServer(d, root, rcert, rkey, "--ciphers", "AES128-SHA", name="rsa-cbc")
    try:
        rc, how, resp, why = k.s_client(srv.port, "-tls1_2", "-cipher", "AES128-SHA")
        t.check("--ciphers AES128-SHA: the caller's list wins", rc == 0 and how == "New" and
                resp.startswith(b"HTTP/1.1 200 "), why)
    finally:
        srv.stop()


t.run("default ciphers", default_ciphers)
for tls, version, cipher, _ in k.MATRIX:
    t.run("s_server " + cipher, client_to_s_server, tls, version, cipher)
    t.run("s_server -rev " + cipher, client_to_s_server_rev, tls, version, cipher)
    t.run("s_client " + cipher, s_client_to_server, tls, version, cipher)

t.done()
