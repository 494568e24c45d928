#!/usr/bin/env python3
"""Session resumption on this machine's path:
  kts-client <-> kts-server (TLS 1.2 ticket, TLS 1.3 ticket), kts-client ->
  openssl s_server, openssl s_client -sess_out/-sess_in -> kts-server (TLS 1.2
  ticket, TLS 1.2 session ID, TLS 1.3 ticket), two servers sharing a
  --ticket-keys file and --session-id, --workers with a shared session cache,
  key rotation by SIGHUP (renewal of tickets under an older key), unknown keys,
  tampered and bad kts-client session files, bad --ticket-keys files, and
  sessions never resumed under other verification rules than they were made
  under (--insecure, another CA, openssl s_client without verification).
Application data bound into tickets is not reachable from the tools (unit tests)."""
import os
import signal
import stat
import subprocess
import time

import ktshost as k

t = k.Suite("resume", deadline=110)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
digest = k.write_random(os.path.join(root, "file.bin"), 100 * 1024 + 7)
LIFE = ["--session-lifetime", "300"]
# kts_client_session_offer gives the client's random session ID context (set by
# kts_config_new for every config) to sessions read from the file; OpenSSL then
# fails the resumption in a new process. Reported; the checks that hit it say so.
n_files = [0]


def fresh(name):
    n_files[0] += 1
    return os.path.join(d, "%s-%d" % (name, n_files[0]))


def client(port, sess, *args):
    """kts-client --get /file.bin with a session file; (rc, resumed, body ok, stderr)."""
    r = k.kts_client(["--ca", cert, "--status", "--session-file", sess, "--get", "/file.bin"] +
                     list(args) + ["localhost:%d" % port], timeout=20)
    err = r.stderr.decode(errors="replace")
    st = k.parse_status(err)
    return (r.returncode, st["resumed"] if st else None, k.sha256(r.stdout) == digest, err)


def check_resumed(name, r, want="yes"):
    """A kts-client run: exit 0, body intact, resumed=want. A session from the
    file must resume in a new process, whatever session ID context it had."""
    rc, resumed, body_ok, err = r
    return t.check(name, rc == 0 and body_ok and resumed == want,
                   "rc %d resumed=%s body_ok=%s\n%s" % (rc, resumed, body_ok, err))


def client_pair(name, port, *args, srv=None):
    """First run full, second resumed (and srv, a KtsServer, logged it).
    Returns the session file path."""
    sess = fresh("sess")
    check_resumed(name + ": first run resumed=no", client(port, sess, *args), "no")
    st = os.stat(sess)
    t.check(name + ": session file created 0600, non-empty",
            stat.S_IMODE(st.st_mode) == 0o600 and st.st_size > 0 and k.session_parses(sess),
            "mode %o size %d" % (stat.S_IMODE(st.st_mode), st.st_size))
    if check_resumed(name + ": second run resumed=yes", client(port, sess, *args)) and srv:
        server_saw(name, srv, "yes")
    return sess


def sc(port, *args, path="file.bin"):
    """s_client run: (rc, New/Reused, 200 with the right body)."""
    rc, how, resp, err = k.s_client(port, "-CAfile", cert, *args, path=path)
    head, body = k.http_body(resp)
    ok = head.startswith(b"HTTP/1.1 200 ") and k.sha256(body) == digest
    return rc, how, ok, err


def sc_pair(name, port, *args):
    sess = fresh("s_client.pem")
    rc, how, ok, err = sc(port, "-sess_out", sess, *args)
    t.check(name + ": first New", rc == 0 and ok and how == "New", "%s %s %s\n%s" % (rc, how, ok, err))
    rc, how, ok, err = sc(port, "-sess_in", sess, *args)
    t.check(name + ": second Reused", rc == 0 and ok and how == "Reused",
            "%s %s %s\n%s" % (rc, how, ok, err))
    return sess


def last_conn(srv):
    lines = srv.conn_lines()
    return lines[-1] if lines else {}


def server_saw(name, srv, want):
    ok = srv.logged(r"resumed=%s$" % want, timeout=3) and last_conn(srv).get("resumed") == want
    t.check(name + ": server logged resumed=" + want, ok, srv.stderr()[-1500:])


# Tickets only (no cache), and tickets + the TLS 1.2 session-ID cache.
srv_t = k.KtsServer(d, root, cert, key, *LIFE, name="srv-tickets")
srv_c = k.KtsServer(d, root, cert, key, *LIFE, "--session-cache", "64", name="srv-cache")


