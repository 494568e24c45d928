#!/usr/bin/env python3
"""kts-server --ticket-keys with key schedules: a staged key opens tickets
before it seals and takes over at its time with no reload; when no key is
active the server says so once and issues no ticket; a replaced file is
reloaded without a signal (inotify), in a single process and across
--workers; a bad replacement, or an older file, keeps the set in use; the
servers take a file that ktsctl made and rotated."""
import os
import re
import time

import ktshost as k

t = k.Suite("ticket-keys", deadline=130)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
k.write_random(os.path.join(root, "file.bin"), 1000)
LIFE = ("--session-lifetime", "300")


def ticket_keyrev(port, *args):
    """The keyrev of the first TLS 1.3 ticket s_client gets, or None without one."""
    rc, how, ok, why = k.s_client(port, "-tls1_3", *args)
    tickets = k.tickets_in(k.s_client.last_stdout)
    if rc != 0 or not ok:
        raise RuntimeError("s_client failed: " + why)
    return int.from_bytes(tickets[0][:4], "big") if tickets and tickets[0] else None


def fresh(name):
    p = os.path.join(d, name)
    if os.path.exists(p):
        os.unlink(p)
    return p


def staged_takes_over():
    kf = os.path.join(d, "staged.keys")
    now = int(time.time())
    k1, k2 = k.new_ticket_key(), k.new_ticket_key()
    at = now + 4
    k.write_ticket_keys(kf, [(1, k1, now - 60, now + 3600, now + 7200),
                             (2, k2, at, at + 3600, at + 7200)])
    srv = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", kf, "--session-id", "stg",
                      name="srv-staged")
    # A peer that already seals under keyrev 2 (its clock is ahead, or it
    # took the new file first).
    kf2 = os.path.join(d, "ahead.keys")
    k.write_ticket_keys(kf2, [(2, k2, now - 60, now + 3600, now + 7200)])
    ahead = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", kf2, "--session-id", "stg",
                        name="srv-ahead")
    try:
        t.check("startup: 2 keys, keyrev 1 seals, 1 staged",
                srv.logged(r"^ticket keys: loaded \S+staged.keys: 2 key\(s\): keyrev 1 seals, "
                           r"1 staged, 0 retired$"), srv.stderr())
        t.check("before its time, tickets are sealed under keyrev 1",
                ticket_keyrev(srv.port) == 1)
        for tls in ("-tls1_2", "-tls1_3"):
            sess = fresh("ahead.pem")
            k.s_client(ahead.port, tls, "-sess_out", sess)
            rc, how, ok, err = k.s_client(srv.port, tls, "-sess_in", sess)
            t.check("%s: a staged key already opens tickets sealed under it elsewhere" % tls,
                    rc == 0 and ok and how == "Reused", err)
        time.sleep(max(0, at - time.time()) + 0.5)
        t.check("at its time keyrev 2 seals, with no reload",
                ticket_keyrev(srv.port) == 2)
        t.check("... and the server says so once",
                srv.logged(r"^ticket keys: keyrev 2 seals new tickets from now on$") and
                "reloaded" not in srv.stderr(), srv.stderr()[-1000:])
    finally:
        srv.stop()
        ahead.stop()


t.run("a staged key takes over at its time", staged_takes_over)


