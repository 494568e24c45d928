#!/usr/bin/env python3
"""ktsctl keys: init writes a 0600 file (refusing to replace one without
--force, owned by --owner), rotate follows the schedule over a given clock
and keeps the owner, list shows states and fingerprints but never key bytes,
check answers as a server would (exit 1 naming the problem), usage errors
exit 2. ktsctl check on this host: its answer on kTLS (asserted against what
the kernel says to a TCP_ULP of our own), io_uring, kmod-config; --require
and --json. ktsctl session on a kts-client session file: what it holds, no
secrets, whether it resumes now (exit 0) or not (exit 1)."""
import base64
import json
import os
import pwd
import re
import socket
import stat
import subprocess
import time

import ktshost as k

t = k.Suite("ktsctl", deadline=60)
d = k.tmpdir()
T0 = 1700000000


ktsctl = k.ktsctl
keys_in = k.read_ticket_keys


def init_and_rotate():
    kf = os.path.join(d, "a.keys")
    rc, out, err = ktsctl("keys", "init", kf, "--now", T0, "--interval", 600, "--lifetime", 900)
    t.check("init: exit 0 and says which key seals", rc == 0 and "keyrev 1 seals" in out, err)
    st = os.stat(kf)
    t.check("init: the file is 0600", stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode))
    with open(kf) as f:
        first = [l for l in f if not l.startswith("#")][0]
    t.check("init: the policy is in the header",
            first.strip() == "kts-ticket-keys 1 interval=600 lifetime=900", first)
    ks = keys_in(kf)
    t.check("init: one key active from now for 2 intervals, opening a lifetime longer",
            len(ks) == 1 and ks[0][:4] == (1, T0, T0 + 1200, T0 + 2100), str(ks))
    rc, out, err = ktsctl("keys", "init", kf)
    t.check("init: an existing file is not replaced without --force",
            rc == 1 and "exists; --force replaces it" in err and keys_in(kf) == ks, err)
    rc, out, err = ktsctl("keys", "init", kf, "--if-missing")
    t.check("init --if-missing: an existing file is left as it is (exit 0)",
            rc == 0 and "left as it is" in out and keys_in(kf) == ks, out + err)
    rc, out, err = ktsctl("keys", "init", kf, "--if-missing", "--force")
    t.check("init --if-missing --force: a usage error", rc == 2 and "not both" in err, err)
    rc, out, err = ktsctl("keys", "rotate", kf, "--now", T0)
    ks = keys_in(kf)
    t.check("rotate: a staged key, sealing one interval later",
            rc == 0 and "added keyrev 2" in out and ks[1][:4] == (2, T0 + 600, T0 + 1800,
                                                                    T0 + 2700), out + str(ks))
    rc, out, err = ktsctl("keys", "rotate", kf, "--now", T0 + 60)
    t.check("rotate: nothing to do while a key is staged (exit 0)",
            rc == 0 and "nothing to rotate" in out and len(keys_in(kf)) == 2, out)
    rc, out, err = ktsctl("keys", "rotate", kf, "--now", T0 + 60, "--force")
    t.check("rotate --force: one more", rc == 0 and len(keys_in(kf)) == 3, out)
    rc, out, err = ktsctl("keys", "rotate", kf, "--now", T0 + 100000)
    ks = keys_in(kf)
    t.check("rotate: gone keys are dropped", rc == 0 and "3 gone key(s) dropped" in out and
            [x[0] for x in ks] == [4], out + str(ks))
    t.check("the file stays 0600 through rotations",
            stat.S_IMODE(os.stat(kf).st_mode) == 0o600)
    leftovers = [n for n in os.listdir(d) if n.startswith("a.keys.")]
    t.check("no temporary files left behind", not leftovers, str(leftovers))


t.run("init and rotate", init_and_rotate)


