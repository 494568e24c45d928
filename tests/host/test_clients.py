#!/usr/bin/env python3
"""Third-party clients against kts-server: curl (6 protocol/cipher combinations,
connection reuse with two URLs) and gnutls-cli (6 combinations)."""
import os
import re
import shutil
import subprocess

import ktshost as k

t = k.Suite("clients", deadline=150)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
digest = k.write_random(os.path.join(root, "file.bin"), 1024 * 1024 + 3)
text = "kts gnutls interop line\n" * 50
with open(os.path.join(root, "t.txt"), "w") as f:
    f.write(text)
want = k.expected_paths()
srv = k.KtsServer(d, root, cert, key)


def server_saw(version, cipher):
    lines = [c for c in srv.conn_lines() if c["version"] == version and c["cipher"] == cipher]
    return bool(lines) and lines[-1]["tx"] == want and lines[-1]["rx"] == want


def curl(tls, version, cipher):
    name = "curl -> kts-server %s %s" % (version, cipher)
    out = os.path.join(d, "curl.out")
    argv = ["curl", "-sS", "--fail", "--cacert", cert, "-o", out,
            "https://localhost:%d/file.bin" % srv.port]
    if tls == "1.2":
        argv += ["--tlsv1.2", "--tls-max", "1.2", "--ciphers", cipher]
    else:
        argv += ["--tlsv1.3", "--tls-max", "1.3", "--tls13-ciphers", cipher]
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    t.check(name + ": sha256", r.returncode == 0 and k.sha256_file(out) == digest,
            r.stderr.decode(errors="replace"))
    t.check(name + ": server status", server_saw(version, cipher), srv.stderr()[-1500:])


def curl_reuse():
    before = len(srv.conn_lines())
    o1, o2 = os.path.join(d, "c1"), os.path.join(d, "c2")
    r = subprocess.run(["curl", "-sS", "-v", "--fail", "--cacert", cert,
                        "https://localhost:%d/file.bin" % srv.port, "-o", o1,
                        "https://localhost:%d/t.txt" % srv.port, "-o", o2],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    err = r.stderr.decode(errors="replace")
    t.check("curl two URLs: both bodies", r.returncode == 0 and
            k.sha256_file(o1) == digest and open(o2).read() == text, err[-2000:])
    t.check("curl two URLs: one connection (keep-alive)",
            re.search(r"Re-using existing connection", err) and
            len(srv.conn_lines()) == before + 1, err[-2000:])


def gnutls(tls, version, cipher, gname):
    name = "gnutls-cli -> kts-server %s %s" % (version, cipher)
    prio = "NORMAL:-VERS-ALL:+VERS-TLS%s:-CIPHER-ALL:+%s" % (tls, gname)
    req = b"GET /t.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    r = subprocess.run(["gnutls-cli", "--x509cafile", cert, "-p", str(srv.port), "localhost",
                        "--priority", prio], input=req, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    out = r.stdout.decode(errors="replace")
    t.check(name + ": 200 and body", r.returncode == 0 and "HTTP/1.1 200 OK" in out and
            ("\r\n\r\n" + text) in out, out[-1500:] + r.stderr.decode(errors="replace"))
    t.check(name + ": gnutls negotiated", ("(TLS%s" % tls) in out and
            ("(%s)" % gname) in out, out[:1500])
    t.check(name + ": server status", server_saw(version, cipher), srv.stderr()[-1500:])


if shutil.which("curl"):
    for tls, version, cipher, _ in k.MATRIX:
        t.run("curl " + cipher, curl, tls, version, cipher)
    t.run("curl reuse", curl_reuse)
else:
    t.skip("curl", "curl not installed")

if shutil.which("gnutls-cli"):
    for tls, version, cipher, gname in k.MATRIX:
        t.run("gnutls " + cipher, gnutls, tls, version, cipher, gname)
else:
    t.skip("gnutls-cli", "gnutls-cli not installed")

t.done()
