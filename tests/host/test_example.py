#!/usr/bin/env python3
"""The io_uring example program (tools/examples/uring_https.c) as a server for
curl and openssl s_client, and as a client of openssl s_server -WWW, over TLS
1.2 and 1.3, and as a client of nginx: bodies by SHA-256, a 404, and the path
each connection took."""
import os
import re
import shutil
import subprocess
import time

import ktshost as k

t = k.Suite("example", deadline=100)
EXAMPLE = os.environ.get("KTS_EXAMPLE", os.path.join("build", "tools", "examples", "uring_https"))
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
digest = k.write_random(os.path.join(root, "file.bin"), 3 * 1024 * 1024 + 7)
want = k.expected_paths()
PATHS_RE = re.compile(r"^conn \d+: (TLSv1\.[23]) \S+ tx=(\w+) rx=(\w+)$", re.M)


def split_response(data):
    i = data.find(b"\r\n\r\n")
    return (data[:i].decode(errors="replace"), data[i + 4:]) if i >= 0 else ("", b"")


def serve(count):
    for attempt in range(5):
        port = k.free_port()
        p = k.Proc([EXAMPLE, "serve", str(port), cert, key, root, str(count)], d, "example")
        # Ready once it listens (slow under ASan and load); a test connect
        # would count as one of its connections.
        end = time.monotonic() + 20
        while p.p.poll() is None and not k.listening(port) and time.monotonic() < end:
            time.sleep(0.05)
        if p.p.poll() is None:
            return p, port
        if attempt == 4 or "in use" not in p.stderr():
            raise RuntimeError("example server exited: " + p.stderr())
    raise RuntimeError("no free port")


def server_cases():
    clients = []
    curl = shutil.which("curl")
    if curl:
        for tls in ("1.2", "1.3"):
            clients.append(("curl TLS " + tls, [
                curl, "-sS", "--cacert", cert, "--tlsv" + tls, "--tls-max", tls,
                "--resolve", "localhost:%d:127.0.0.1", "https://localhost:%d/file.bin"]))
    for tls in ("1.2", "1.3"):
        clients.append(("s_client TLS " + tls, [
            "openssl", "s_client", "-quiet", "-ign_eof", "-connect", "127.0.0.1:%d",
            "-servername", "localhost", "-CAfile", cert, "-verify_return_error",
            "-tls" + tls.replace(".", "_")]))
    srv, port = serve(len(clients) + 1)
    try:
        for name, argv in clients:
            argv = [a.replace("%d", str(port)) if "%d" in a else a for a in argv]
            r = subprocess.run(argv, input=b"GET /file.bin HTTP/1.1\r\nHost: x\r\n\r\n",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            body = r.stdout if name.startswith("curl") else split_response(r.stdout)[1]
            t.check("example server <- %s: sha256" % name,
                    r.returncode == 0 and k.sha256(body) == digest,
                    "rc %d, %d bytes\n%s" % (r.returncode, len(body),
                                             r.stderr.decode(errors="replace")[-1500:]))
        r = subprocess.run(["openssl", "s_client", "-quiet", "-ign_eof", "-connect",
                            "127.0.0.1:%d" % port, "-CAfile", cert],
                           input=b"GET /missing HTTP/1.1\r\n\r\n", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        t.check("example server: 404", split_response(r.stdout)[0].startswith("HTTP/1.1 404"),
                r.stdout[:200])
        srv.wait(10)
    finally:
        srv.stop()
    paths = PATHS_RE.findall(srv.stderr())
    t.check("example server: every connection on the expected path",
            len(paths) == len(clients) + 1 and all(p[1] == want and p[2] == want for p in paths),
            srv.stderr())


def get_case(name, port, tls):
    """The example as a client: fetch /file.bin, check it by hash and the
    paths it reports."""
    r = subprocess.run([EXAMPLE, "get", "127.0.0.1", str(port), "/file.bin", cert],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    err = r.stderr.decode(errors="replace")
    head, body = split_response(r.stdout)
    m = PATHS_RE.search(err)
    t.check(name + ": sha256", r.returncode == 0 and k.sha256(body) == digest,
            "rc %d, %s, %d bytes\n%s" % (r.returncode, head[:60], len(body), err))
    t.check(name + ": paths", m and m.group(1) == "TLSv" + tls and m.group(2) == want and
            m.group(3) == want, err)


def client_case(tls):
    ss = k.SServer(d, cert, key, "-WWW", "-tls" + tls.replace(".", "_"), cwd=root)
    try:
        get_case("example client -> s_server -WWW TLS " + tls, ss.port, tls)
    finally:
        ss.stop()


def nginx_case(ng, tls):
    """TLS 1.3 nginx sends two tickets after the handshake, which on a kTLS
    kernel arrive through kernel RX."""
    get_case("example client -> nginx TLS " + tls, ng.port, tls)


t.run("example server", server_cases)
for tls in ("1.2", "1.3"):
    t.run("example client " + tls, client_case, tls)
if k.NGINX:
    for tls in ("1.2", "1.3"):
        ng = k.Nginx(d, cert, key, root, "nginx-" + tls,
                     "ssl_conf_command MaxProtocol TLSv1.2;" if tls == "1.2" else "")
        try:
            t.run("example client nginx " + tls, nginx_case, ng, tls)
        finally:
            ng.stop()
else:
    t.fail("nginx installed", "nginx not found: install nginx-light (tools/setup-debian.sh test)")
t.done()
