"""Fleet tests' helpers: a Redis server with a password on a free port, and
"machines": network namespaces joined to this one by veth pairs (or, where
namespaces cannot be made, plain loopback addresses)."""
import os
import shutil
import subprocess
import time

import ktshost as k

REDIS = shutil.which("redis-server", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin")


def site(t):
    """The start of a fleet test: fail (never skip) without redis-server, then
    a temporary directory with a throwaway certificate and a document root
    holding file.bin (1000 bytes). Returns (dir, cert, key, root)."""
    if not REDIS:
        t.fail("redis-server installed", "redis-server not found: install the Debian package "
               "redis-server (tools/setup-debian.sh test)")
        t.done()
    d = k.tmpdir()
    cert, key = k.make_cert(d)
    root = os.path.join(d, "root")
    os.mkdir(root)
    k.write_random(os.path.join(root, "file.bin"), 1000)
    return d, cert, key, root


class Redis(k.Proc):
    """redis-server on 0.0.0.0:port with requirepass; RDB kept in its own
    directory, saved when it is stopped, so a restart keeps its data (as an
    operator's Redis does)."""

    def __init__(self, d, password, name="redis", port=None):
        self.d = os.path.join(d, name)
        os.makedirs(self.d, exist_ok=True)
        self.password = password
        self.port = port or k.free_port()
        self.rname = name
        self._start()

    def _start(self):
        conf = os.path.join(self.d, "redis.conf")
        with open(conf, "w") as f:
            f.write("port %d\nbind 0.0.0.0\nprotected-mode no\nrequirepass %s\n"
                    "save 3600 1\nappendonly no\ndir %s\ndaemonize no\n"
                    % (self.port, self.password, self.d))
        super().__init__([REDIS, conf], self.d, self.rname)
        self.wait_for(r"Ready to accept connections", where="stdout")

    def restart(self):
        self.stop()
        self._start()

    def url(self, host="127.0.0.1", name="fleet", password=None):
        pw = self.password if password is None else password
        return "redis://:%s@%s:%d/%s" % (pw, host, self.port, name)

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), "-a", self.password,
                            "--no-auth-warning"] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        return r.stdout


class Machines:
    """n machines. With namespaces: kts-PID-i, each with a veth to this
    namespace, 10.X.i.2 inside and 10.X.i.1 here (X from the pid, so parallel
    runs do not collide). Otherwise every machine is 127.0.0.1. run() starts
    a process inside machine i; addr(i) is where clients reach it; gw(i) is
    where it reaches this namespace (Redis)."""

    def __init__(self, n):
        self.n = n
        self.names = []
        self.net = 100 + os.getpid() % 150
        self.ns = os.geteuid() == 0 and shutil.which("ip") and self._make()

    def _ip(self, *args):
        return subprocess.run(["ip"] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=10).returncode == 0

    def _make(self):
        pid = os.getpid()
        for i in range(self.n):
            ns = "kts-%d-%d" % (pid, i)
            host, peer = "kf%dh%d" % (pid % 100000, i), "kf%dp%d" % (pid % 100000, i)
            ok = (self._ip("netns", "add", ns) and
                  self._ip("link", "add", host, "type", "veth", "peer", "name", peer) and
                  self._ip("link", "set", peer, "netns", ns) and
                  self._ip("addr", "add", "10.%d.%d.1/24" % (self.net, i), "dev", host) and
                  self._ip("link", "set", host, "up") and
                  self._ip("-n", ns, "addr", "add", "10.%d.%d.2/24" % (self.net, i), "dev", peer)
                  and self._ip("-n", ns, "link", "set", peer, "up") and
                  self._ip("-n", ns, "link", "set", "lo", "up"))
            if ns not in self.names:
                self.names.append(ns)
            if not ok:
                self.close()
                return False
        return True

    def addr(self, i):
        return "10.%d.%d.2" % (self.net, i) if self.ns else "127.0.0.1"

    def gw(self, i):
        return "10.%d.%d.1" % (self.net, i) if self.ns else "127.0.0.1"

    def argv(self, i, argv):
        return (["ip", "netns", "exec", self.names[i]] if self.ns else []) + list(argv)

    def close(self):
        for ns in self.names:
            self._ip("netns", "del", ns)  # takes its end of the veth, and so both
        self.names = []


def wait_file_generation(path, gen, timeout=15):
    """Wait until the key file at path holds generation >= gen; returns it."""
    end = time.monotonic() + timeout
    got = 0
    while time.monotonic() < end:
        got = file_generation(path)
        if got >= gen:
            return got
        time.sleep(0.05)
    return got


def file_generation(path):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("kts-ticket-keys"):
                    for w in line.split():
                        if w.startswith("generation="):
                            return int(w.split("=", 1)[1])
                    return 0
    except OSError:
        pass
    return 0