def kts_pairs():
    client_pair("kts-client <-> kts-server TLS 1.2 ticket", srv_t.port, "--tls", "1.2", srv=srv_t)
    client_pair("kts-client <-> kts-server TLS 1.3 ticket", srv_t.port, "--tls", "1.3", srv=srv_t)


def pipe_mode():
    """Pipe mode: TLS 1.3 tickets reach the file once data is read."""
    sess = fresh("pipe")
    r = k.kts_client(["--ca", cert, "--session-file", sess, "localhost:%d" % srv_t.port],
                     input=k.HTTP_GET % b"file.bin", timeout=20)
    head, body = k.http_body(r.stdout)
    t.check("kts-client pipe mode: response read, TLS 1.3 session saved",
            r.returncode == 0 and k.sha256(body) == digest and k.session_parses(sess),
            "rc %d\n%s" % (r.returncode, r.stderr.decode(errors="replace")))


def s_server_pairs():
    for tls in ("1.2", "1.3"):
        ss = k.SServer(d, cert, key, "-WWW", "-tls" + tls.replace(".", "_"), cwd=root,
                       name="s_server-" + tls)
        try:
            client_pair("kts-client -> s_server TLS %s" % tls, ss.port)
        finally:
            ss.stop()


def s_client_pairs():
    sc_pair("s_client -> kts-server TLS 1.2 ticket", srv_t.port, "-tls1_2")
    server_saw("s_client -> kts-server TLS 1.2 ticket", srv_t, "yes")
    sc_pair("s_client -> kts-server TLS 1.2 session ID", srv_c.port, "-tls1_2", "-no_ticket")
    server_saw("s_client -> kts-server TLS 1.2 session ID", srv_c, "yes")
    sc_pair("s_client -> kts-server TLS 1.3 ticket", srv_t.port, "-tls1_3")
    server_saw("s_client -> kts-server TLS 1.3 ticket", srv_t, "yes")
    # Without --session-cache there is nothing to resume a session ID from.
    # (The server sends no session ID then, so s_client has no session to save.)
    sess = fresh("noid.pem")
    rc, how, ok, err = sc(srv_t.port, "-tls1_2", "-no_ticket", "-sess_out", sess)
    if os.path.exists(sess):
        rc, how, ok, err = sc(srv_t.port, "-tls1_2", "-no_ticket", "-sess_in", sess)
    t.check("s_client -> kts-server without --session-cache: session ID -> New",
            rc == 0 and ok and how == "New", "%s %s %s\n%s" % (rc, how, ok, err))


def shared_keys():
    kf = os.path.join(d, "shared.keys")
    k.write_ticket_keys(kf, [(10, k.new_ticket_key()), (11, k.new_ticket_key())])
    a = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", kf, "--session-id", "pool-1",
                    name="srv-a")
    b = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", kf, "--session-id", "pool-1",
                    name="srv-b")
    other = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", kf, "--session-id",
                        "pool-2", name="srv-other")
    try:
        t.check("--ticket-keys: startup logs the keys, the one that seals, no key bytes",
                a.logged(r"ticket keys: loaded .*: 2 key\(s\): keyrev 11 seals, 0 staged, "
                         r"1 retired$"), a.stderr())
        for tls in ("1.2", "1.3"):
            flag = "-tls" + tls.replace(".", "_")
            sess = fresh("shared.pem")
            rc, how, ok, err = sc(a.port, flag, "-sess_out", sess)
            t.check("shared keys TLS %s: session from server A" % tls,
                    rc == 0 and ok and how == "New", err)
            tk = k.session_ticket(sess)
            t.check("shared keys TLS %s: ticket named by keyrev 11" % tls,
                    tk[:4] == (11).to_bytes(4, "big"), tk[:16].hex())
            rc, how, ok, err = sc(b.port, flag, "-sess_in", sess)
            t.check("shared keys TLS %s: resumes on server B (same --session-id)" % tls,
                    rc == 0 and ok and how == "Reused", err)
            rc, how, ok, err = sc(other.port, flag, "-sess_in", sess)
            t.check("shared keys TLS %s: other --session-id -> full handshake, no error" % tls,
                    rc == 0 and ok and how == "New", err)
        sess = client_pair("kts-client: shared keys", a.port)
        check_resumed("kts-client: session from A resumes on B", client(b.port, sess))
    finally:
        for s in (a, b, other):
            s.stop()