def list_and_check():
    kf = os.path.join(d, "b.keys")
    ktsctl("keys", "init", kf, "--now", T0)
    ktsctl("keys", "rotate", kf, "--now", T0)
    rc, out, err = ktsctl("keys", "list", kf, "--now", T0 + 10)
    rows = {int(m.group(1)): m.group(2) for m in re.finditer(r"^(\d+)\s+(\w+)\s", out, re.M)}
    t.check("list: keyrev 1 active and sealing, 2 staged",
            rc == 0 and rows == {1: "active", 2: "staged"} and
            re.search(r"^1 .*\(seals\)$", out, re.M), out)
    t.check("list: times in UTC and fingerprints", "2023-11-14T22:13:20Z" in out and
            len(re.findall(r"sha256:[0-9a-f]{16}", out)) == 2, out)
    secrets = [base64.b64encode(x[4]).decode() for x in keys_in(kf)]
    t.check("list: no key bytes in the output", not any(s[:20] in out for s in secrets), out)
    rc, out, err = ktsctl("keys", "list", kf, "--now", T0 + 3600 + 10)
    t.check("list: later, 2 seals and 1 acts as retired",
            re.search(r"^1\s+retired\s", out, re.M) and re.search(r"^2 .*\(seals\)$", out, re.M),
            out)
    rc, out, err = ktsctl("keys", "check", kf, "--now", T0 + 10)
    t.check("check: ok, names the sealing key and the staged count",
            rc == 0 and "ok: keyrev 1 seals now; 1 staged" in out and "warning" not in out, out)
    rc, out, err = ktsctl("keys", "check", kf, "--now", T0 + 3600 + 10)
    t.check("check: warns when no key is staged", rc == 0 and "warning: no key is staged" in out,
            out)
    rc, out, err = ktsctl("keys", "check", kf, "--now", T0 + 10 ** 6)
    t.check("check: no key active at that time -> exit 1, named",
            rc == 1 and "refused: ticket keys: no key is active now" in out, out)
    os.chmod(kf, 0o640)
    rc, out, err = ktsctl("keys", "check", kf, "--now", T0 + 10)
    t.check("check: mode 0640 -> exit 1, named", rc == 1 and "mode is 0640" in out + err,
            out + err)
    os.chmod(kf, 0o600)
    nobody = pwd.getpwnam("nobody")
    if os.geteuid() == 0:
        rc, out, err = ktsctl("keys", "check", kf, "--now", T0 + 10, "--user", "nobody")
        t.check("check --user nobody: the file is root's -> exit 1, named",
                rc == 1 and "must be owned by uid %d" % nobody.pw_uid in out, out)
        kn = os.path.join(d, "n.keys")
        rc, out, err = ktsctl("keys", "init", kn, "--owner", "nobody", "--now", T0)
        st = os.stat(kn)
        t.check("init --owner nobody: owned by nobody, 0600",
                rc == 0 and st.st_uid == nobody.pw_uid and stat.S_IMODE(st.st_mode) == 0o600,
                err)
        rc, out, err = ktsctl("keys", "rotate", kn, "--now", T0)
        t.check("rotate keeps the owner", rc == 0 and os.stat(kn).st_uid == nobody.pw_uid, err)
        rc, out, err = ktsctl("keys", "check", kn, "--now", T0 + 10, "--user", "nobody")
        t.check("check --user nobody: ok", rc == 0 and "ok:" in out, out + err)
    else:
        t.skip("--owner and --user cases", "not root")


t.run("list and check", list_and_check)


def errors():
    kf = os.path.join(d, "bad.keys")
    with open(kf, "w") as f:
        f.write("kts-ticket-keys 1\n1 0 1 2 %s\n" % base64.b64encode(os.urandom(48)).decode())
    os.chmod(kf, 0o600)
    for verb in ("list", "check", "rotate"):
        rc, out, err = ktsctl("keys", verb, kf)
        t.check("%s of a bad file: exit 1, names file and line" % verb,
                rc == 1 and kf in err and "line 2: key is 48 bytes" in err, err)
    rc, out, err = ktsctl("keys", "list", os.path.join(d, "none.keys"))
    t.check("a missing file: exit 1, named", rc == 1 and "No such file" in err, err)
    for args, want in ((["keys"], "which? init"), (["keys", "frob", kf], "unknown command"),
                       (["keys", "list"], "which FILE"), (["keys", "list", kf, kf], "one FILE"),
                       (["keys", "init", kf, "--interval", "9"], "want 10..604800"),
                       (["keys", "init", kf, "--lifetime", "59"], "want 60..604800"),
                       (["keys", "list", kf, "--force"], "not valid for this command"),
                       (["keys", "init", kf, "--now", "soon"], "--now soon"),
                       (["frob"], "unknown command")):
        rc, out, err = ktsctl(*args)
        t.check("usage error %s: exit 2" % " ".join(args[:3]), rc == 2 and want in err, err)
    rc, out, err = ktsctl("--help")
    t.check("--help: exit 0, usage on stdout", rc == 0 and out.startswith("usage: ktsctl"), err)


t.run("errors", errors)


def host_has_tls():
    """What the kernel says to TCP_ULP "tls" on a connected socket of our own."""
    srv = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(srv.getsockname())
    try:
        c.setsockopt(socket.SOL_TCP, 31, b"tls")  # TCP_ULP
        return True
    except OSError:
        return False
    finally:
        c.close()
        srv.close()