def none_active_then_replaced():
    files = [os.path.join(d, n) for n in ("one.keys", "workers.keys")]
    now = int(time.time())
    end = now + 4
    for f in files:
        k.write_ticket_keys(f, [(1, k.new_ticket_key(), now - 60, end, end + 600)])
    single = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", files[0], name="srv-one")
    pool = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", files[1], "--workers", "2",
                       name="srv-pool")
    none = r"^ticket keys: no key in \S+ is active now: no tickets are issued until the file " \
           r"has one \(ktsctl keys rotate\)$"
    try:
        t.check("a ticket under keyrev 1 right after the start",
                ticket_keyrev(single.port) == 1 and ticket_keyrev(pool.port) == 1)
        t.check("the end of keyrev 1's window is said when it comes",
                single.logged(none, timeout=15) and pool.logged(none, timeout=5),
                single.stderr()[-1000:])
        t.check("... at its time, not before", time.time() >= end)
        t.check("... and tickets have stopped", ticket_keyrev(single.port) is None and
                ticket_keyrev(pool.port) is None)
        kids = [int(x) for x in open("/proc/%d/task/%d/children" % (pool.p.pid, pool.p.pid))
                .read().split()]
        watches = {p: sum(os.readlink("/proc/%d/fd/%s" % (p, f)) == "anon_inode:inotify"
                          for f in os.listdir("/proc/%d/fd" % p)) for p in [pool.p.pid] + kids}
        t.check("--workers: only the parent watches the key file (one inotify fd)",
                len(kids) == 2 and watches[pool.p.pid] == 1 and
                all(watches[p] == 0 for p in kids), str(watches))
        t.check("--workers: the parent says it once, the workers do not",
                len(re.findall(none, pool.stderr(), re.M)) == 1 and
                not re.search(r"^worker \d+: ticket keys: no key", pool.stderr(), re.M),
                pool.stderr()[-2000:])
        # Replace the files (rename, as ktsctl does): no signal needed.
        for f in files:
            k.write_ticket_keys(f, [(2, k.new_ticket_key())])
        t.check("a replaced file is reloaded without a signal",
                single.logged(r"^ticket keys: reloaded \S+one.keys \(file replaced\): 1 key\(s\): "
                              r"keyrev 2 seals, 0 staged, 0 retired$"), single.stderr()[-1000:])
        t.check("--workers: the parent reloads, then each worker (told by SIGHUP)",
                pool.logged(r"^ticket keys: reloaded \S+workers.keys \(file replaced\)") and
                k.wait_count(pool, r"^worker \d+: ticket keys: reloaded \S+ \(SIGHUP\): 1 key\(s\): "
                             r"keyrev 2 seals", 2) == 2, pool.stderr()[-2000:])
        revs = {ticket_keyrev(pool.port) for _ in range(6)}
        t.check("tickets again, under keyrev 2, from every process",
                ticket_keyrev(single.port) == 2 and revs == {2}, str(revs))
        # A bad replacement: logged once, the set in use stays.
        bad = files[0] + ".bad"
        k.write_ticket_keys(bad, [(3, k.new_ticket_key())], mode=0o644)
        os.rename(bad, files[0])
        t.check("a bad replacement is logged, the keys in use stay",
                single.logged(r"^ticket keys: reload \(file replaced\) failed, keeping the 1 "
                              r"key\(s\) in use: \S+one.keys: mode is 0644"),
                single.stderr()[-1000:])
        t.check("... and tickets are still sealed under keyrev 2", ticket_keyrev(single.port) == 2)
        # An older file (a restored backup: no keyrev 2, its key starts before
        # 2's) is refused as such.
        then = int(time.time()) - 3600
        k.write_ticket_keys(files[0], [(1, k.new_ticket_key(), then, then + 7200, then + 9000)])
        t.check("an older file is refused as older, the keys in use stay",
                single.logged(r"^ticket keys: reload \(file replaced\) failed, keeping the 1 "
                              r"key\(s\) in use: \S+: ticket keys: the set is older than the one "
                              r"in use") and ticket_keyrev(single.port) == 2,
                single.stderr()[-1000:])
    finally:
        single.stop()
        pool.stop()


t.run("no key active, then a replaced file", none_active_then_replaced)


def ktsctl(*args):
    rc, out, err = k.ktsctl(*args)
    return rc, out + err


def made_by_ktsctl():
    kf = os.path.join(d, "ctl.keys")
    rc, out = ktsctl("keys", "init", kf, "--lifetime", "300", "--interval", "600")
    t.check("ktsctl keys init", rc == 0 and "new key set: keyrev 1 seals" in out, out)
    srv = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", kf, name="srv-ctl")
    try:
        t.check("kts-server takes it", ticket_keyrev(srv.port) == 1, srv.stderr())
        rc, out = ktsctl("keys", "rotate", kf)
        t.check("ktsctl keys rotate stages keyrev 2", rc == 0 and "added keyrev 2" in out, out)
        t.check("... and the server reloads it: 1 staged",
                srv.logged(r"^ticket keys: reloaded \S+ \(file replaced\): 2 key\(s\): keyrev 1 "
                           r"seals, 1 staged, 0 retired$"), srv.stderr()[-1000:])
        t.check("tickets stay under keyrev 1 while 2 is staged", ticket_keyrev(srv.port) == 1)
    finally:
        srv.stop()


t.run("a file made and rotated by ktsctl", made_by_ktsctl)
t.done()