def children(pid):
    return sorted(int(p) for p in subprocess.run(
        ["ps", "--ppid", str(pid), "-o", "pid="], stdout=subprocess.PIPE,
        text=True).stdout.split())


def worker_fds(pid):
    """The fds of a just-started worker once it set up its own signalfd (it
    first closes the one it inherited; slow under ASan)."""
    def fds():
        d = "/proc/%d/fd" % pid
        out = []
        for f in os.listdir(d):
            try:
                out.append(os.readlink(os.path.join(d, f)))
            except OSError:
                pass
        return out
    end = time.monotonic() + 15
    while "anon_inode:[signalfd]" not in fds() and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.2)
    return fds()


def workers():
    started = time.monotonic()
    srv = k.KtsServer(d, root, cert, key, *LIFE, "--session-cache", "64", "--workers", "4",
                      name="srv-workers")
    try:
        sess = fresh("workers.pem")
        rc, how, ok, err = sc(srv.port, "-tls1_2", "-no_ticket", "-sess_out", sess)
        t.check("--workers 4: first connection New", rc == 0 and ok and how == "New", err)
        srv.logged(r"resumed=no$")
        first = last_conn(srv).get("pid")
        results = []
        for i in range(24):
            rc, how, ok, err = sc(srv.port, "-tls1_2", "-no_ticket", "-sess_in", sess)
            results.append((rc, how, ok))
            k.wait_count(srv, r"resumed=yes$", i + 1, timeout=3)
            pids = set(c["pid"] for c in srv.conn_lines()[1:])
            if i >= 5 and pids - {first}:
                break
        lines = srv.conn_lines()
        pids = set(c["pid"] for c in lines)
        t.check("--workers 4: every session-ID resumption Reused",
                all(r == (0, "Reused", True) for r in results) and
                all(c["resumed"] == "yes" for c in lines[1:]), "%s\n%s" % (results, srv.stderr()))
        t.check("--workers 4: a resumption landed on another worker (shared cache)",
                first is not None and pids - {first}, "first %s, pids %s" % (first, pids))
        # TLS 1.3 tickets under the automatic keys the workers share.
        sess13 = fresh("workers13.pem")
        sc(srv.port, "-tls1_3", "-sess_out", sess13)
        res = [sc(srv.port, "-tls1_3", "-sess_in", sess13)[1] for _ in range(4)]
        t.check("--workers 4: TLS 1.3 tickets resume on every worker (automatic keys)",
                res == ["Reused"] * 4, str(res))
        workers_now = children(srv.p.pid)
        t.check("--workers 4: four worker processes", len(workers_now) == 4, str(workers_now))
        # A crashed worker is restarted (it must have run for a second first).
        time.sleep(max(0, 1.2 - (time.monotonic() - started)))
        victim = workers_now[0]
        os.kill(victim, signal.SIGKILL)
        m = None
        try:
            m = srv.wait_for(r"^worker %d killed by signal 9: restarted as worker (\d+)$" % victim)
        except RuntimeError as e:
            t.fail("--workers 4: a killed worker is restarted", str(e))
        if m:
            new = int(m.group(1))
            fds = worker_fds(new)
            t.check("--workers 4: the restarted worker holds one signalfd, its own",
                    fds.count("anon_inode:[signalfd]") == 1, str(sorted(fds)))
            workers_now = children(srv.p.pid)
            t.check("--workers 4: a killed worker is restarted",
                    len(workers_now) == 4 and new in workers_now and victim not in workers_now,
                    "%s %s" % (new, workers_now))
            res = [sc(srv.port, "-tls1_2", "-no_ticket", "-sess_in", sess)[1] for _ in range(4)]
            t.check("--workers 4: still resuming after the restart", res == ["Reused"] * 4, str(res))
        srv.signal(signal.SIGHUP)
        t.check("--workers 4: SIGHUP reaches the workers",
                k.wait_count(srv, r"^worker \d+: SIGHUP: no --ticket-keys file to reload$", 4) == 4,
                srv.stderr()[-1500:])
        srv.signal(signal.SIGTERM)
        rc = srv.wait(15)
        gone = all(not os.path.exists("/proc/%d" % p) or
                   open("/proc/%d/stat" % p).read().split()[2] == "Z" for p in workers_now)
        t.check("--workers 4: SIGTERM stops the workers and the parent (exit 0)",
                rc == 0 and gone and srv.stderr().rstrip().endswith("stopped"),
                "rc %s gone %s\n%s" % (rc, gone, srv.stderr()[-1000:]))
    finally:
        srv.stop()


