#!/usr/bin/env python3
"""kts-client <-> kts-server: TLS 1.2 and 1.3 x AES-128-GCM, AES-256-GCM,
ChaCha20-Poly1305; negotiated version/cipher from --status on both sides, file hash."""
import os

import ktshost as k

t = k.Suite("matrix", deadline=100)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
digest = k.write_random(os.path.join(root, "file.bin"), 3 * 1024 * 1024 + 17)
want = k.expected_paths()
srv = k.KtsServer(d, root, cert, key, "--status")


def one(tls, version, cipher, server=srv, client_restricts=True):
    name = "kts-client -> kts-server %s %s%s" % (
        version, cipher, "" if client_restricts else " (server restricts)")
    args = ["--ca", cert, "--status", "--get", "/file.bin"]
    if client_restricts:
        args += ["--tls", tls, "--ciphers", cipher]
    r = k.kts_client(args + ["localhost:%d" % server.port], timeout=30)
    err = r.stderr.decode(errors="replace")
    st = k.parse_status(err)
    if not t.check(name + ": exit 0", r.returncode == 0, err):
        return
    t.check(name + ": sha256", k.sha256(r.stdout) == digest,
            "got %d bytes" % len(r.stdout))
    t.check(name + ": client status", st is not None and st["version"] == version and
            st["cipher"] == cipher and st["tx"] == want and st["rx"] == want,
            "status %r, want %s/%s tx=rx=%s\n%s" % (st, version, cipher, want, err))
    reasons = k.parse_reasons(err)
    if want == "user":
        t.check(name + ": client reasons", set(reasons) == {"tx", "rx"} and
                all(reasons.values()), err)
    lines = [c for c in server.conn_lines() if c["version"] == version and
             c["cipher"] == cipher]
    t.check(name + ": server status", lines and lines[-1]["tx"] == want and
            lines[-1]["rx"] == want, server.stderr()[-1500:])


for tls, version, cipher, _ in k.MATRIX:
    t.run(version + " " + cipher, one, tls, version, cipher)

# The same protocol/cipher restrictions given to the server instead of the client.
for tls, version, cipher in (("1.2", "TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305"),
                             ("1.3", "TLSv1.3", "TLS_AES_128_GCM_SHA256")):
    s2 = k.KtsServer(d, root, cert, key, "--tls", tls, "--ciphers", cipher,
                     name="kts-server-" + tls)
    t.run("server restricts " + cipher, one, tls, version, cipher, server=s2,
          client_restricts=False)
    s2.stop()

# A mixed list: the TLS 1.2 part and the TLS 1.3 part each apply to their protocol.
for tls, version, cipher in (("1.2", "TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"),
                             ("1.3", "TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256")):
    r = k.kts_client(["--ca", cert, "--status", "--tls", tls, "--ciphers",
                      "ECDHE-ECDSA-AES256-GCM-SHA384:TLS_CHACHA20_POLY1305_SHA256",
                      "--get", "/file.bin", "localhost:%d" % srv.port], timeout=30)
    st = k.parse_status(r.stderr.decode(errors="replace"))
    t.check("mixed --ciphers list picks %s for %s" % (cipher, version),
            r.returncode == 0 and st and st["cipher"] == cipher and st["version"] == version,
            r.stderr.decode(errors="replace"))

# No common cipher: both sides fail cleanly.
s3 = k.KtsServer(d, root, cert, key, "--tls", "1.2", "--ciphers",
                 "ECDHE-ECDSA-AES128-GCM-SHA256", name="kts-server-narrow")
r = k.kts_client(["--ca", cert, "--tls", "1.2", "--ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305",
                  "--get", "/file.bin", "localhost:%d" % s3.port], timeout=30)
err = r.stderr.decode(errors="replace")
t.check("no shared cipher: client exits 1 with a handshake message",
        r.returncode == 1 and err.startswith("kts-client: handshake:"), err)
t.check("no shared cipher: server logs the failure",
        s3.logged(r"error: handshake:"), s3.stderr())
s3.stop()

t.done()
