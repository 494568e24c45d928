"""Shared helpers for the host test suite (python3 standard library only).

Every test script imports this module. It provides:
  - a TAP reporter (Suite) whose failures do not stop the other cases,
  - a per-script temporary directory, removed on exit,
  - a throwaway EC P-256 certificate made with the openssl command,
  - starting and stopping servers (kts-server, openssl s_server, a Python TLS
    echo server) on 127.0.0.1 with a free port, always cleaned up,
  - kts-client runs, --status parsing, HTTP helpers over Python's ssl module,
  - file hashing,
  - session resumption helpers: ticket key files, openssl s_client with
    -sess_out/-sess_in, the ticket inside a saved session.
Scripts get the tool paths from the environment (KTS_CLIENT, KTS_SERVER), set by
tests/host/meson.build; they default to the build tree layout when run by hand.
"""

import atexit
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))

TLS12_CIPHERS = [
    ("ECDHE-ECDSA-AES128-GCM-SHA256", "AES-128-GCM"),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", "AES-256-GCM"),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", "CHACHA20-POLY1305"),
]
TLS13_CIPHERS = [
    ("TLS_AES_128_GCM_SHA256", "AES-128-GCM"),
    ("TLS_AES_256_GCM_SHA384", "AES-256-GCM"),
    ("TLS_CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305"),
]
# (tls option, version name, cipher, gnutls cipher name) for the 6 combinations.
MATRIX = [("1.2", "TLSv1.2", c, g) for c, g in TLS12_CIPHERS] + \
         [("1.3", "TLSv1.3", c, g) for c, g in TLS13_CIPHERS]

# The status line of kts-client --status and kts-server's conn lines. With
# kts-server --workers, the prefix starts with "worker PID: ".
STATUS_RE = re.compile(
    r"^(?P<prefix>.*?)offload tx=(?P<tx>\w+) rx=(?P<rx>\w+) version=(?P<version>\S+) "
    r"cipher=(?P<cipher>\S+)(?: resumed=(?P<resumed>yes|no))?$", re.M)
WORKER_RE = re.compile(r"^worker (\d+): ")
REASON_RE = re.compile(r"offload-reason (?P<dir>tx|rx): (?P<reason>.+)$", re.M)


# The kts-server engine the tests run against: tests/host/meson.build runs the
# server, HTTP and resumption scripts once per engine (KTS_ENGINE=uring|threads).
ENGINE = os.environ.get("KTS_ENGINE", "uring")


def tool(name):
    env = {"kts-client": "KTS_CLIENT", "kts-server": "KTS_SERVER", "ktsctl": "KTSCTL"}[name]
    path = os.environ.get(env)
    if not path:
        path = os.path.join(os.environ.get("KTS_BUILD_DIR", "build"), "tools", name)
    return path


def host_has_ktls():
    """True if this kernel has the tls module loaded (or built in)."""
    return os.path.exists("/proc/net/tls_stat")


# ---- reporting ----------------------------------------------------------------

class Suite:
    """TAP output. check() records a case; a failing case prints diagnostics."""

    def __init__(self, name, deadline=None):
        self.name = "%s (%s engine)" % (name, ENGINE)
        self.n = 0
        self.failed = 0
        self.start = time.monotonic()
        if deadline:
            # Our own bound, below meson's timeout: end with a report and clean up.
            signal.signal(signal.SIGALRM, self._timeout)
            signal.alarm(deadline)

    def _timeout(self, signum, frame):
        self.fail("suite deadline", "the script ran out of time")
        self.done()

    def ok(self, name):
        self.n += 1
        print("ok %d - %s" % (self.n, name), flush=True)

    def fail(self, name, why):
        self.n += 1
        self.failed += 1
        print("not ok %d - %s" % (self.n, name), flush=True)
        for line in str(why).rstrip().splitlines() or [""]:
            print("#   " + line, flush=True)

    def check(self, name, cond, why=""):
        if cond:
            self.ok(name)
        else:
            self.fail(name, why)
        return cond

    def todo(self, name, why):
        """A known bug outside the tests: reported, does not fail the run."""
        self.n += 1
        print("not ok %d - %s # TODO %s" % (self.n, name, why), flush=True)

    def skip(self, name, why):
        self.n += 1
        print("ok %d - %s # SKIP %s" % (self.n, name, why), flush=True)

    def run(self, name, fn, *args, **kw):
        """Run fn; an exception fails the case instead of the whole script."""
        try:
            fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 - report every kind of failure
            self.fail(name, "%s: %s" % (type(e).__name__, e))

    def done(self):
        signal.alarm(0)
        print("1..%d" % self.n, flush=True)
        print("# %s: %d cases, %d failed, %.1f s" %
              (self.name, self.n, self.failed, time.monotonic() - self.start), flush=True)
        cleanup()
        os._exit(1 if self.failed else 0)