def rotation():
    kf = os.path.join(d, "rot.keys")
    k1, k2 = k.new_ticket_key(), k.new_ticket_key()
    k.write_ticket_keys(kf, [(1, k1)])
    srv = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", kf, "--session-id", "rot",
                      name="srv-rot")
    try:
        s1 = fresh("rot1.pem")
        rc, how, ok, err = sc(srv.port, "-tls1_2", "-sess_out", s1)
        t1 = k.session_ticket(s1)
        t.check("rotation: TLS 1.2 ticket under keyrev 1", rc == 0 and how == "New" and
                t1[:4] == (1).to_bytes(4, "big"), err)
        ks = fresh("rot-kts")
        check_resumed("rotation: kts-client session under keyrev 1", client(srv.port, ks), "no")
        with open(ks, "rb") as f:
            ks_before = f.read()
        ks12 = fresh("rot-kts12")
        check_resumed("rotation: kts-client TLS 1.2 session under keyrev 1",
                      client(srv.port, ks12, "--tls", "1.2"), "no")

        k.write_ticket_keys(kf, [(1, k1), (2, k2)])
        srv.signal(signal.SIGHUP)
        t.check("rotation: the new set is taken (replaced file and SIGHUP) and described",
                srv.logged(r"ticket keys: reloaded .* \(file replaced\): 2 key\(s\): keyrev 2 "
                           r"seals, 0 staged, 1 retired$") and
                srv.logged(r"ticket keys: reloaded .* \(SIGHUP\): 2 key\(s\): keyrev 2 seals"),
                srv.stderr()[-1000:])
        # OpenSSL clients save no session when a resumed TLS 1.2 handshake
        # brings a renewed ticket (-sess_out stays unwritten): take the ticket
        # from the session s_client prints, and save it as s2 ourselves.
        rc, how, ok, err = sc(srv.port, "-tls1_2", "-sess_in", s1)
        printed = k.tickets_in(k.s_client.last_stdout)
        t2 = printed[0] if printed else b""
        t.check("rotation: TLS 1.2 ticket under the older key resumes",
                rc == 0 and ok and how == "Reused", err)
        t.check("rotation: ... and is renewed under keyrev 2",
                t2 != t1 and t2[:4] == (2).to_bytes(4, "big"),
                "%s -> %s" % (t1[:8].hex(), t2[:8].hex()))
        rc, how, ok, err = sc(srv.port, "-tls1_2", "-sess_in", s1)
        printed = k.tickets_in(k.s_client.last_stdout)
        t.check("rotation: the keyrev 1 ticket keeps resuming (with a renewal) until the "
                "key goes", how == "Reused" and printed and printed[0][:4] == (2).to_bytes(4, "big"),
                err)
        # TLS 1.3: every resumption gets a fresh ticket, under the newest key.
        s13 = fresh("rot13.pem")
        sc(srv.port, "-tls1_3", "-sess_out", s13)  # under keyrev 2 already
        s2 = fresh("rot2.pem")
        sc(srv.port, "-tls1_2", "-sess_out", s2)
        t.check("rotation: new TLS 1.2 sessions under keyrev 2",
                k.session_ticket(s2)[:4] == (2).to_bytes(4, "big"))
        s3 = fresh("rot3.pem")
        rc, how, ok, err = sc(srv.port, "-tls1_2", "-sess_in", s2, "-sess_out", s3)
        t.check("rotation: TLS 1.2 ticket under the newest key resumes without renewal",
                how == "Reused" and not os.path.exists(s3) and
                k.tickets_in(k.s_client.last_stdout)[:1] == [k.session_ticket(s2)], err)
        # TLS 1.3 through kts-client: the resumption leaves a new ticket in the file.
        if check_resumed("rotation: kts-client resumes under the older key", client(srv.port, ks)):
            with open(ks, "rb") as f:
                t.check("rotation: kts-client session file rewritten with a keyrev 2 ticket",
                        f.read() != ks_before and k.session_parses(ks) and
                        k.session_ticket(ks)[:4] == (2).to_bytes(4, "big"))
        # TLS 1.2: the renewed ticket arrives inside the resumed handshake.
        if check_resumed("rotation: kts-client TLS 1.2 resumes under the older key",
                         client(srv.port, ks12, "--tls", "1.2")):
            tk = k.session_ticket(ks12)
            t.check("rotation: kts-client TLS 1.2 session file gets the renewed ticket",
                    tk[:4] == (2).to_bytes(4, "big"), tk[:16].hex())

        # A broken file, written in place, then SIGHUP: logged, the set in
        # use stays.
        with open(kf, "a") as f:
            f.write("3 0 1 2 not-base64!\n")
        srv.signal(signal.SIGHUP)
        t.check("rotation: a bad file is logged with the line, the keys in use kept",
                srv.logged(r"ticket keys: reload \(file replaced\) failed, keeping the 2 key\(s\) "
                           r"in use: .*line 4: key is not valid base64") and
                srv.logged(r"ticket keys: reload \(SIGHUP\) failed, keeping the 2 key\(s\) in "
                           r"use: .*line 4: "), srv.stderr()[-1000:])
        rc, how, ok, err = sc(srv.port, "-tls1_2", "-sess_in", s2)
        t.check("rotation: still resumes after the failed reload", how == "Reused" and ok, err)
    finally:
        srv.stop()

    # A fresh server (same --session-id) with [k2] only: the keyrev 1 ticket
    # means a full handshake.
    k.write_ticket_keys(kf, [(2, k2)])
    srv = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", kf, "--session-id", "rot",
                      name="srv-rot2")
    try:
        rc, how, ok, err = sc(srv.port, "-tls1_2", "-sess_in", s1)
        t.check("rotation: dropped key -> full handshake, no error", rc == 0 and ok and how == "New",
                err)
        rc, how, ok, err = sc(srv.port, "-tls1_2", "-sess_in", s2)
        t.check("rotation: keyrev 2 ticket resumes on the fresh server", how == "Reused" and ok, err)
    finally:
        srv.stop()


