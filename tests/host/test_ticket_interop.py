#!/usr/bin/env python3
"""ktsctl keys export / import against real nginx and HAProxy: kts-server and
the other server, holding one key set, resume each other's tickets over TLS
1.2 and 1.3 (openssl s_client -sess_out / -sess_in), AES-256 (80-byte) and
AES-128 (48-byte) keys alike, also under a key the other server only
decrypts; a kts-server with the same keys but another session ID context
does not (the control). The other server's session ID context is read from
one of its tickets, opened with the exported key (its HMAC checking proves
the field order). Bad inputs fail with a clear message and write nothing."""
import base64
import os
import re
import stat
import time

import ktshost as k

t = k.Suite("ticket-interop", deadline=100)
missing = [n for n, p in (("nginx", k.NGINX), ("haproxy", k.HAPROXY)) if not p]
if missing:
    t.fail("nginx and haproxy installed", "%s not found: run tools/setup-debian.sh test "
           "(CI installs every server the tests start)" % " and ".join(missing))
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
k.write_random(os.path.join(root, "file.bin"), 1000)
LIFE = ("--session-lifetime", "3600")
ctl = k.ktsctl


def path(name):
    return os.path.join(d, name)


def ok(r, what):
    if r[0] != 0:
        raise RuntimeError("%s: exit %d: %s%s" % (what, r[0], r[1], r[2]))
    return r


def new_session(port, tls, name="s.pem"):
    """A fresh session (with its ticket) from the server at port."""
    sess = path(name)
    if os.path.exists(sess):
        os.unlink(sess)
    rc, how, resp, why = k.s_client(port, tls, "-sess_out", sess)
    if rc != 0 or how != "New" or not resp.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("first connection: " + why)
    return sess


def reused(port, tls, sess):
    """(resumed?, why) for the session offered to the server at port."""
    rc, how, resp, why = k.s_client(port, tls, "-sess_in", sess)
    line = re.search(r"^(New|Reused), .*$", k.s_client.last_stdout, re.M)
    want = "Reused, TLSv1.3" if tls == "-tls1_3" else "Reused, TLSv1.2"
    return (rc == 0 and how == "Reused" and line and line.group(0).startswith(want) and
            resp.startswith(b"HTTP/1.1 200")), why


def context_of(port, aes_of, label):
    """The session ID context of the server at port, from a TLS 1.2 ticket
    opened with the key whose name starts it (aes_of: name -> (aes, hmac))."""
    ticket = k.session_ticket(new_session(port, "-tls1_2"))
    keys = aes_of(ticket[:16])
    t.check("%s: its ticket names a key we exported" % label, keys is not None,
            "ticket name %s" % ticket[:16].hex())
    mac_ok, ctx = k.open_ticket(ticket, *keys) if keys else (False, None)
    t.check("%s: its ticket opens with the exported key (HMAC and field order right)" % label,
            mac_ok and ctx, "hmac %s, context %r" % (mac_ok, ctx))
    return ctx


def both_ways(label, other_port, keyfile, ctx):
    """kts-server with keyfile and ctx and the other server resume each other's
    tickets over TLS 1.2 and 1.3; with another context kts-server does not."""
    srv = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", keyfile, "--session-id",
                      "hex:" + ctx.hex(), name="kts-" + label)
    control = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", keyfile,
                          "--session-id", "hex:" + (ctx[:-1] + bytes([ctx[-1] ^ 1])).hex(),
                          name="control-" + label)
    try:
        for tls in ("-tls1_2", "-tls1_3"):
            v = tls[4:].replace("_", ".")
            sess = new_session(other_port, tls)
            res, why = reused(srv.port, tls, sess)
            t.check("%s TLS %s: kts-server resumes the other server's ticket" % (label, v),
                    res, why + srv.stderr()[-800:])
            res, why = reused(control.port, tls, sess)
            t.check("%s TLS %s: control: not with another session ID context" % (label, v),
                    not res, why)
            sess = new_session(srv.port, tls)
            res, why = reused(other_port, tls, sess)
            t.check("%s TLS %s: the other server resumes kts-server's ticket" % (label, v),
                    res, why)
    finally:
        srv.stop()
        control.stop()


