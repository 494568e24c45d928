#!/usr/bin/env python3
"""kts-server --control and ktsctl status|reload-keys|drain|stop: the socket
is 0600 and answers only root and the server's uid; status counters match
what clients did (connections, full and resumed handshakes, offload paths
with their reasons, response bytes); a bad key file shows in status and the
keys in use stay; the supervisor of --workers answers for every worker;
drain lets a download in flight finish, stop cuts it; a silent or garbling
client gets a clear answer and never stalls the server; a stale socket is
replaced, a live one or a non-socket is refused."""
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import threading
import time

import ktshost as k

t = k.Suite("control", deadline=110)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
SMALL = 1000
k.write_random(os.path.join(root, "file.bin"), SMALL)
BIG = 8 << 20
big_sha = k.write_random(os.path.join(root, "big.bin"), BIG)
LIFE = ("--session-lifetime", "300")


def status(sock):
    rc, out, err = k.ktsctl("status", "--json", sock)
    if rc != 0:
        raise RuntimeError("ktsctl status: rc %d: %s%s" % (rc, out, err))
    return json.loads(out)


def raw(sock, data, wait=5.0):
    """Send data on a new connection to the control socket; the answer (bytes)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(wait)
    s.connect(sock)
    try:
        if data:
            s.sendall(data)
    except BrokenPipeError:
        pass  # answered and closed before it all went (busy, refused): read that
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            if out:  # closed on input it did not read, after its answer
                break
            raise
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def response_len(resp):
    head, body = k.http_body(resp)
    return len(head) + 4 + len(body)


def counters_and_keys():
    kf = os.path.join(d, "keys")
    k.ktsctl("keys", "init", kf, "--force")
    sock = os.path.join(d, "ctl.sock")
    srv = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", kf, "--control", sock,
                      "--status", "--no-tls13-seal", name="srv-counters")
    try:
        st = os.lstat(sock)
        t.check("the control socket is a socket of mode 0600",
                stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600,
                oct(st.st_mode))
        sess = os.path.join(d, "sess.pem")
        sent = 0
        how = []
        for i in range(5):
            args = ["-tls1_3", "-sess_out", sess] if i < 3 else ["-tls1_3", "-sess_in", sess]
            rc, h, resp, why = k.s_client(srv.port, *args)
            if rc != 0 or not resp.startswith(b"HTTP/1.1 200"):
                raise RuntimeError("s_client: " + why)
            how.append(h)
            sent += response_len(resp)
        t.check("clients: 3 new sessions, then 2 resumed", how == ["New"] * 3 + ["Reused"] * 2,
                how)
        k.wait_count(srv, r"offload tx=", 5)
        end = time.monotonic() + 5  # the last connection's lingering close
        while True:
            j = status(sock)
            if j["connections"]["open"] == 0 or time.monotonic() > end:
                break
            time.sleep(0.05)
        t.check("status: ok, pid, engine, listen address",
                j["ok"] is True and j["pid"] == srv.p.pid and j["engine"] == k.ENGINE and
                j["listen"] == "127.0.0.1:%d" % srv.port and j["workers"] == 0, j)
        # TLS 1.3 without kTLS and --no-tls13-seal: no secrets, OpenSSL stays.
        freed = 5 if k.host_has_ktls() else 0
        t.check("status: 5 connections in total, none open now, %d freed OpenSSL" % freed,
                j["connections"] == {"open": 0, "total": 5, "refused": 0, "openssl_freed": freed},
                j["connections"])
        t.check("status: 3 full and 2 resumed handshakes, none failed",
                j["handshakes"] == {"full": 3, "resumed": 2, "failed": 0}, j["handshakes"])
        lines = srv.conn_lines()
        for dname in ("tx", "rx"):
            o = j["offload"][dname]
            kern = sum(1 for c in lines if c[dname] == "kernel")
            t.check("status: offload %s matches the connections' log lines (%d kernel)"
                    % (dname, kern),
                    o["kernel"] == kern and o["userspace"] == 5 - kern, (o, lines))
            t.check("status: the %s reasons count every userspace connection" % dname,
                    sum(r["count"] for r in o["reasons"]) == o["userspace"] and
                    all(r["reason"] for r in o["reasons"]), o)
        b = j["bytes_sent"]
        t.check("status: response bytes sent (%d) are what the clients got" % sent,
                b["kernel"] + b["userspace"] == sent, (b, sent))
        keys = j["ticket_keys"]
        t.check("status: the key file, loaded, with its one key sealing",
                keys["file"] == kf and keys["last_load"]["ok"] is True and
                [(x["state"], x["seals"]) for x in keys["keys"]] == [("active", True)], keys)
        rc, out, _ = k.ktsctl("status", sock)
        t.check("ktsctl status (text) says the handshakes",
                rc == 0 and "handshakes: 3 full, 2 resumed, 0 failed" in out, out)
        # An open keep-alive connection counts as open.
        ctx = k.tls_context(cert)
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=10),
                             server_hostname="localhost"):
            k.wait_count(srv, r"offload tx=", 6)
            t.check("status: a connection held open counts as open",
                    status(sock)["connections"]["open"] == 1)
        # Reload through the socket, then a bad file: refused, shown, old keys kept.
        rc, out, err = k.ktsctl("keys", "rotate", kf, "--force")
        k.wait_count(srv, r"reloaded \S+ \(file replaced\)", 1)
        rc, out, err = k.ktsctl("reload-keys", sock)
        t.check("ktsctl reload-keys: ok, the server's line says 2 keys",
                rc == 0 and "(control socket): 2 key(s)" in out, out + err)
        before = [x["keyrev"] for x in status(sock)["ticket_keys"]["keys"]]
        os.chmod(kf, 0o644)
        rc, out, err = k.ktsctl("reload-keys", sock)
        t.check("ktsctl reload-keys of a mode-0644 file: exit 1 naming the mode",
                rc == 1 and "mode" in err, (rc, out, err))
        keys = status(sock)["ticket_keys"]
        t.check("status: the refused load is shown, the keys in use stay",
                keys["last_load"]["ok"] is False and "mode" in keys["last_load"]["message"] and
                [x["keyrev"] for x in keys["keys"]] == before == [1, 2], keys)
        os.chmod(kf, 0o600)
    finally:
        srv.stop()
    t.check("the socket file is gone after the server stopped", not os.path.exists(sock))


def protocol_errors():
    sock = os.path.join(d, "proto.sock")
    srv = k.KtsServer(d, root, cert, key, "--control", sock, name="srv-proto")
    try:
        a = json.loads(raw(sock, b"bogus\xff\n"))
        t.check("an unknown command: ok false, named (bytes shown as '?')",
                a["ok"] is False and a["error"].startswith('unknown command "bogus?"'), a)
        a = json.loads(raw(sock, b"x" * 100))
        t.check("a line over 64 bytes: refused", a["ok"] is False and "end of line" in
                a["error"], a)
        a = json.loads(raw(sock, b"status\r\n"))
        t.check("CRLF is fine", a["ok"] is True and a["kts_control"] == 1, a)
        # Silent clients: they hold places, a fifth is turned away, the
        # server still serves HTTPS meanwhile, and each gets an answer in time.
        silent = []
        for _ in range(4):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(6)
            s.connect(sock)
            silent.append(s)
        time.sleep(0.2)
        a = json.loads(raw(sock, b"status\n"))
        t.check("a fifth client while four are silent: busy", a["ok"] is False and
                a["error"].startswith("busy"), a)
        t0 = time.monotonic()
        rc, how, resp, why = k.s_client(srv.port, "-tls1_3")
        t.check("HTTPS is served while control clients are silent",
                rc == 0 and resp.startswith(b"HTTP/1.1 200") and time.monotonic() - t0 < 2,
                why)
        answers = [json.loads(s.recv(4096)) for s in silent]
        t.check("each silent client is answered 'no whole line in time'",
                all(x["ok"] is False and "in time" in x["error"] for x in answers), answers)
        for s in silent:
            s.close()
        t.check("the server logged the refusals", srv.logged(r"^control: unknown command"))
    finally:
        srv.stop()


def other_uid():
    if os.geteuid() != 0:
        t.skip("another uid is refused", "needs root to run a client as another user")
        return
    sd = k.tmpdir("kts-ctl-")
    os.chmod(sd, 0o711)
    sock = os.path.join(sd, "ctl.sock")
    srv = k.KtsServer(d, root, cert, key, "--control", sock, name="srv-uid")
    probe = ("import socket,sys\n"
             "s=socket.socket(socket.AF_UNIX)\n"
             "try:\n s.connect(sys.argv[1])\nexcept OSError as e:\n print('connect',e.errno);"
             " sys.exit(0)\n"
             "print(s.recv(4096).decode())\n")

    def as_nobody():
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "/usr/bin/python3", "-c", probe, sock], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        return r.stdout.decode().strip() + r.stderr.decode()
    try:
        out = as_nobody()
        t.check("uid 65534: the 0600 socket refuses the connection (EACCES)",
                out == "connect 13", out)
        os.chmod(sock, 0o666)  # past the file mode: SO_PEERCRED must refuse it
        out = as_nobody()
        try:
            a = json.loads(out)
        except ValueError:
            a = {}
        t.check("uid 65534 past the file mode: refused by SO_PEERCRED",
                a.get("ok") is False and "permission denied" in a.get("error", ""), out)
        t.check("the server logged the refused uid",
                srv.logged(r"^control: refused pid \d+ uid 65534"), srv.stderr())
    finally:
        srv.stop()


def socket_path_rules():
    p = os.path.join(d, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(p)
    s.close()  # the file stays, nobody listens: a server that died
    srv = k.KtsServer(d, root, cert, key, "--control", p, name="srv-stale")
    try:
        t.check("a stale socket is replaced", status(p)["pid"] == srv.p.pid)
        r = subprocess.run([k.tool("kts-server"), "--listen", "127.0.0.1:0", "--cert", cert,
                            "--key", key, "--root", root, "--control", p],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        t.check("a live socket is refused: exit 1, named",
                r.returncode == 1 and b"another server answers on it" in r.stderr, r.stderr)
    finally:
        srv.stop()
    f = os.path.join(d, "plain")
    with open(f, "w") as fh:
        fh.write("keep me\n")
    r = subprocess.run([k.tool("kts-server"), "--listen", "127.0.0.1:0", "--cert", cert, "--key",
                        key, "--root", root, "--control", f], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10)
    with open(f) as fh:
        kept = fh.read()
    t.check("a regular file at the path: refused, left as it was",
            r.returncode == 1 and b"not a socket" in r.stderr and kept == "keep me\n", r.stderr)
    rc, out, err = k.ktsctl("status", os.path.join(d, "nothing.sock"))
    t.check("ktsctl status of a missing socket: exit 1 with a hint",
            rc == 1 and "--control" in err, err)


def workers():
    kf = os.path.join(d, "wkeys")
    k.ktsctl("keys", "init", kf, "--force")
    sock = os.path.join(d, "w.sock")
    srv = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", kf, "--control", sock,
                      "--workers", "2", "--status", name="srv-workers")
    try:
        for _ in range(6):
            rc, how, resp, why = k.s_client(srv.port, "-tls1_2")
            if rc != 0 or not resp.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(why)
        k.wait_count(srv, r"offload tx=", 6)
        j = status(sock)
        procs = j["processes"]
        pids = {c["pid"] for c in srv.conn_lines()}
        t.check("status: the supervisor answers, two workers listed",
                j["pid"] == srv.p.pid and j["workers"] == 2 and len(procs) == 2 and
                all(p["role"] == "worker" for p in procs), j)
        t.check("status: each worker's connections match its log lines",
                all(p["connections"]["total"] ==
                    sum(1 for c in srv.conn_lines() if c["pid"] == p["pid"]) for p in procs),
                (procs, pids))
        t.check("status: the totals are the workers' sums (6)",
                j["connections"]["total"] == 6 ==
                sum(p["connections"]["total"] for p in procs) and
                j["handshakes"]["full"] == sum(p["handshakes"]["full"] for p in procs), j)
        k.ktsctl("keys", "rotate", kf, "--force")
        k.wait_count(srv, r"^worker \d+: ticket keys: reloaded", 2)
        j = status(sock)
        t.check("status: every worker holds the rotated set (keyrevs 1, 2)",
                all([x["keyrev"] for x in p["ticket_keys"]["keys"]] == [1, 2] and
                    p["ticket_keys"]["last_load"]["ok"] for p in j["processes"]), j["processes"])
        rc, out, err = k.ktsctl("stop", sock)
        t.check("ktsctl stop: the supervisor and its workers exit 0",
                rc == 0 and srv.wait(10) == 0, out + err + srv.stderr()[-1500:])
    finally:
        srv.stop()


def big_status():
    """A status larger than one socket buffer (64 workers, 32 keys each) goes
    out whole: the rest is sent as the client reads."""
    kf = os.path.join(d, "bigkeys")
    k.ktsctl("keys", "init", kf, "--force", "--interval", "10")
    for i in range(31):
        k.ktsctl("keys", "rotate", kf, "--force", "--now", str(int(time.time()) + i * 11))
    sock = os.path.join(d, "big.sock")
    srv = k.KtsServer(d, root, cert, key, "--session-lifetime", "300", "--ticket-keys", kf,
                      "--control", sock, "--workers", "64", "--threads", "1",
                      name="srv-big")
    try:
        end = time.monotonic() + 30
        j = {}
        while time.monotonic() < end:  # every worker up, each with its keys
            j = status(sock)
            ps = j.get("processes", [])
            if len(ps) == 64 and all(len(p["ticket_keys"]["keys"]) == 32 for p in ps):
                break
            time.sleep(0.2)
        raw_len = len(raw(sock, b"status\n", wait=10))
        with open("/proc/sys/net/core/wmem_default") as fh:
            wmem = int(fh.read())
        t.check("a %d-byte status (64 workers x 32 keys; socket buffer %d) arrives whole"
                % (raw_len, wmem),
                raw_len > wmem and len(j.get("processes", [])) == 64 and
                all(len(p["ticket_keys"]["keys"]) == 32 for p in j["processes"]),
                (raw_len, len(j.get("processes", []))))
    finally:
        srv.stop()


def slow_download(port, result, pause=0.005):
    """GET big.bin, reading slowly; result gets (bytes received, sha256, error)."""
    import hashlib
    h = hashlib.sha256()
    n = 0
    try:
        ctx = k.tls_context(cert)
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20),
                            server_hostname="localhost")
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        body = buf.split(b"\r\n\r\n", 1)[1]
        h.update(body)
        n = len(body)
        result["started"] = True
        while n < BIG:
            chunk = s.recv(65536)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
            time.sleep(pause)
        s.close()
        result.update(n=n, sha=h.hexdigest(), err=None)
    except (OSError, ssl.SSLError) as e:
        result.update(n=n, sha=None, err=str(e))


def drain_and_stop():
    for cmd in ("drain", "stop"):
        sock = os.path.join(d, cmd + ".sock")
        srv = k.KtsServer(d, root, cert, key, "--control", sock, name="srv-" + cmd)
        try:
            res = {}
            th = threading.Thread(target=slow_download, args=(srv.port, res))
            th.start()
            end = time.monotonic() + 10
            while not res.get("started") and time.monotonic() < end:
                time.sleep(0.02)
            rc, out, err = k.ktsctl(cmd, sock)
            t0 = time.monotonic()
            t.check("ktsctl %s: ok" % cmd, rc == 0, out + err)
            time.sleep(0.3)
            try:
                socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
                refused = False
            except OSError:
                refused = True
            t.check("%s: new connections are refused at once" % cmd, refused)
            code = srv.wait(30)
            took = time.monotonic() - t0
            th.join(30)
            if cmd == "drain":
                t.check("drain: the download in flight finished whole",
                        res.get("n") == BIG and res.get("sha") == big_sha, res)
            else:
                t.check("stop: the download in flight was cut (%d of %d bytes)"
                        % (res.get("n", -1), BIG), res.get("n", BIG) < BIG, res)
                t.check("stop: the server exited within 3 s (%.1f s)" % took, took < 3)
            t.check("%s: the server exited 0 and said so" % cmd,
                    code == 0 and srv.logged(r"^control socket: %s" %
                                             ("draining" if cmd == "drain" else "stopping now")),
                    srv.stderr()[-1500:])
        finally:
            srv.stop()


def drain_then_stop():
    """A drain that a slow download holds up is cut by a stop: SIGTERM to a
    single process, `ktsctl stop` to a supervisor (which still answers)."""
    for workers in (None, "2"):
        sock = os.path.join(d, "ds%s.sock" % (workers or ""))
        extra = ("--workers", workers) if workers else ()
        srv = k.KtsServer(d, root, cert, key, "--control", sock, *extra,
                          name="srv-drain-stop%s" % (workers or ""))
        what = "ktsctl stop to the supervisor" if workers else "SIGTERM"
        try:
            res = {}
            th = threading.Thread(target=slow_download, args=(srv.port, res, 0.03))
            th.start()
            end = time.monotonic() + 10
            while not res.get("started") and time.monotonic() < end:
                time.sleep(0.02)
            rc, out, err = k.ktsctl("drain", sock)
            time.sleep(0.5)
            t.check("drain, %s: still draining (the download holds it)" % what,
                    rc == 0 and srv.p.poll() is None, out + err)
            t0 = time.monotonic()
            if workers:
                rc, out, err = k.ktsctl("stop", sock)
            else:
                srv.signal(signal.SIGTERM)
            code = srv.wait(15)
            took = time.monotonic() - t0
            th.join(30)
            t.check("drain, then %s: the server exits within 4 s (%.1f s), the download cut"
                    % (what, took), took < 4 and code == 0 and res.get("n", BIG) < BIG,
                    (res, srv.stderr()[-800:]))
        finally:
            srv.stop()


t.run("counters and keys", counters_and_keys)
t.run("protocol errors", protocol_errors)
t.run("another uid", other_uid)
t.run("socket path rules", socket_path_rules)
t.run("workers", workers)
t.run("drain and stop", drain_and_stop)
t.run("drain, then stop", drain_then_stop)
t.run("a large status", big_status)
t.done()