def unknown_and_tampered():
    kf = os.path.join(d, "unk.keys")
    k.write_ticket_keys(kf, [(5, k.new_ticket_key())])
    srv = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", kf, "--session-id", "unk",
                      name="srv-unk")
    s1 = fresh("unk.pem")
    sc(srv.port, "-tls1_3", "-sess_out", s1)
    ks = fresh("unk-kts")
    check_resumed("unknown key: kts-client first session", client(srv.port, ks), "no")
    srv.stop()
    k.write_ticket_keys(kf, [(6, k.new_ticket_key())])
    srv = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", kf, "--session-id", "unk",
                      name="srv-unk2")
    try:
        rc, how, ok, err = sc(srv.port, "-tls1_3", "-sess_in", s1)
        t.check("unknown key (server restarted with other keys): s_client full handshake",
                rc == 0 and ok and how == "New", err)
        with open(ks, "rb") as f:
            before = f.read()
        check_resumed("unknown key: kts-client full handshake, no error", client(srv.port, ks),
                      "no")
        with open(ks, "rb") as f:
            after = f.read()
        t.check("unknown key: kts-client session file rewritten", after != before and
                k.session_parses(ks))
        check_resumed("unknown key: the new session resumes", client(srv.port, ks))

        # Tampered: flip bytes of the ticket inside the session (the server cannot
        # open it), or of the DER structure (the client cannot parse it).
        for how in ("ticket", "structure"):
            name = "tampered session file (%s)" % how
            ks2 = fresh("tamper")
            client(srv.port, ks2)
            data = tamper(ks2, how)
            check_resumed(name + ": full handshake, no error", client(srv.port, ks2), "no")
            with open(ks2, "rb") as f:
                t.check(name + ": rewritten with a good session",
                        f.read() != data and k.session_parses(ks2))
            check_resumed(name + ": the rewritten session resumes", client(srv.port, ks2))
    finally:
        srv.stop()


