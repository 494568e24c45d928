#!/usr/bin/env python3
"""kts-client --get against a real nginx (Debian package nginx-light): an 8 MiB
file over TLS 1.2 and 1.3 x AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305, a 404,
and TLS 1.3 NewSessionTickets after the handshake.

nginx 1.22 + OpenSSL 3.0 sends two TLS 1.3 tickets per connection even with
"ssl_session_tickets off; ssl_session_cache off;" (stateful ones then); only
"ssl_conf_command NumTickets 0" stops them. The matrix runs against a ticket-free
server (checked to send none) and, for TLS 1.3, the default one: on a kTLS kernel
the tickets then arrive through kernel RX and kts must hand them to OpenSSL."""
import os
import re
import subprocess

import ktshost as k

t = k.Suite("nginx", deadline=50)
if not k.NGINX:
    t.fail("nginx installed", "nginx not found: install the Debian package nginx-light "
           "(tools/setup-debian.sh test)")
    t.done()

d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
path = os.path.join(root, "file.bin")
digest = k.write_random(path, 8 * 1024 * 1024)
want = k.expected_paths()

def tickets(port, tls):
    """NewSessionTicket messages received on one connection (openssl s_client -msg)."""
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "localhost", "-CAfile", cert, "-verify_return_error",
                        "-tls" + tls.replace(".", "_"), "-msg", "-ign_eof"],
                       input=b"GET /missing HTTP/1.0\r\n\r\n", stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    out = r.stdout.decode(errors="replace")
    if r.returncode != 0 or "HTTP/1.1 404" not in out:
        raise RuntimeError("s_client failed (%d):\n%s" % (r.returncode, out[-2000:]))
    return len(re.findall(r"^<<< .*NewSessionTicket$", out, re.M))


def get(port, tls, cipher=None, target="/file.bin"):
    args = ["--ca", cert, "--status", "--timeout", "10", "--tls", tls]
    if cipher:
        args += ["--ciphers", cipher]
    r = k.kts_client(args + ["--get", target, "localhost:%d" % port], timeout=30)
    return r, r.stderr.decode(errors="replace")


def download(srv, tls, version, cipher):
    """The client offers only this version and cipher, so nginx must pick them."""
    name = "kts-client -> nginx %s %s" % (version, cipher)
    r, err = get(srv.port, tls, cipher)
    st = k.parse_status(err)
    if t.check(name + ": exit 0", r.returncode == 0, err + srv.stderr()[-1500:]):
        t.check(name + ": sha256", k.sha256(r.stdout) == digest, "%d bytes" % len(r.stdout))
        t.check(name + ": status", st and st["version"] == version and st["cipher"] == cipher
                and st["tx"] == want and st["rx"] == want, err)


def with_tickets(srv):
    """TLS 1.3 with tickets after the handshake: the download is whole on either
    path (with RX in the kernel the tickets come through it)."""
    name = "kts-client -> nginx TLS 1.3 with tickets, rx=%s" % want
    r, err = get(srv.port, "1.3")
    t.check(name + ": download", r.returncode == 0 and k.sha256(r.stdout) == digest,
            "rc %d, %d bytes\n%s" % (r.returncode, len(r.stdout), err))


def missing(srv):
    r, err = get(srv.port, "1.2-1.3", target="/missing")
    t.check("kts-client -> nginx /missing: exit 1, 404 in the message", r.returncode == 1 and
            "server answered 404 Not Found" in err and r.stdout == b"", err)


def ticket_counts():
    n = tickets(quiet.port, "1.3")
    t.check("nginx with NumTickets 0: no TLS 1.3 tickets", n == 0, "%d tickets" % n)
    n = tickets(chatty.port, "1.3")
    t.check("nginx by default: TLS 1.3 tickets", n > 0, "%d tickets" % n)


quiet = k.Nginx(d, cert, key, root, "no-tickets",
                "ssl_session_tickets off; ssl_conf_command NumTickets 0;")
chatty = k.Nginx(d, cert, key, root, "tickets")
t.run("ticket counts", ticket_counts)
for tls, version, cipher, _ in k.MATRIX:
    t.run("nginx " + cipher, download, quiet, tls, version, cipher)
t.run("tickets", with_tickets, chatty)
t.run("404", missing, quiet)
t.done()
