#!/usr/bin/env python3
"""kts-server --ticket-keys logging: the startup and reload lines count the keys
the library keeps (at most 4) and say how many were dropped; when the newest key
stops sealing tickets (one session lifetime after it was loaded) the server says
so once, in a single process and in the --workers parent, and again only after
a reload brings a new key. Takes a minimum session lifetime (60 s)."""
import os
import re
import signal
import time

import ktshost as k

t = k.Suite("ticket-keys", deadline=130)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
k.write_random(os.path.join(root, "file.bin"), 1000)
LIFETIME = 60
STOPPED = (r"^ticket keys: the newest key \(keyrev %d\) stopped sealing tickets one session "
           r"lifetime \(60 s\) after it was loaded: no tickets are issued until a new key is "
           r"added to \S+ and SIGHUP sent$")


def ticket_keyrev(port):
    """The keyrev of the first TLS 1.3 ticket s_client gets, or None without one."""
    rc, how, ok, why = k.s_client(port, "-tls1_3")
    tickets = k.tickets_in(k.s_client.last_stdout)
    if rc != 0 or how != "New":
        raise RuntimeError("s_client failed: " + why)
    return int.from_bytes(tickets[0][:4], "big") if tickets and tickets[0] else None


def keys_kept():
    kf = os.path.join(d, "six.keys")
    keys = [(rev, k.new_ticket_key()) for rev in range(1, 9)]
    k.write_ticket_keys(kf, keys[:6])
    srv = k.KtsServer(d, root, cert, key, "--session-lifetime", "300", "--ticket-keys", kf,
                      name="srv-six")
    t.check("6 keys in the file: the startup line says 4 kept, 2 dropped",
            srv.logged(r"^ticket keys: 4 key\(s\) kept from \S+six.keys, newest keyrev 6; 2 "
                       r"older key\(s\) dropped \(at most 4 are kept\)$"), srv.stderr())
    k.write_ticket_keys(kf, keys)
    srv.signal(signal.SIGHUP)
    t.check("2 keys more and SIGHUP: the reload line says 4 kept, 2 dropped",
            srv.logged(r"^ticket keys: reloaded \S+six.keys: 2 new key\(s\), newest keyrev 8, 4 "
                       r"kept; 2 older key\(s\) dropped \(at most 4 are kept\)$"), srv.stderr())
    rev = ticket_keyrev(srv.port)
    t.check("tickets are sealed under the newest key", rev == 8, str(rev))
    srv.stop()


t.run("keys kept", keys_kept)


def stop_lines(srv, rev):
    return re.findall(STOPPED % rev, srv.stderr(), re.M)


def newest_key_stops():
    files = [os.path.join(d, n) for n in ("one.keys", "workers.keys")]
    k1, k2 = k.new_ticket_key(), k.new_ticket_key()
    for f in files:
        k.write_ticket_keys(f, [(1, k1)])
    started = time.monotonic()
    single = k.KtsServer(d, root, cert, key, "--session-lifetime", str(LIFETIME),
                         "--ticket-keys", files[0], name="srv-one")
    pool = k.KtsServer(d, root, cert, key, "--session-lifetime", str(LIFETIME),
                       "--ticket-keys", files[1], "--workers", "2", name="srv-pool")
    t.check("a ticket under keyrev 1 right after the start",
            ticket_keyrev(single.port) == 1 and ticket_keyrev(pool.port) == 1)
    t.check("nothing said before the lifetime is over", not stop_lines(single, 1))
    try:
        single.wait_for(STOPPED % 1, timeout=LIFETIME + 20)
    except RuntimeError as e:
        t.fail("the stop of the newest key is logged", str(e))
        return
    el = time.monotonic() - started
    t.check("the stop of the newest key is logged one lifetime after the start",
            LIFETIME - 1.5 < el < LIFETIME + 15, "after %.1f s" % el)
    t.check("... and tickets have stopped indeed", ticket_keyrev(single.port) is None)
    t.check("--workers: the parent says it once, the workers do not",
            pool.logged(STOPPED % 1, timeout=10) and len(stop_lines(pool, 1)) == 1 and
            not re.search(r"^worker \d+: ticket keys: the newest", pool.stderr(), re.M),
            pool.stderr()[-2000:])

    single.signal(signal.SIGHUP)
    t.check("SIGHUP, the file unchanged: reloaded, nothing new",
            single.logged(r"^ticket keys: reloaded \S+: 0 new key\(s\), newest keyrev 1, 1 "
                          r"kept$"), single.stderr()[-1000:])
    time.sleep(0.5)
    t.check("... and the stop is not said again", len(stop_lines(single, 1)) == 1,
            single.stderr()[-1500:])
    for srv, f in ((single, files[0]), (pool, files[1])):
        k.write_ticket_keys(f, [(1, k1), (2, k2)])
        srv.signal(signal.SIGHUP)
        t.check("%s: a new key and SIGHUP: reloaded" % srv.name,
                srv.logged(r"^(worker \d+: )?ticket keys: reloaded \S+: 1 new key\(s\), newest "
                           r"keyrev 2, 2 kept$"), srv.stderr()[-1000:])
    time.sleep(0.5)  # the workers reload too
    t.check("tickets again, under keyrev 2",
            ticket_keyrev(single.port) == 2 and ticket_keyrev(pool.port) == 2)
    t.check("the stop was said once per server, nothing about the new key",
            len(stop_lines(single, 1)) == 1 and len(stop_lines(pool, 1)) == 1 and
            not stop_lines(single, 2) and not stop_lines(pool, 2))
    single.stop()
    pool.stop()


t.run("newest key stops", newest_key_stops)
t.done()