def tamper(path, how):
    """Leave only the newest session of the file, with bytes flipped in its ticket
    or in its DER header. Returns the new content."""
    import base64
    with open(path, "rb") as f:
        block = k.session_blocks(f.read())[-1]
    with open(path, "wb") as f:
        f.write(block)
    lines = block.splitlines()
    der = bytearray(base64.b64decode(b"".join(lines[1:-1])))
    if how == "ticket":
        tk = k.session_ticket(path)
        i = bytes(der).find(tk)
        assert len(tk) > 32 and i > 0, "ticket not found in the session"
        for j in range(i + 20, i + 28):  # after the key name: the server's HMAC fails
            der[j] ^= 0x5a
    else:
        der[0] ^= 0xff  # not a SEQUENCE any more
    b64 = base64.b64encode(bytes(der))
    data = lines[0] + b"\n" + b"".join(b64[i:i + 64] + b"\n" for i in range(0, len(b64), 64)) + \
        lines[-1] + b"\n"
    with open(path, "wb") as f:
        f.write(data)
    return data


def bad_session_files():
    good = fresh("good")
    client(srv_t.port, good)

    def refused(name, path, want):
        rc, resumed, body_ok, err = client(srv_t.port, path)
        t.check("bad session file: %s -> exit 1 naming the problem" % name,
                rc == 1 and ("kts-client: session file %s: " % path) in err and want in err,
                "rc %d\n%s" % (rc, err))

    p = fresh("mode644")
    with open(p, "w"):
        pass
    os.chmod(p, 0o644)
    refused("mode 0644", p, "mode is 0644")
    p = fresh("mode400")
    with open(p, "w"):
        pass
    os.chmod(p, 0o400)
    refused("mode 0400", p, "")  # read-only: open for writing fails, or the mode check
    if os.geteuid() == 0:
        p = fresh("owner")
        with open(p, "w"):
            pass
        os.chmod(p, 0o600)
        os.chown(p, 65534, 65534)
        refused("other owner", p, "owned by uid 65534")
    else:
        t.skip("bad session file: other owner", "needs root to chown (not root here)")
    p = fresh("link")
    os.symlink(good, p)
    refused("symlink to a good file", p, "is a symbolic link")
    p = fresh("fifo")
    os.mkfifo(p, 0o600)
    refused("FIFO", p, "not a regular file (a FIFO)")
    p = fresh("dir")
    os.mkdir(p, 0o700)
    refused("directory", p, "not a regular file (a directory)")
    refused("missing directory", os.path.join(d, "no", "such"), "No such file or directory")

    def rewritten(name, content):
        p = fresh(name)
        with open(p, "wb") as f:
            f.write(content)
        os.chmod(p, 0o600)
        r = client(srv_t.port, p)
        check_resumed("session file with %s: full handshake" % name, r, "no")
        with open(p, "rb") as f:
            t.check("session file with %s: rewritten with a good session" % name,
                    f.read() != content and k.session_parses(p))

    rewritten("garbage", os.urandom(3000))
    with open(good, "rb") as f:
        pem = k.session_blocks(f.read())[-1]
    rewritten("truncated PEM", pem[:len(pem) // 2])

    # Created 0600 whatever the umask says.
    p = fresh("umask")
    r = subprocess.run([k.tool("kts-client"), "--ca", cert, "--session-file", p, "--get",
                        "/file.bin", "localhost:%d" % srv_t.port], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=20, preexec_fn=lambda: os.umask(0o277))
    t.check("session file created 0600 under umask 0277",
            r.returncode == 0 and stat.S_IMODE(os.stat(p).st_mode) == 0o600, r.stderr.decode())


def bad_key_files():
    good = k.new_ticket_key()
    import base64

    def refused(name, lines, want, mode=0o600):
        kf = fresh("bad.keys")
        with open(kf, "w") as f:
            f.write("".join(l + "\n" for l in lines))
        os.chmod(kf, mode)
        r = subprocess.run([k.tool("kts-server"), "--listen", "127.0.0.1:0", "--cert", cert,
                            "--key", key, "--root", root] + LIFE + ["--ticket-keys", kf],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        err = r.stderr.decode(errors="replace")
        t.check("--ticket-keys %s: refused to start, naming it" % name,
                r.returncode == 1 and "kts-server: --ticket-keys %s: " % kf in err and want in err
                and "listening" not in err, "rc %d\n%s" % (r.returncode, err))

    b64 = base64.b64encode(good).decode()
    now = int(time.time())
    one = "1 %d %d %d %s" % (now - 10, now + 3600, now + 7200, b64)
    hdr = "kts-ticket-keys 1"
    refused("mode 0644", [hdr, one], "mode is 0644", mode=0o644)
    refused("mode 0640", [hdr, one], "mode is 0640", mode=0o640)
    refused("old format (no header)", ["1 " + b64], "line 1: not a kts key-set file")
    refused("bad base64", [hdr, "# c", one, "2 0 1 2 " + b64[:40] + "*" + b64[41:]],
            "line 4: key is not valid base64")
    refused("wrong length", [hdr, "1 0 1 2 " + base64.b64encode(good[:48]).decode()],
            "line 2: key is 48 bytes, must be 64")
    refused("duplicate keyrev", [hdr, one, "",
                                 "1 0 1 2 " + base64.b64encode(k.new_ticket_key()).decode()],
            "line 4: keyrev 1 is already on line 2")
    refused("no keys", [hdr, "# nothing"], "the set is empty")
    refused("no key active now", [hdr, "1 %d %d %d %s" % (now + 600, now + 3600, now + 7200, b64)],
            "no key is active now")
    refused("bad keyrev", [hdr, "x" + one], "line 2: keyrev must be a decimal number")
    r = subprocess.run([k.tool("kts-server"), "--listen", "127.0.0.1:0", "--cert", cert, "--key",
                        key, "--root", root, "--ticket-keys", "/nonexistent"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    t.check("--ticket-keys without --session-lifetime refused",
            r.returncode == 1 and b"needs --session-lifetime" in r.stderr, r.stderr.decode())


def verification_rules():
    """A session is only resumed under the verification rules it was made
    under: an unverified one (kts-client --insecure, or openssl s_client
    -sess_out without verification) must not let a verifying client skip the
    check the server's self-signed certificate fails."""
    other_cert, _ = k.make_cert(k.tmpdir(), cn="localhost")

    def run(sess, *args):
        r = k.kts_client(["--status", "--session-file", sess, "--get", "/file.bin"] + list(args) +
                         ["localhost:%d" % srv_t.port], timeout=20)
        err = r.stderr.decode(errors="replace")
        st = k.parse_status(err)
        return r.returncode, st["resumed"] if st else None, k.sha256(r.stdout) == digest, err

    def refused(name, r):
        rc, resumed, body_ok, err = r
        t.check(name, rc != 0 and not body_ok and resumed != "yes" and "certificate" in err,
                "rc %d resumed=%s body_ok=%s\n%s" % (rc, resumed, body_ok, err))

    for v in ("1.2", "1.3"):
        sess = fresh("insecure")
        check_resumed("TLS %s --insecure: full" % v, run(sess, "--insecure", "--tls", v), "no")
        check_resumed("TLS %s --insecure: resumes its own session" % v,
                      run(sess, "--insecure", "--tls", v))
        refused("TLS %s verifying client: not resumed from the --insecure session, "
                "verification fails" % v, run(sess, "--tls", v))
        sess = fresh("verified")
        check_resumed("TLS %s --ca cert: full" % v, run(sess, "--ca", cert, "--tls", v), "no")
        refused("TLS %s --ca other: not resumed from a session verified under another CA" % v,
                run(sess, "--ca", other_cert, "--tls", v))
        check_resumed("TLS %s --ca cert: still resumes" % v, run(sess, "--ca", cert, "--tls", v))

        # Written by another program without verification.
        sess = fresh("s_client-unverified.pem")
        rc, how, ok, err = k.s_client(srv_t.port, "-sess_out", sess, "-tls" + v.replace(".", "_"))
        t.check("TLS %s s_client -sess_out without verification: New" % v,
                rc == 0 and how == "New" and "self-signed" in k.s_client.last_stdout + err, err)
        os.chmod(sess, 0o600)
        refused("TLS %s verifying kts-client: s_client's unverified session not resumed" % v,
                run(sess, "--tls", v))
        check_resumed("TLS %s kts-client --ca cert: full handshake from a file kts did not "
                      "tag" % v, run(sess, "--ca", cert, "--tls", v), "no")


t.run("verification rules", verification_rules)
t.run("kts-client <-> kts-server", kts_pairs)
t.run("kts-client pipe mode", pipe_mode)
t.run("kts-client -> s_server", s_server_pairs)
t.run("s_client -> kts-server", s_client_pairs)
t.run("shared ticket keys", shared_keys)
t.run("workers", workers)
t.run("rotation", rotation)
t.run("unknown key, tampered file", unknown_and_tampered)
t.run("bad session files", bad_session_files)
t.run("bad key files", bad_key_files)
t.done()
