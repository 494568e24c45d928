#!/usr/bin/env python3
"""Offload status and policy on this host. Without kTLS in the kernel (no
/proc/net/tls_stat): --status says tx=user rx=user with a reason, and
--offload require fails cleanly naming why. With kTLS: the kernel takes both."""
import os

import ktshost as k

t = k.Suite("offload", deadline=100)
d = k.tmpdir()
cert, key = k.make_cert(d)
root = os.path.join(d, "root")
os.mkdir(root)
with open(os.path.join(root, "index.html"), "w") as f:
    f.write("offload test\n")
KTLS = k.host_has_ktls()
print("# host kTLS: %s" % ("yes" if KTLS else "no (/proc/net/tls_stat absent)"))
srv = k.KtsServer(d, root, cert, key, "--status")
srv_off = k.KtsServer(d, root, cert, key, "--status", "--offload", "off", name="srv-off")
srv_req = k.KtsServer(d, root, cert, key, "--status", "--offload", "require", name="srv-req")


def get(port, *args):
    r = k.kts_client(["--ca", cert, "--status"] + list(args) +
                     ["--get", "/", "localhost:%d" % port], timeout=30)
    return r, r.stderr.decode(errors="replace")


for tls in ("1.2", "1.3"):
    r, err = get(srv.port, "--tls", tls)
    st, reasons = k.parse_status(err), k.parse_reasons(err)
    if KTLS:
        t.check("auto TLS %s: tx=kernel rx=kernel" % tls,
                r.returncode == 0 and st and st["tx"] == "kernel" and st["rx"] == "kernel"
                and not reasons, err)
    else:
        t.check("auto TLS %s: tx=user rx=user" % tls,
                r.returncode == 0 and st and st["tx"] == "user" and st["rx"] == "user", err)
        t.check("auto TLS %s: reasons name the missing tls module" % tls,
                set(reasons) == {"tx", "rx"} and
                all("tls module" in v for v in reasons.values()), err)
    t.check("auto TLS %s: status is one line before the body" % tls,
            len([l for l in err.splitlines() if l.startswith("offload ")]) == 1, err)

# --offload off: userspace on both sides, with a reason.
r, err = get(srv_off.port, "--offload", "off")
st, reasons = k.parse_status(err), k.parse_reasons(err)
t.check("off: client tx=user rx=user with reasons",
        r.returncode == 0 and st and st["tx"] == "user" and st["rx"] == "user" and
        set(reasons) == {"tx", "rx"} and all(reasons.values()), err)
t.check("off: body", r.stdout == b"offload test\n", repr(r.stdout))
sl = srv_off.conn_lines()
t.check("off: server logs tx=user rx=user", sl and sl[-1]["tx"] == "user" and
        sl[-1]["rx"] == "user", srv_off.stderr())
t.check("off: server --status logs reasons",
        "offload-reason tx: " in srv_off.stderr() and "offload-reason rx: " in srv_off.stderr(),
        srv_off.stderr())

# --offload require on the client.
for tls in ("1.2", "1.3"):
    r, err = get(srv.port, "--tls", tls, "--offload", "require")
    if KTLS:
        st = k.parse_status(err)
        t.check("require TLS %s: kernel both ways" % tls, r.returncode == 0 and st and
                st["tx"] == "kernel" and st["rx"] == "kernel", err)
    else:
        t.check("require TLS %s: client fails cleanly naming the tls module" % tls,
                r.returncode == 1 and err.startswith("kts-client: ") and "tls module" in err
                and r.stdout == b"" and "offload tx=" not in err, err)

# --offload require on the server.
r, err = get(srv_req.port)
if KTLS:
    t.check("server require: works", r.returncode == 0 and r.stdout == b"offload test\n", err)
else:
    t.check("server require: client gets no body", r.returncode != 0 and r.stdout == b"",
            "rc %d\n%s" % (r.returncode, err))
    t.check("server require: server logs why", srv_req.logged(r" error: .*tls module"),
            srv_req.stderr())
    # The server goes on serving (and refusing) later connections.
    r2, err2 = get(srv_req.port)
    t.check("server require: still running", srv_req.p.poll() is None and r2.returncode != 0,
            err2)

# The client against openssl s_server with require.
ss = k.SServer(d, cert, key, "-WWW", cwd=root)
r, err = get(ss.port, "--offload", "require")
ss.stop()
if KTLS:
    t.check("require vs s_server: works", r.returncode == 0, err)
else:
    t.check("require vs s_server: fails naming the tls module",
            r.returncode == 1 and "tls module" in err, err)

# Option errors are reported with the option's name.
for args, frag in ((["--offload", "sometimes"], "--offload"), (["--tls", "1.1"], "--tls"),
                   (["--ciphers", "NOT-A-CIPHER"], "--ciphers"),
                   (["--ciphers", "TLS_NOT_A_SUITE"], "--ciphers"),
                   (["--ca", os.path.join(d, "missing.pem")], "--ca")):
    r = k.kts_client(args + ["--get", "/", "localhost:%d" % srv.port], timeout=30)
    err = r.stderr.decode(errors="replace")
    t.check("bad %s: exit 1, message names it" % " ".join(args),
            r.returncode == 1 and err.startswith("kts-client: " + frag), err)

t.done()
