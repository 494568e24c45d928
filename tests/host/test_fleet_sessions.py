#!/usr/bin/env python3
"""kts-server --session-store: TLS 1.2 clients that take no tickets resume by
session ID on another server ("machine") through a Redis the test starts
with a password. Checked: a session made on one server resumes on the other
(found in Redis, sealed: no session in the clear), and the status counts the
lookup; an unreachable Redis, a wrong password, garbage under the session's
key, and a Redis that stops answering (SIGSTOP) all mean a full handshake
within a bounded time, never a failed one, with one clear log line, and the
server goes on serving."""
import json
import os
import signal
import time

import ktsfleet as f
import ktshost as k

t = k.Suite("fleet-sessions", deadline=100)
d, cert, key, root = f.site(t)
PW = "sess-%d" % os.getpid()
redis = f.Redis(d, PW)
KEK = os.path.join(d, "kek")
k.ktsctl("kek", "init", KEK)
NO_TICKET = ("-tls1_2", "-no_ticket")


def server(name, url=None):
    sock = os.path.join(d, name + ".sock")
    srv = k.KtsServer(d, root, cert, key, "--session-lifetime", "300", "--session-cache", "1000",
                      "--session-id", "fleet", "--session-store", url or redis.url(),
                      "--kek", KEK, "--control", sock, name=name)
    srv.sock = sock
    return srv


def status(srv):
    rc, out, err = k.ktsctl("status", "--json", srv.sock)
    return json.loads(out) if rc == 0 else {"error": out + err}


def get(srv, *args):
    t0 = time.monotonic()
    rc, how, resp, why = k.s_client(srv.port, *(NO_TICKET + args))
    return rc == 0 and resp.startswith(b"HTTP/1.1 200"), how, time.monotonic() - t0, why


def across():
    a, b = server("a"), server("b")
    try:
        sess = os.path.join(d, "s.pem")
        ok, how, _, why = get(a, "-sess_out", sess)
        t.check("a: a full TLS 1.2 handshake without tickets", ok and how == "New", why)
        keys = []
        for _ in range(500):
            keys = redis.cli("KEYS", "kts:fleet:sess:*").split()
            if keys:
                break
            time.sleep(0.02)
        val = redis.cli("GET", keys[0]) if keys else b""
        t.check("the session is in Redis, sealed", len(keys) == 1 and
                val.startswith(b"kts-envelope 1 ") and b"BEGIN" not in val, (keys, val[:60]))
        ok, how, _, why = get(b, "-sess_in", sess)
        t.check("b resumes the session a made (session ID through Redis)",
                ok and how == "Reused", why)
        ok, how, _, why = get(b, "-sess_in", sess)
        st = status(b).get("session_store", {})
        t.check("b: the second resumption came from its local cache (1 lookup, 1 hit)",
                ok and how == "Reused" and st.get("hits") == 1, (why, st))
        # Garbage under the key: a miss, logged, a full handshake.
        ok, how, _, why = get(a, "-sess_out", sess)
        end = time.monotonic() + 10  # the put is queued: wait for it to land
        while len(redis.cli("KEYS", "kts:fleet:sess:*").split()) < 2 and time.monotonic() < end:
            time.sleep(0.02)
        keys = [x for x in redis.cli("KEYS", "kts:fleet:sess:*").split()]
        for x in keys:
            redis.cli("SET", x.decode(), "kts-envelope 1 0 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        ok, how, _, why = get(b, "-sess_in", sess)
        t.check("garbage in Redis: a full handshake, not a failed one", ok and how == "New", why)
        t.check("... and a log line saying why",
                b.logged(r"^session store: entry \S+: envelope .*fails authentication"),
                b.stderr()[-800:])
    finally:
        a.stop()
        b.stop()


def bad_redis():
    cases = [("unreachable", "redis://:%s@127.0.0.1:%d/fleet" % (PW, k.free_port()),
              r"connect: Connection refused; serving from the local cache"),
             ("wrong password", redis.url(password="nope"), r"AUTH: WRONGPASS")]
    for name, url, said in cases:
        srv = server("bad-" + name.replace(" ", "-"), url)
        try:
            t.check("%s Redis at start: the server starts and says so" % name,
                    srv.logged("^session store: .*" + said), srv.stderr()[-600:])
            sess = os.path.join(d, "bad.pem")
            ok1, _, _, why1 = get(srv, "-sess_out", sess)
            ok2, how, took, why2 = get(srv, "-sess_in", sess)
            t.check("%s Redis: serves, and resumes from the local cache" % name,
                    ok1 and ok2 and how == "Reused", why1 + why2)
        finally:
            srv.stop()


def stalled_redis():
    a, b = server("st-a"), server("st-b")
    try:
        sess = os.path.join(d, "st.pem")
        ok, _, _, why = get(a, "-sess_out", sess)
        time.sleep(0.2)
        redis.signal(signal.SIGSTOP)  # accepts, never answers
        try:
            ok, how, took, why = get(b, "-sess_in", sess)
            t.check("a Redis that stops answering: a full handshake in %.2f s (bounded)" % took,
                    ok and how == "New" and took < 2.0, why)
            ok, how, took, why = get(b)
            t.check("... and the next client is served as quickly (%.2f s)" % took,
                    ok and took < 2.0, why)
        finally:
            redis.signal(signal.SIGCONT)
        st = status(b).get("session_store", {})
        t.check("status counts the lookup that was given up", st.get("failed", 0) >= 1, st)
    finally:
        a.stop()
        b.stop()


t.run("across machines", across)
t.run("bad redis at start", bad_redis)
t.run("stalled redis", stalled_redis)
t.done()
