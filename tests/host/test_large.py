#!/usr/bin/env python3
"""64 MiB transfers checked by sha256: downloads through kts-server (kts-client
TLS 1.2/1.3, curl, s_client; kts seals TLS 1.3 bodies itself without kTLS,
and with --no-tls13-seal OpenSSL does) and through openssl s_server (kts-client), and an
upload + echo in pipe mode against a Python TLS echo server."""
import os
import subprocess

import ktshost as k

SIZE = 64 * 1024 * 1024 + 4321  # not a multiple of any record or buffer size

t = k.Suite("large", deadline=200)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
big = os.path.join(root, "big.bin")
digest = k.write_random(big, SIZE)
srv = k.KtsServer(d, root, cert, key)
out = os.path.join(d, "out.bin")


def check_out(name, r, extra=""):
    err = r.stderr.decode(errors="replace") if r.stderr else ""
    ok = r.returncode == 0 and os.path.getsize(out) == SIZE and k.sha256_file(out) == digest
    t.check(name, ok, "rc %d, %d of %d bytes\n%s%s" % (
        r.returncode, os.path.getsize(out), SIZE, err[-1500:], extra))
    os.unlink(out)


def kts_download(tls, cipher, port, name):
    with open(out, "wb") as f:
        r = k.kts_client(["--ca", cert, "--tls", tls, "--ciphers", cipher, "--get", "/big.bin",
                          "localhost:%d" % port], stdout=f, timeout=90)
    check_out(name, r)


t.run("kts 1.3", kts_download, "1.3", "TLS_AES_128_GCM_SHA256", srv.port,
      "64 MiB kts-server -> kts-client TLS 1.3 AES-128-GCM")
t.run("kts 1.2", kts_download, "1.2", "ECDHE-ECDSA-CHACHA20-POLY1305", srv.port,
      "64 MiB kts-server -> kts-client TLS 1.2 ChaCha20-Poly1305")


def curl_download(server=srv, what=""):
    r = subprocess.run(["curl", "-sS", "--fail", "--cacert", cert, "-o", out,
                        "https://localhost:%d/big.bin" % server.port],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
    check_out("64 MiB kts-server%s -> curl" % what, r)


t.run("curl", curl_download)


def s_client_download(server=srv, what="", proto=("-tls1_2", "-cipher",
                                                  "ECDHE-ECDSA-AES256-GCM-SHA384")):
    req = b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % server.port,
                        "-servername", "localhost", "-CAfile", cert, "-verify_return_error",
                        "-quiet"] + list(proto),
                       input=req, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    t.check("64 MiB kts-server%s -> s_client %s" % (what, " ".join(proto)),
            r.returncode == 0 and len(body) == SIZE and k.sha256(body) == digest,
            "rc %d head %r, %d bytes" % (r.returncode, head[:100], len(body)))


t.run("s_client", s_client_download)

# TLS 1.3 bodies sealed by OpenSSL where the kernel has no kTLS (the
# default server above has kts seal them).
noseal = k.KtsServer(d, root, cert, key, "--no-tls13-seal", name="kts-server-noseal")
t.run("noseal curl", curl_download, noseal, " --no-tls13-seal")
t.run("noseal s_client", s_client_download, noseal, " --no-tls13-seal",
      ("-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"))
t.run("noseal kts 1.3", kts_download, "1.3", "TLS_AES_256_GCM_SHA384", noseal.port,
      "64 MiB kts-server --no-tls13-seal -> kts-client TLS 1.3 AES-256-GCM")
noseal.stop()


def s_server_download():
    ss = k.SServer(d, cert, key, "-WWW", "-tls1_3", "-ciphersuites",
                   "TLS_AES_256_GCM_SHA384", cwd=root)
    try:
        kts_download("1.3", "TLS_AES_256_GCM_SHA384", ss.port,
                     "64 MiB s_server -WWW -> kts-client TLS 1.3 AES-256-GCM")
    finally:
        ss.stop()


t.run("s_server", s_server_download)


def upload_echo(version, cipher):
    echo = k.EchoServer(cert, key, version=version)
    with open(big, "rb") as fin, open(out, "wb") as fout:
        r = k.kts_client(["--ca", cert, "--status", "--tls", version, "--ciphers", cipher,
                          "localhost:%d" % echo.port], stdin=fin, stdout=fout, timeout=120)
    echo.join(30)
    check_out("64 MiB upload + echo, kts-client pipe mode TLS %s %s" % (version, cipher), r,
              "echo server received %d bytes, errors %s" % (echo.received, echo.errors))
    t.check("echo server saw all %d bytes and no error (TLS %s)" % (SIZE, version),
            echo.received == SIZE and not echo.errors,
            "received %d, errors %s" % (echo.received, echo.errors))


t.run("upload 1.3", upload_echo, "1.3", "TLS_CHACHA20_POLY1305_SHA256")
t.run("upload 1.2", upload_echo, "1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")

t.done()