def sealing_only(label, keyrev, key_bytes, name_hex, other_port, ctx):
    """A kts-server whose only key is one the other server holds to decrypt
    only: its tickets resume there."""
    kf = path("only-%s.keys" % label)
    now = int(time.time())
    with open(kf + ".new", "w") as f:
        f.write("kts-ticket-keys 1\n%d %d %d %d %s%s\n" % (
            keyrev, now - 60, now + 3600, now + 7200, base64.b64encode(key_bytes).decode(),
            " name=" + name_hex if name_hex else ""))
    os.chmod(kf + ".new", 0o600)
    os.rename(kf + ".new", kf)
    srv = k.KtsServer(d, root, cert, key, *LIFE, "--ticket-keys", kf, "--session-id",
                      "hex:" + ctx.hex(), name="kts-only-" + label)
    try:
        for tls in ("-tls1_2", "-tls1_3"):
            sess = new_session(srv.port, tls)
            tk = k.session_ticket(sess)
            res, why = reused(other_port, tls, sess)
            named = tk[:16].hex() == name_hex if name_hex else \
                int.from_bytes(tk[:4], "big") == keyrev
            t.check("%s TLS %s: a key the other server only decrypts opens kts's ticket" % (
                label, tls[4:].replace("_", ".")), res and named,
                why + " ticket name %s" % tk[:16].hex())
    finally:
        srv.stop()


def interop(label, other, keys, kf, only=None):
    """Against the running server other: its context from its ticket, then
    both_ways and, with only = (keyrev, bytes, name hex), sealing_only. The
    server is stopped after. Returns the context (None: not learnt)."""
    try:
        ctx = context_of(other.port, keys.get, label)
        if ctx:
            both_ways(label, other.port, kf, ctx)
            if only:
                sealing_only(label, *only, other.port, ctx)
        return ctx
    finally:
        other.stop()


def key_line(kf, keyrev):
    """(key bytes, name hex or "") of keyrev in a key-set file."""
    for line in open(kf):
        w = line.split()
        if len(w) >= 5 and w[0] == str(keyrev):
            return base64.b64decode(w[4]), w[5][5:] if len(w) == 6 else ""
    raise RuntimeError("keyrev %d not in %s" % (keyrev, kf))


def key_named(kf, name_hex):
    """(keyrev, key bytes, name hex) of the key named name_hex in a key-set file."""
    for line in open(kf):
        w = line.split()
        if len(w) == 6 and w[5] == "name=" + name_hex:
            return int(w[0]), base64.b64decode(w[4]), name_hex
    raise RuntimeError("no key named %s in %s" % (name_hex, kf))


def nginx_keys(files):
    """nginx's key files -> {name: (aes, hmac)} (80: name|hmac|aes; 48:
    name|aes|hmac)."""
    out = {}
    for p in files:
        raw = open(p, "rb").read()
        if len(raw) == 80:
            out[raw[:16]] = (raw[48:], raw[16:48])
        else:
            out[raw[:16]] = (raw[16:32], raw[32:48])
    return out


def haproxy_keys(p):
    """A HAProxy file -> {name: (aes, hmac)}: name|aes|hmac either size."""
    out = {}
    for line in open(p):
        raw = base64.b64decode(line)
        h = (len(raw) - 16) // 2
        out[raw[:16]] = (raw[16:16 + h], raw[16 + h:])
    return out


