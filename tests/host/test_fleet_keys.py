#!/usr/bin/env python3
"""The fleet's ticket keys in Redis (ktsctl keys init|rotate|sync --store,
kek init), against a Redis this test starts on loopback with a password:
the envelope holds no key in the clear; sync writes the key file a
kts-server reloads; two rotations at once make one key; and every bad
input is refused with one clear line while the key file (and the server
using it) keeps the keys it had: garbage in Redis, another KEK, a replayed
older envelope, a set with no key active, an unreachable Redis, a wrong
password."""
import json
import os
import subprocess
import time

import ktsfleet as f
import ktshost as k

t = k.Suite("fleet-keys", deadline=100)
d, cert, key, root = f.site(t)
PW = "fleet-test-%d" % os.getpid()
redis = f.Redis(d, PW)
URL = redis.url()
KEK = os.path.join(d, "kek")
FILE = os.path.join(d, "ticket.keys")


def ctl(*args):
    rc, out, err = k.ktsctl(*args)
    return rc, out + err


def store(*args):
    return ctl(*(list(args) + ["--store", URL, "--kek", KEK]))


def sync(kek=KEK, url=URL):
    return ctl("keys", "sync", "--store", url, "--kek", kek, "--to", FILE)


def file_bytes():
    with open(FILE, "rb") as fh:
        return fh.read()


def basics():
    rc, out = ctl("kek", "init", KEK)
    st = os.stat(KEK)
    t.check("kek init: a 0600 file", rc == 0 and st.st_mode & 0o777 == 0o600, out)
    rc, out = ctl("kek", "init", KEK)
    t.check("kek init of an existing file: refused", rc == 1 and "exists" in out, out)
    rc, out = store("keys", "rotate")
    t.check("rotate before init: refused, saying init first",
            rc == 1 and "keys init --store first" in out, out)
    rc, out = store("keys", "init", "--interval", "10", "--lifetime", "300")
    gen1 = int(out.split("generation ")[1].split(":")[0]) if rc == 0 else 0
    t.check("keys init --store: a generation of about now", rc == 0 and
            abs(gen1 - time.time()) < 30, out)
    rc, out = store("keys", "init")
    t.check("keys init --store again: refused without --force",
            rc == 1 and "--force replaces it" in out, out)
    env = redis.cli("GET", "kts:fleet:keys")
    t.check("the store holds an envelope, no key set in the clear",
            env.startswith(b"kts-envelope 1 %d " % gen1) and b"kts-ticket-keys" not in env,
            env[:80])
    rc, out = sync()
    t.check("sync: the key file gets that generation",
            rc == 0 and f.file_generation(FILE) == gen1 and
            os.stat(FILE).st_mode & 0o777 == 0o600, out)
    rc, out = sync()
    t.check("sync again: current, nothing written", rc == 0 and "current" in out, out)
    with open(FILE + ".sync") as fh:
        state = json.load(fh)
    t.check("FILE.sync records the last sync", state["ok"] is True and
            state["generation"] == gen1 and state["good"] > 0, state)
    rc, out = ctl("keys", "check", FILE)
    t.check("the synced file is a set kts-server takes", rc == 0, out)


def one_rotation_at_once():
    """Two machines' timers fire together: the lock and the staged-key rule
    make one new key."""
    before = f.file_generation(FILE)
    argv = [k.tool("ktsctl"), "keys", "rotate", "--store", URL, "--kek", KEK]
    ps = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
          for _ in range(2)]
    outs = [p.communicate(timeout=30)[0].decode() for p in ps]
    added = sum("added keyrev" in o for o in outs)
    t.check("two rotations at once: exactly one adds a key", added == 1 and
            all(p.returncode == 0 for p in ps), outs)
    rc, out = sync()
    t.check("sync: a newer generation",
            rc == 0 and f.file_generation(FILE) > before, out)


def server_keeps_keys():
    """A server on the synced file; each bad input below must leave it and
    the file alone."""
    sock = os.path.join(d, "ctl.sock")
    srv = k.KtsServer(d, root, cert, key, "--session-lifetime", "300", "--ticket-keys", FILE,
                      "--control", sock, name="srv")
    try:
        good = file_bytes()
        gen = f.file_generation(FILE)
        older = redis.cli("GET", "kts:fleet:keys").rstrip(b"\n")
        rc, out = store("keys", "rotate", "--force")
        rc2, out2 = sync()
        t.check("a rotation reaches the file, and the server reloads it",
                rc == 0 and rc2 == 0 and f.file_generation(FILE) > gen and
                srv.logged(r"reloaded \S+ticket.keys \(file replaced\)"), out + out2)
        good = file_bytes()
        gen = f.file_generation(FILE)

        def refused(name, want, **kw):
            rc, out = sync(**kw)
            t.check("%s: refused (%s), the key file unchanged" % (name, want),
                    rc == 1 and want in out and file_bytes() == good, out)

        redis.cli("SET", "kts:fleet:keys", "garbage")
        refused("garbage in Redis", "not a kts envelope")
        redis.cli("SET", "kts:fleet:keys", older)
        refused("a replayed older envelope", "is older than")
        other = os.path.join(d, "other.kek")
        ctl("kek", "init", other)
        store("keys", "init", "--force")  # a fresh, newer set ...
        refused("another KEK", "fails authentication", kek=other)
        # ... and one with no key active now (made as if an hour ago).
        store("keys", "init", "--force", "--now", str(int(time.time()) - 3600), "--interval",
              "10", "--lifetime", "60")
        refused("a set with no key active now", "no key is active now")
        refused("an unreachable Redis", "Connection refused",
                url="redis://:%s@127.0.0.1:%d/fleet" % (PW, k.free_port()))
        refused("a wrong password", "WRONGPASS", url=redis.url(password="wrong"))
        rc, how, resp, why = k.s_client(srv.port, "-tls1_3")
        t.check("the server still serves on the keys it had", rc == 0 and
                resp.startswith(b"HTTP/1.1 200") and srv.p.poll() is None, why)
        rc, out, err = k.ktsctl("status", "--json", sock)
        st = json.loads(out)["ticket_keys"]["sync"] if rc == 0 else {}
        t.check("ktsctl status shows the failing sync and when the store was last good",
                st.get("ok") is False and "WRONGPASS" in st.get("message", "") and
                st.get("good", 0) > 0 and st.get("generation") == gen, (rc, out, err))
        # A new KEK (the old one leaked): the set made afresh under it is still
        # newer than the machines' files, which take it.
        rc, out = ctl("keys", "init", "--store", URL, "--kek", other, "--force")
        rc2, out2 = sync(kek=other)
        t.check("a set made afresh under a new KEK is taken (its generation is newer)",
                rc == 0 and rc2 == 0 and f.file_generation(FILE) > gen, out + out2)
    finally:
        srv.stop()


t.run("basics", basics)
t.run("one rotation at once", one_rotation_at_once)
t.run("bad inputs keep the keys", server_keeps_keys)
t.done()