# ---- temporary files and cleanup ------------------------------------------------

_procs = []
_tmpdirs = []


_hooks = []


def at_cleanup(fn):
    """Run fn at cleanup, after the processes are stopped (namespaces...)."""
    _hooks.append(fn)


def cleanup():
    for p in list(_procs):
        p.stop()
    for fn in _hooks:
        fn()
    _hooks.clear()
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)
    _tmpdirs.clear()


def _on_signal(signum, frame):
    cleanup()
    os._exit(128 + signum)


atexit.register(cleanup)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def tmpdir(prefix="kts-host-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


def make_cert(d, cn="localhost"):
    """Throwaway self-signed EC P-256 certificate for localhost and 127.0.0.1."""
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + cn,
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
    return cert, key


def make_chain(d):
    """A root CA, an intermediate CA and a localhost leaf signed by the
    intermediate (EC P-256). Returns paths (root, intermediate, leaf, leaf_key)."""
    def run(*argv):
        subprocess.run(["openssl"] + list(argv), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=30)
    p = {n: os.path.join(d, "chain-" + n) for n in
         ("root.pem", "root.key", "int.pem", "int.key", "int.csr", "leaf.pem", "leaf.key",
          "leaf.csr", "ca.ext", "leaf.ext")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    with open(p["ca.ext"], "w") as f:
        f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    with open(p["leaf.ext"], "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("req", "-x509", *ec, "-keyout", p["root.key"], "-out", p["root.pem"], "-days", "2",
        "-subj", "/CN=kts test root")
    run("req", *ec, "-keyout", p["int.key"], "-out", p["int.csr"], "-subj", "/CN=kts test int")
    run("x509", "-req", "-in", p["int.csr"], "-CA", p["root.pem"], "-CAkey", p["root.key"],
        "-CAcreateserial", "-days", "2", "-extfile", p["ca.ext"], "-out", p["int.pem"])
    run("req", *ec, "-keyout", p["leaf.key"], "-out", p["leaf.csr"], "-subj", "/CN=localhost")
    run("x509", "-req", "-in", p["leaf.csr"], "-CA", p["int.pem"], "-CAkey", p["int.key"],
        "-CAcreateserial", "-days", "2", "-extfile", p["leaf.ext"], "-out", p["leaf.pem"])
    return p["root.pem"], p["int.pem"], p["leaf.pem"], p["leaf.key"]


def write_random(path, size):
    """A file of size random bytes; returns its sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """Is a TCP socket listening on port? (Read from /proc/net/tcp: a test
    connection would count as a client.)"""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                for line in f.readlines()[1:]:
                    w = line.split()
                    if w[3] == "0A" and int(w[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


# ---- background processes -----------------------------------------------------

class Proc:
    """A background process with its output in files; stop() ends it by pid."""

    def __init__(self, argv, d, name, cwd=None, env=None, stdin=subprocess.DEVNULL):
        self.name = name
        self.out_path = os.path.join(d, name + ".out")
        self.err_path = os.path.join(d, name + ".err")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(argv, stdin=stdin, stdout=self._out, stderr=self._err,
                                  cwd=cwd, env=full_env)
        _procs.append(self)

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_for(self, pattern, where="stderr", timeout=10):
        """Wait until the output matches a regex; returns the match."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self.stderr() if where == "stderr" else self.stdout()
            m = re.search(pattern, text, re.M)
            if m:
                return m
            if self.p.poll() is not None:
                raise RuntimeError("%s exited (%s) before %r:\n%s%s" % (
                    self.name, self.p.returncode, pattern, self.stdout()[-2000:],
                    self.stderr()[-2000:]))
            time.sleep(0.02)
        raise RuntimeError("%s: no %r within %ss:\n%s" % (
            self.name, pattern, timeout, self.stderr()[-2000:]))

    def logged(self, pattern, timeout=5):
        """True once stderr matches pattern (a server may log after the client left)."""
        try:
            self.wait_for(pattern, timeout=timeout)
            return True
        except RuntimeError:
            return False

    def signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def wait(self, timeout=10):
        return self.p.wait(timeout)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(3)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        for f in (self._out, self._err):
            if not f.closed:
                f.close()
        if self in _procs:
            _procs.remove(self)


class KtsServer(Proc):
    def __init__(self, d, root, cert, key, *args, listen="127.0.0.1:0", name="kts-server",
                 env=None):
        argv = [tool("kts-server"), "--engine", ENGINE, "--listen", listen, "--cert", cert,
                "--key", key, "--root", root] + list(args)
        super().__init__(argv, d, name, env=env)
        m = self.wait_for(r"^listening on (\S+):(\d+)$")
        self.host = m.group(1).strip("[]")
        self.port = int(m.group(2))

    def conn_lines(self):
        """Status of each connection (dicts; 'pid' is the worker's with --workers)."""
        out = []
        for m in STATUS_RE.finditer(self.stderr()):
            g = m.groupdict()
            w = WORKER_RE.match(g["prefix"])
            g["pid"] = int(w.group(1)) if w else None
            out.append(g)
        return out


NGINX = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
NGINX_CONF = """
daemon off;
worker_processes 1;
pid %(p)s/nginx.pid;
error_log stderr notice;
%(user)s
events { worker_connections 64; }
http {
  access_log %(p)s/access.log;
  client_body_temp_path %(p)s/body;
  proxy_temp_path %(p)s/proxy;
  fastcgi_temp_path %(p)s/fastcgi;
  uwsgi_temp_path %(p)s/uwsgi;
  scgi_temp_path %(p)s/scgi;
  server {
    listen 127.0.0.1:%(port)d ssl;
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
    ssl_protocols TLSv1.2 TLSv1.3;
    root %(root)s;
    %(extra)s
  }
}
"""


class Nginx(Proc):
    """nginx serving root over TLS on loopback, in the foreground, everything
    under its own directory in the test's temporary directory d; ready once the master has started its worker (its
    listening socket is open by then)."""

    def __init__(self, d, cert, key, root, name, extra=""):
        prefix = os.path.join(d, name)
        os.mkdir(prefix)
        conf = os.path.join(prefix, "nginx.conf")
        # As root the workers would switch to nobody, who cannot read the
        # temporary directory; as non-root "user" is ignored with a warning.
        user = "user root;" if os.geteuid() == 0 else ""
        for attempt in range(5):
            self.port = free_port()
            with open(conf, "w") as f:
                f.write(NGINX_CONF % dict(p=prefix, user=user, port=self.port, cert=cert, key=key,
                                    root=root, extra=extra))
            super().__init__([NGINX, "-p", prefix, "-c", conf, "-e", "stderr"], d, name)
            try:
                self.wait_for(r"start worker process \d+")
                return
            except RuntimeError:
                if attempt == 4 or "ddress already in use" not in self.stderr():
                    raise
                self.stop()


HAPROXY = shutil.which("haproxy", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
HAPROXY_CONF = """
global
  log stderr format raw local0 notice
defaults
  mode http
  log global
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:%(port)d ssl crt %(pem)s %(extra)s
  http-request return status 200 content-type text/plain string ok
"""


class HAProxy(Proc):
    """HAProxy in the foreground answering every request itself over TLS on
    loopback (extra: more bind options, such as tls-ticket-keys FILE); ready
    once its port takes connections."""

    def __init__(self, d, cert, key, name, extra=""):
        prefix = os.path.join(d, name)
        os.mkdir(prefix)
        pem, conf = os.path.join(prefix, "crt.pem"), os.path.join(prefix, "haproxy.cfg")
        with open(pem, "w") as f, open(cert) as c, open(key) as k:
            f.write(c.read() + k.read())
        for attempt in range(5):
            self.port = free_port()
            with open(conf, "w") as f:
                f.write(HAPROXY_CONF % dict(port=self.port, pem=pem, extra=extra))
            super().__init__([HAPROXY, "-db", "-f", conf], d, name)
            if self._ready():
                return
            if attempt == 4 or "ddress already in use" not in self.stderr():
                raise RuntimeError("haproxy did not start:\n" + self.stderr()[-2000:])
            self.stop()

    def _ready(self, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.p.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False


class SServer(Proc):
    """openssl s_server; ready when it prints ACCEPT."""

    def __init__(self, d, cert, key, *args, cwd=None, name="s_server", stdin=None):
        for attempt in range(5):
            self.port = free_port()
            argv = ["openssl", "s_server", "-accept", "127.0.0.1:%d" % self.port, "-cert", cert,
                    "-key", key] + list(args)
            super().__init__(argv, d, name, cwd=cwd,
                             stdin=stdin if stdin is not None else subprocess.DEVNULL)
            try:
                self.wait_for(r"^ACCEPT$", where="stdout")
                return
            except RuntimeError:
                if attempt == 4 or "ddress already in use" not in self.stderr():
                    raise
                self.stop()


class EchoServer:
    """Python TLS echo server (one connection at a time): echoes until the client's
    close_notify, then answers with its own close_notify."""

    def __init__(self, cert, key, version=None, cipher=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if version == "1.2":
            ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            if cipher:
                ctx.set_ciphers(cipher)
        elif version == "1.3":
            ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        self.ctx = ctx
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.errors = []
        self.received = 0
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        try:
            raw, _ = self.sock.accept()
            raw.settimeout(60)
            with self.ctx.wrap_socket(raw, server_side=True) as s:
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    self.received += len(data)
                    s.sendall(data)
                s.unwrap()
        except Exception as e:  # noqa: BLE001
            self.errors.append("%s: %s" % (type(e).__name__, e))

    def join(self, timeout=60):
        self.t.join(timeout)
        self.sock.close()


class CannedServer:
    """Python TLS server answering every connection with fixed bytes, then a
    close_notify (clean=True) or a bare TCP close. Records the requests it got."""

    def __init__(self, cert, key, response, clean=True, conns=1):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.ctx, self.response, self.clean = ctx, response, clean
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.t = threading.Thread(target=self._serve, args=(conns,), daemon=True)
        self.t.start()

    def _serve(self, conns):
        for _ in range(conns):
            try:
                raw, _ = self.sock.accept()
                raw.settimeout(20)
                s = self.ctx.wrap_socket(raw, server_side=True)
                req = b""
                while b"\r\n\r\n" not in req:
                    data = s.recv(65536)
                    if not data:
                        break
                    req += data
                self.requests.append(req)
                s.sendall(self.response)
                if self.clean:
                    try:
                        s.unwrap()
                    except (OSError, ssl.SSLError):
                        pass
                raw.close()
            except (OSError, ssl.SSLError):
                pass

    def join(self, timeout=20):
        self.t.join(timeout)
        self.sock.close()


# ---- clients -------------------------------------------------------------------

def kts_client(args, stdin=None, input=None, timeout=60, stdout=None):
    """Run kts-client; returns CompletedProcess (stdout bytes unless redirected)."""
    return subprocess.run([tool("kts-client")] + list(args), stdin=stdin, input=input,
                          stdout=stdout if stdout is not None else subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


def is_asan_build(path):
    """Was the binary at path built with AddressSanitizer?"""
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


def leak_checked(name, args, input=b"", timeout=60):
    """Run a tool (kts-client, kts-server) under a leak checker: LeakSanitizer in an
    ASan build, valgrind otherwise, counting every kind of leak (memory still
    reachable at exit included: a tool that exits with its connection allocated
    shows only as reachable). Returns (CompletedProcess, checker, leak report or
    ""); checker is None (and nothing run) when neither is available."""
    path = tool(name)
    env = dict(os.environ)
    if is_asan_build(path):
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=1"
        argv, checker = [path], "LeakSanitizer"
    elif shutil.which("valgrind"):
        argv = ["valgrind", "-q", "--leak-check=full", "--show-leak-kinds=all",
                "--errors-for-leak-kinds=all", "--error-exitcode=99", path]
        checker = "valgrind"
    else:
        return None, None, ""
    r = subprocess.run(argv + list(args), input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, env=env)
    err = r.stderr.decode(errors="replace")
    leaked = "LeakSanitizer" in err or re.search(r"blocks are (definitely|indirectly|possibly"
                                                  r" lost|still reachable)", err) or \
        (checker == "valgrind" and r.returncode == 99)
    return r, checker, err if leaked else ""


def parse_status(text):
    """The --status line of a client (dict) or None."""
    m = STATUS_RE.search(text)
    return m.groupdict() if m else None


def parse_reasons(text):
    return {m.group("dir"): m.group("reason") for m in REASON_RE.finditer(text)}


def expected_paths():
    """What --status should say for tx/rx with --offload auto on this host."""
    return "kernel" if host_has_ktls() else "user"


def tls_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx


def https_connect(port, cafile, host="127.0.0.1", timeout=15):
    ctx = tls_context(cafile)
    raw = socket.create_connection((host, port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def recv_all(s):
    """Read until the peer closes (close_notify or TCP close)."""
    chunks = []
    while True:
        try:
            data = s.recv(65536)
        except (ssl.SSLEOFError, ConnectionResetError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> value
        self.body = body
        self.raw_head = raw_head


def read_response(s, buf, head_only=False):
    """Read one HTTP response from s, buf is leftover bytes (bytearray, updated)."""
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        if not data:
            raise RuntimeError("connection closed before a complete response head: %r" % bytes(buf))
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = 0 if head_only else int(headers.get("content-length", "0"))
    del buf[:]
    buf += rest
    while len(buf) < n:
        data = s.recv(65536)
        if not data:
            raise RuntimeError("connection closed inside the body")
        buf += data
    body = bytes(buf[:n])
    del buf[:n]
    return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, body, head)


def http_exchange(port, cafile, raw_request):
    """Send raw bytes on a new TLS connection, return everything until close."""
    with https_connect(port, cafile) as s:
        s.sendall(raw_request)
        return recv_all(s)


def parse_all_responses(data):
    """Split a byte stream of HTTP responses (no HEAD) into Response objects."""
    out = []
    buf = bytearray(data)

    class _Src:
        def recv(self, n):
            return b""
    while buf:
        out.append(read_response(_Src(), buf))
    return out


# ---- session resumption ---------------------------------------------------------

def write_ticket_keys(path, keys, mode=0o600, header="kts-ticket-keys 1"):
    """A ticket key-set file (tools/keyset.h) for kts-server --ticket-keys.
    keys is [(keyrev, 64 bytes)] oldest first, or [(keyrev, bytes, encrypt_from,
    encrypt_until, decrypt_until)]. Keys without times all seal from a minute
    ago on, each a second later than the one before (so the last one seals
    and the others act as retired), for a day, and open tickets for a day
    more: a file written later is newer than one written before. The header is line 1, keys follow on lines 2, 3, ... Written to a
    new file renamed over path (as ktsctl does)."""
    import base64
    now = int(time.time())
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(header + "\n")
        for i, kk in enumerate(keys):
            rev, key = kk[0], kk[1]
            start, until, gone = kk[2:5] if len(kk) == 5 else (now - 60 + i, now + 86400,
                                                                now + 2 * 86400)
            f.write("%d %d %d %d %s\n" % (rev, start, until, gone, base64.b64encode(key).decode()))
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def read_ticket_keys(path):
    """[(keyrev, encrypt_from, encrypt_until, decrypt_until, key bytes)] of a
    key-set file (the key lines; header and comments skipped)."""
    import base64
    out = []
    with open(path) as f:
        for line in f:
            w = line.split()
            if len(w) in (5, 6) and w[0].isdigit():
                out.append((int(w[0]), int(w[1]), int(w[2]), int(w[3]), base64.b64decode(w[4])))
    return out


def ktsctl(*args):
    """Run ktsctl; (exit status, stdout, stderr)."""
    r = subprocess.run([tool("ktsctl")] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def wait_count(srv, pattern, n, timeout=5):
    """Wait until srv's log has n lines matching pattern; returns the count."""
    end = time.monotonic() + timeout
    while True:
        c = len(re.findall(pattern, srv.stderr(), re.M))
        if c >= n or time.monotonic() > end:
            return c
        time.sleep(0.02)


def new_ticket_key():
    return os.urandom(64)


HTTP_GET = b"GET /%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def s_client(port, *args, path="file.bin", timeout=20, host="127.0.0.1"):
    """openssl s_client GET of path (add -sess_out/-sess_in, -tls1_2, -no_ticket...).
    Returns (returncode, 'New'|'Reused'|None, response bytes, stderr+stdout text)."""
    argv = ["openssl", "s_client", "-connect", "%s:%d" % (host, port), "-servername",
            "localhost", "-ign_eof"] + list(args)
    r = subprocess.run(argv, input=HTTP_GET % path.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    out = r.stdout
    m = re.search(rb"^(New|Reused), .*$", out, re.M)
    i = out.find(b"HTTP/1.")
    # Diagnostics without the session dumps s_client prints (they hold secrets).
    why = "rc %d, %s, response %r\n%s" % (
        r.returncode, m.group(0).decode() if m else "no New/Reused line",
        out[i:i + 60] if i >= 0 else b"", r.stderr.decode(errors="replace")[-1500:])
    s_client.last_stdout = out.decode(errors="replace")
    return (r.returncode, m.group(1).decode() if m else None, out[i:] if i >= 0 else b"", why)


s_client.last_stdout = ""


def tickets_in(text):
    """The tickets in session dumps (openssl sess_id -text, s_client output), in order."""
    out = []
    cur = None
    for line in text.splitlines():
        if line.strip().startswith("TLS session ticket:"):
            cur = bytearray()
            continue
        if cur is not None:
            m = re.match(r"^\s*[0-9a-f]{4} - ((?:[0-9a-f]{2}[ -]{1,2})*[0-9a-f]{2})", line)
            if m:
                cur += bytes.fromhex(m.group(1).replace("-", " "))
                continue
            out.append(bytes(cur))
            cur = None
    if cur is not None:
        out.append(bytes(cur))
    return out


def http_body(resp):
    """(head, body) of one response at the start of resp; the body is cut at its
    Content-Length (s_client prints more after it)."""
    head, _, body = resp.partition(b"\r\n\r\n")
    m = re.search(rb"^content-length:\s*(\d+)", head, re.M | re.I)
    return head, body[:int(m.group(1))] if m else body


def session_ticket(pem_path):
    """The ticket bytes of the session in a file (its last PEM block, the one kts
    reads), b"" if none."""
    with open(pem_path, "rb") as f:
        blocks = session_blocks(f.read())
    if not blocks:
        raise RuntimeError("%s: no session in the file" % pem_path)
    r = subprocess.run(["openssl", "sess_id", "-noout", "-text"], input=blocks[-1],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    if r.returncode:
        raise RuntimeError("sess_id %s: %s" % (pem_path, r.stderr.decode(errors="replace")))
    t = tickets_in(r.stdout.decode())
    return t[0] if t else b""


def session_blocks(data):
    """The PEM session blocks in data (bytes), oldest first."""
    return re.findall(rb"-----BEGIN SSL SESSION PARAMETERS-----\n.*?"
                      rb"-----END SSL SESSION PARAMETERS-----\n", data, re.S)


def session_parses(pem_path):
    """True if openssl can read the session in pem_path (its last PEM block)."""
    with open(pem_path, "rb") as f:
        data = f.read()
    i = data.rfind(b"-----BEGIN SSL SESSION PARAMETERS-----")
    if i < 0:
        return False
    r = subprocess.run(["openssl", "sess_id", "-noout"], input=data[i:],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    return r.returncode == 0


def open_ticket(ticket, aes_key, hmac_key):
    """Open a ticket (name | IV | AES-CBC ciphertext | HMAC-SHA256) as a server
    holding these keys would: (HMAC right?, the session's Session-ID-ctx bytes
    or None). The session text is parsed here, never printed (it holds the
    master key)."""
    import hmac as hmac_mod
    if len(ticket) < 16 + 16 + 16 + 32:
        return False, None
    mac_ok = hmac_mod.compare_digest(
        hmac_mod.new(hmac_key, ticket[:-32], hashlib.sha256).digest(), ticket[-32:])
    cipher = "-aes-128-cbc" if len(aes_key) == 16 else "-aes-256-cbc"
    r = subprocess.run(["openssl", "enc", "-d", cipher, "-K", aes_key.hex(), "-iv",
                        ticket[16:32].hex()], input=ticket[32:-32], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10)
    if r.returncode:
        return mac_ok, None
    r = subprocess.run(["openssl", "sess_id", "-inform", "DER", "-noout", "-text"],
                       input=r.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    m = re.search(r"^\s*Session-ID-ctx: ?([0-9A-F]*)$", r.stdout.decode(errors="replace"), re.M)
    return mac_ok, bytes.fromhex(m.group(1)) if r.returncode == 0 and m else None