def nginx_80():
    """init + rotate (a staged key) -> export nginx: PATH.0 seals, PATH.1 (the
    staged key) decrypts only."""
    kf, out = path("n80.keys"), path("n80")
    ok(ctl("keys", "init", kf), "init")
    ok(ctl("keys", "rotate", kf), "rotate")
    with open(out + ".5", "wb") as f:
        f.write(b"stale key file")
    r = ok(ctl("keys", "export", kf, "--format", "nginx", "--out", out), "export")
    files = [out + ".0", out + ".1"]
    t.check("export nginx: PATH.0 seals, PATH.1 the staged key, 80 bytes, 0600",
            all(os.path.getsize(p) == 80 and stat.S_IMODE(os.stat(p).st_mode) == 0o600
                for p in files) and "n80.0: keyrev 1 (seals)" in r[1] and
            "n80.1: keyrev 2 (opens tickets only)" in r[1], r[1] + r[2])
    raws = [open(p, "rb").read() for p in files]
    shown = r[1] + r[2] + ctl("keys", "list", kf)[1]
    t.check("export nginx: stale PATH.K removed; no key bytes printed (export, list)",
            not os.path.exists(out + ".5") and not any(
                x[16:].hex() in shown or base64.b64encode(x[16:48]).decode()[:20] in shown
                for x in raws), r[1])
    ng = k.Nginx(d, cert, key, root, "nginx80", " ".join(
        "ssl_session_ticket_key %s;" % p for p in files))
    interop("nginx-80", ng, nginx_keys(files), kf, (2,) + key_line(kf, 2))


def nginx_48_import():
    """nginx's own 48-byte key files -> import -> kts-server resumes nginx's
    tickets and nginx kts-server's; export nginx48 gives the same files back."""
    ins = [path("ng48-%d.key" % i) for i in range(2)]
    for p in ins:
        with open(p, "wb") as f:
            f.write(os.urandom(48))
    kf = path("n48.keys")
    r = ok(ctl("keys", "import", kf, "--format", "nginx48", *ins), "import")
    t.check("import nginx48: 2 keys, the first seals", "2 key(s) imported" in r[1], r[1])
    out = path("n48")
    ok(ctl("keys", "export", kf, "--format", "nginx48", "--out", out), "export")
    t.check("export nginx48 after import: the same files, in the same order",
            [open(out + ".%d" % i, "rb").read() for i in range(2)] ==
            [open(p, "rb").read() for p in ins])
    ng = k.Nginx(d, cert, key, root, "nginx48", " ".join(
        "ssl_session_ticket_key %s;" % p for p in ins))
    # nginx's second file (retired in the set) seals at kts: nginx opens it.
    interop("nginx-48", ng, nginx_keys(ins), kf,
            key_named(kf, open(ins[1], "rb").read()[:16].hex()))


def haproxy_80():
    """init + rotate -> export haproxy (3 lines, the sealing key penultimate)."""
    kf, out = path("h80.keys"), path("h80.tls")
    ok(ctl("keys", "init", kf), "init")
    ok(ctl("keys", "rotate", kf), "rotate")
    r = ok(ctl("keys", "export", kf, "--format", "haproxy", "--out", out), "export")
    lines = open(out).read().split("\n")
    t.check("export haproxy: 3 base64 lines of 80 bytes, 0600, keyrev 1 penultimate",
            len(lines) == 4 and lines[3] == "" and
            all(len(base64.b64decode(x)) == 80 for x in lines[:3]) and
            base64.b64decode(lines[1])[:4] == b"\0\0\0\1" and
            base64.b64decode(lines[2])[:4] == b"\0\0\0\2" and
            stat.S_IMODE(os.stat(out).st_mode) == 0o600, r[1] + r[2])
    hp = k.HAProxy(d, cert, key, "haproxy80", "tls-ticket-keys " + out)
    interop("haproxy-80", hp, haproxy_keys(out), kf, (2,) + key_line(kf, 2))