def kernel_check():
    kmod = os.path.join(k.HERE, "..", "..", "kmod-config")
    rc, out, err = ktsctl("check", "--kmod-config", kmod)
    has = host_has_tls()
    t.check("check: exit 0 without --require", rc == 0, err)
    t.check("check: the tls ULP answer matches the kernel's (%s)" % ("yes" if has else "no"),
            ("tls ULP: yes" in out) == has and ("tls ULP: no (no tls module)" in out) == (not has),
            out)
    t.check("check: io_uring with the engine's opcodes",
            re.search(r"^io_uring: yes; ", out, re.M) and
            re.search(r"^  opcodes: ACCEPT RECV RECVMSG SEND SENDMSG SPLICE READ TIMEOUT "
                      r"ASYNC_CANCEL$", out, re.M), out)
    t.check("check: kmod-config compared with /etc, with the command that installs it",
            re.search(r"^kmod-config: /etc/modprobe.d/kts.conf (installed|(missing|differs): "
                      r"install -m 0644 \S+modprobe.d/kts.conf /etc/modprobe.d/kts.conf)$", out,
                      re.M), out)
    rc, out, err = ktsctl("check", "--require", "--kmod-config", kmod)
    if has:
        t.check("check --require on a kTLS kernel: exit 0", rc == 0, err)
    else:
        t.check("check --require without kTLS: exit 1 naming the tls ULP",
                rc == 1 and "this kernel lacks what kts needs: the tls ULP" in err, err)
    rc, out, err = ktsctl("check", "--json", "--kmod-config", kmod)
    try:
        j = json.loads(out)
    except ValueError as e:
        t.fail("check --json parses", str(e))
        return
    t.check("check --json: the same answers",
            rc == 0 and j["tls_ulp"] == has and len(j["ciphers"]) == 12 and
            j["io_uring"]["ok"] and all(j["io_uring"]["opcodes"].values()) and
            (j["missing"] == [] if has else j["missing"][0].startswith("the tls ULP")) and
            isinstance(j["rekey"], bool) and len(j["kmod_config"]) == 2, out)
    rc, out, err = ktsctl("check", "extra")
    t.check("check with an argument: exit 2", rc == 2 and "check takes no arguments" in err, err)


t.run("kernel check", kernel_check)


def session_file():
    cert, key = k.make_cert(d)
    root = os.path.join(d, "root")
    os.makedirs(root, exist_ok=True)
    k.write_random(os.path.join(root, "file.bin"), 100)
    srv = k.KtsServer(d, root, cert, key, "--session-lifetime", "600", name="srv-sess")
    sess = os.path.join(d, "client.sess")
    try:
        r = subprocess.run([k.tool("kts-client"), "--ca", cert, "--session-file", sess, "--get",
                            "/file.bin", "localhost:%d" % srv.port], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=20)
        t.check("kts-client saved a session", r.returncode == 0 and os.path.getsize(sess) > 0,
                r.stderr.decode())
    finally:
        srv.stop()
    rc, out, err = ktsctl("session", sess)
    t.check("session: what it holds (version, server name, cipher, ticket lifetime)",
            re.search(r"^\S+client.sess: TLS 1.3 session for localhost, cipher TLS_\w+$", out,
                      re.M) and re.search(r"^ticket: \d+ bytes, lifetime 600 s ", out, re.M) and
            "verification tag: present" in out, out + err)
    t.check("session: resumes now -> exit 0", rc == 0 and "can resume now: yes" in out, out)
    dump = subprocess.run(["openssl", "sess_id", "-noout", "-text", "-in", sess],
                          stdout=subprocess.PIPE, text=True).stdout
    mk = re.search(r"(?:Master-Key|Resumption PSK): ([0-9A-F]+)", dump)
    t.check("session: no secret in the output (resumption PSK)",
            mk and mk.group(1)[:16].lower() not in out.lower() and mk.group(1)[:16] not in out,
            dump)
    rc, out, err = ktsctl("session", sess, "--now", int(time.time()) + 601)
    t.check("session: past the ticket lifetime -> exit 1, expired",
            rc == 1 and re.search(r"^can resume now: no \(expired \d+ s ago\)$", out, re.M), out)
    empty = os.path.join(d, "empty.sess")
    open(empty, "w").close()
    rc, out, err = ktsctl("session", empty)
    t.check("session: an empty file -> exit 1, no session",
            rc == 1 and "no session" in out and "can resume now: no" in out, out)
    rc, out, err = ktsctl("session", os.path.join(d, "none.sess"))
    t.check("session: a missing file -> exit 1, named", rc == 1 and "No such file" in err, err)
    rc, out, err = ktsctl("session")
    t.check("session without a file: exit 2", rc == 2 and "one FILE" in err, err)


t.run("session file", session_file)
t.done()