def haproxy_48_import():
    """A HAProxy file of 4 AES-128 lines -> import (HAProxy's last 3, the
    penultimate sealing) -> both resume each other's tickets."""
    src = path("h48-src.tls")
    raws = [os.urandom(48) for _ in range(4)]
    with open(src, "w") as f:
        f.write("".join(base64.b64encode(x).decode() + "\n" for x in raws))
    kf = path("h48.keys")
    r = ok(ctl("keys", "import", kf, "--format", "haproxy48", src), "import")
    names = re.findall(r" name=([0-9a-f]{32})$", open(kf).read(), re.M)
    t.check("import haproxy48: HAProxy's 3 keys (the last lines), the penultimate seals",
            "3 key(s) imported" in r[1] and
            sorted(names) == sorted(x[:16].hex() for x in raws[1:]), r[1] + str(names))
    out = path("h48.tls")
    ok(ctl("keys", "export", kf, "--format", "haproxy48", "--out", out), "export")
    back = [base64.b64decode(x) for x in open(out).read().split()]
    t.check("export haproxy48 after import: HAProxy seals under the same key",
            back[1] == raws[2] and all(len(x) == 48 for x in back))
    hp = k.HAProxy(d, cert, key, "haproxy48", "tls-ticket-keys " + src)
    ctx = interop("haproxy-48", hp, haproxy_keys(src), kf)
    t.check("haproxy's session ID context is 'haproxy' (as ktsctl(8) says)", ctx == b"haproxy",
            repr(ctx))


def unchanged(p, before):
    """True if p has the content and mode it had (None: still absent)."""
    if before is None:
        return not os.path.exists(p)
    return open(p, "rb").read() == before[0] and os.stat(p).st_mode == before[1]


def snapshot(p):
    return (open(p, "rb").read(), os.stat(p).st_mode) if os.path.exists(p) else None


def bad_inputs():
    def refused(name, args, want, watch):
        before = [snapshot(p) for p in watch]
        rc, out, err = ctl(*args)
        t.check("%s: exit 1 saying %r, nothing written" % (name, want),
                rc == 1 and want in err and
                all(unchanged(p, b) for p, b in zip(watch, before)) and
                not [n for n in os.listdir(d) if re.search(r"\.[A-Za-z0-9]{6}$", n)],
                "rc %d: %s%s" % (rc, out, err))

    short = path("short.key")
    with open(short, "wb") as f:
        f.write(os.urandom(47))
    kf = path("bad.keys")
    refused("import a 47-byte nginx48 file", ("keys", "import", kf, "--format", "nginx48",
                                               short), "47 bytes, --format nginx48 takes 48",
            [kf])
    with open(short, "wb") as f:
        f.write(os.urandom(48))
    refused("import a 48-byte file as --format nginx",
            ("keys", "import", kf, "--format", "nginx", short),
            "48 bytes, --format nginx takes 80: this size is --format nginx48", [kf])
    hb = path("bad.tls")
    with open(hb, "w") as f:
        f.write(base64.b64encode(os.urandom(80)).decode() + "\n!!not base64!!\n")
    refused("import a HAProxy file with a bad line", ("keys", "import", kf, "--format",
                                                      "haproxy", hb), "line 2: not a base64 key",
            [kf])
    k48 = path("h48.keys")
    out = path("x80")
    with open(out + ".0", "wb") as f:
        f.write(b"an older export")
    os.chmod(out + ".0", 0o600)
    refused("export AES-128 keys as --format nginx", ("keys", "export", k48, "--format", "nginx",
                                                      "--out", out),
            "is an AES-128 key; --format nginx takes AES-256 keys", [out + ".0", out + ".1"])
    refused("import over an existing key set without --force",
            ("keys", "import", k48, "--format", "nginx48", path("ng48-0.key")),
            "exists; --force replaces it", [k48])
    rc, o, e = ctl("keys", "import", k48, "--format", "nginx48", "--force", path("ng48-0.key"))
    t.check("import --force replaces it", rc == 0 and "1 key(s) imported" in o, o + e)
    rc, o, e = ctl("keys", "export", k48, "--format", "nope", "--out", out)
    t.check("an unknown --format is a usage error (exit 2)", rc == 2 and "--format is one of" in e,
            e)


if not missing:
    t.run("nginx, 80-byte keys", nginx_80)
    t.run("nginx, 48-byte keys imported", nginx_48_import)
    t.run("haproxy, 80-byte keys", haproxy_80)
    t.run("haproxy, 48-byte keys imported", haproxy_48_import)
    t.run("bad inputs", bad_inputs)
t.done()
