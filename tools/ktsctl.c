/* ktsctl - kts's control tool: ticket key-set files (keys init, rotate,
 * list, check), what the kernel offers (check), what a client session file
 * holds (session) and a running kts-server's control socket (status,
 * reload-keys, drain, stop). See ktsctl(8). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <kts.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "atomicfile.h"
#include "ctlclient.h"
#include "fleetcmd.h"
#include "kernelcheck.h"
#include "keyimport.h"
#include "keyrotate.h"
#include "keyset.h"
#include "sessioninfo.h"
#include "timefmt.h"

#define PROG "ktsctl"

static const char usage_text[] =
	"usage: ktsctl keys init FILE [--interval S] [--lifetime S] [--owner USER[:GROUP]]\n"
	"                             [--force | --if-missing]\n"
	"       ktsctl keys rotate FILE [--force] [--interval S] [--lifetime S]\n"
	"       ktsctl keys list FILE\n"
	"       ktsctl keys check FILE [--user USER]\n"
	"       ktsctl keys export FILE --format F --out PATH [--now T]\n"
	"       ktsctl keys import FILE --format F IN... [--interval S] [--lifetime S]\n"
	"                             [--owner USER[:GROUP]] [--force] [--now T]\n"
	"       ktsctl keys init|rotate --store URL --kek KEKFILE [--interval S] [--lifetime S]\n"
	"                             [--force]\n"
	"       ktsctl keys sync --store URL --kek KEKFILE --to FILE [--owner USER[:GROUP]]\n"
	"                        [--follow [--poll S]]\n"
	"       ktsctl kek init KEKFILE [--owner USER[:GROUP]] [--force]\n"
	"       ktsctl check [--json] [--require] [--kmod-config DIR]\n"
	"       ktsctl session FILE [--now T]\n"
	"       ktsctl status [--json] SOCKET\n"
	"       ktsctl reload-keys|drain|stop SOCKET\n"
	"Ticket key-set files for kts-server --ticket-keys, what this kernel offers kts,\n"
	"what a kts-client session file holds, and a kts-server's control socket\n"
	"(kts-server --control SOCKET); see ktsctl(8).\n"
	"  --interval S     seconds between rotations, at least 10 (default 3600; kept in\n"
	"                   the file)\n"
	"  --lifetime S     the servers' --session-lifetime, at least 60 (default 3600;\n"
	"                   kept in the file)\n"
	"  --owner U[:G]    init, import: the file's owner, the user the server runs as\n"
	"  --user USER      check: the user the server runs as (default: the file's owner\n"
	"                   when run as root, else you)\n"
	"  --force          init, import: replace an existing file; rotate: add a key\n"
	"                   even while one is staged\n"
	"  --format F       export, import: the other server's key files: nginx (80-byte\n"
	"                   files: name|HMAC|AES-256), nginx48 (48: name|AES-128|HMAC),\n"
	"                   haproxy (base64 lines of 80: name|AES-256|HMAC), haproxy48\n"
	"                   (48: name|AES-128|HMAC), envoy (as nginx)\n"
	"  --out PATH       export: haproxy* one file PATH; nginx*, envoy PATH.0 (seals)\n"
	"                   PATH.1 ... (open tickets only); reload the server after it\n"
	"  IN...            import: nginx*, envoy the key files in the server's order\n"
	"                   (the first seals); haproxy* one file (the penultimate of its\n"
	"                   last 3 lines seals). Servers must share the session ID\n"
	"                   context too (kts-server --session-id)\n"
	"  --if-missing     init: leave an existing file as it is (exit 0)\n"
	"  --now T          act as if the time were T (seconds since the Unix epoch)\n"
	"  --store URL      the fleet's Redis: redis://[[USER]:PASS@]HOST[:PORT]/NAME, or\n"
	"                   @FILE holding that URL (mode 0600)\n"
	"  --kek KEKFILE    the fleet's key-encryption key (ktsctl kek init), mode 0600\n"
	"  --to FILE        sync: the machine's key file (kts-server --ticket-keys)\n"
	"  --follow         sync: keep syncing (on each new generation, and every --poll)\n"
	"  --poll S         sync --follow: seconds between polls (default 60)\n"
	"  --json           check, status: one JSON object\n"
	"  --require        check: exit 1 naming what kts needs and this kernel lacks\n"
	"  --kmod-config D  check: compare /etc with the kmod-config files in D\n"
	"                   (default " KTS_KMOD_DIR ")\n";

struct keys_opts {
	const char *verb, *file, *owner, *user, *format, *out;
	const char *store, *kek, *to; /* the fleet's (fleetcmd.h) */
	int follow;
	long poll;
	char **in; /* import: the foreign key files */
	int nin;
	long interval, lifetime; /* -1: not given */
	int force, if_missing;
	int64_t now;
};

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", PROG);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static void usage(const char *why)
{
	if (why)
		fprintf(stderr, "%s: %s\n", PROG, why);
	fputs(usage_text, why ? stderr : stdout);
	exit(why ? 2 : 0);
}

static long parse_seconds(const char *s, const char *what, long min)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > KTS_SESSION_LIFETIME_MAX)
		die(2, "%s %s: want %ld..%d seconds", what, s, min, KTS_SESSION_LIFETIME_MAX);
	return v;
}

/* Serialise ktsctl runs on one directory (two timers must not both rotate). */
static int lock_dir(const char *file)
{
	char dir[4096];
	char *slash;
	int fd;

	snprintf(dir, sizeof(dir), "%s", file);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		die(1, "%s: %s", dir, strerror(errno));
	if (flock(fd, LOCK_EX) < 0)
		die(1, "%s: flock: %s", dir, strerror(errno));
	return fd;
}

static void load(const struct keys_opts *o, struct keyset *ks, struct stat *st)
{
	char err[512];

	/* Root manages a server's file whoever owns it; others only their own. */
	if (keyset_load(o->file, geteuid() == 0 ? (uid_t)-1 : geteuid(), ks, st, err, sizeof(err)) <
	    0)
		die(1, "%s", err);
}

static void save(const struct keys_opts *o, const struct keyset *ks, uid_t uid, gid_t gid)
{
	char err[512];

	if (keyset_save(o->file, ks, uid, gid, err, sizeof(err)) < 0)
		die(1, "%s", err);
}

static void owner_of(const char *spec, uid_t *uid, gid_t *gid)
{
	char user[256], *colon;
	struct passwd *pw;
	struct group *gr;

	snprintf(user, sizeof(user), "%s", spec);
	colon = strchr(user, ':');
	if (colon)
		*colon++ = '\0';
	if (!(pw = getpwnam(user)))
		die(2, "--owner %s: no such user", spec);
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (colon && *colon) {
		if (!(gr = getgrnam(colon)))
			die(2, "--owner %s: no such group", spec);
		*gid = gr->gr_gid;
	}
}

static void apply_policy(const struct keys_opts *o, struct keyset *ks)
{
	if (o->interval > 0)
		ks->interval = (unsigned int)o->interval;
	if (o->lifetime > 0)
		ks->lifetime = (unsigned int)o->lifetime;
}

static int keys_init(const struct keys_opts *o, struct keyset *ks)
{
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	char err[256], t[32];
	struct stat st;
	int lock;

	if (o->owner)
		owner_of(o->owner, &uid, &gid);
	lock = lock_dir(o->file);
	if (!o->force && lstat(o->file, &st) == 0) {
		if (o->if_missing) {
			printf("%s: exists, left as it is\n", o->file);
			close(lock);
			return 0;
		}
		die(1, "%s exists; --force replaces it (every ticket under its keys is then lost)",
		    o->file);
	}
	ks->interval = KEYSET_INTERVAL_DEFAULT;
	ks->lifetime = KEYSET_LIFETIME_DEFAULT;
	apply_policy(o, ks);
	if (keyrotate_init(ks, o->now, err, sizeof(err)) < 0)
		die(1, "%s", err);
	save(o, ks, uid, gid);
	printf("%s: new key set: keyrev %u seals until %s; rotate every %u s (ktsctl keys rotate)\n",
	       o->file, ks->keys[0].keyrev, timefmt_utc(ks->keys[0].encrypt_until, t), ks->interval);
	close(lock);
	return 0;
}

static int keys_rotate(const struct keys_opts *o, struct keyset *ks)
{
	char msg[512];
	struct stat st;
	int lock, rc;

	lock = lock_dir(o->file);
	load(o, ks, &st);
	apply_policy(o, ks);
	rc = keyrotate_rotate(ks, o->now, o->force, msg, sizeof(msg));
	if (rc < 0)
		die(1, "%s: %s", o->file, msg);
	if (rc > 0 || o->interval > 0 || o->lifetime > 0)
		save(o, ks, st.st_uid, st.st_gid); /* the same owner as before */
	printf("%s: %s\n", o->file, msg);
	close(lock);
	return 0;
}

static int keys_list(const struct keys_opts *o, struct keyset *ks)
{
	char a[32], b[32], c[32], fp[32];
	int seal;

	load(o, ks, NULL);
	seal = kts_ticket_keys_encrypting(ks->keys, ks->n, o->now);
	printf("%s: interval %u s, lifetime %u s, %zu key(s), now %s\n", o->file, ks->interval,
	       ks->lifetime, ks->n, timefmt_utc(o->now, a));
	printf("%-10s %-8s %-20s %-20s %-20s %s\n", "keyrev", "state", "encrypt_from",
	       "encrypt_until", "decrypt_until", "fingerprint");
	for (size_t i = 0; i < ks->n; i++) {
		const struct kts_ticket_key *k = &ks->keys[i];
		enum kts_ticket_key_state s = kts_ticket_key_state(k, o->now);

		keyset_fingerprint(k, fp);
		/* An active key that another supersedes acts as retired. */
		printf("%-10u %-8s %-20s %-20s %-20s %s%s\n", k->keyrev,
		       s == KTS_KEY_ACTIVE && (int)i != seal ? "retired" : kts_ticket_key_state_name(s),
		       timefmt_utc(k->encrypt_from, a), timefmt_utc(k->encrypt_until, b),
		       timefmt_utc(k->decrypt_until, c), fp,
		       (int)i == seal ? "  (seals)" : "");
	}
	return 0;
}

static int keys_check(const struct keys_opts *o, struct keyset *ks)
{
	char err[512];
	struct stat st;
	uid_t uid;
	int seal, staged = 0, rc = 0;

	load(o, ks, &st);
	uid = geteuid() == 0 ? st.st_uid : geteuid();
	if (o->user) {
		struct passwd *pw = getpwnam(o->user);

		if (!pw)
			die(2, "--user %s: no such user", o->user);
		uid = pw->pw_uid;
	}
	if (keyset_check_stat(&st, uid, err, sizeof(err)) < 0) {
		printf("%s: refused: %s\n", o->file, err);
		rc = 1;
	} else if (kts_ticket_keys_check(ks->keys, ks->n, o->now, err, sizeof(err)) != KTS_OK) {
		printf("%s: refused: %s\n", o->file, err);
		rc = 1;
	} else {
		seal = kts_ticket_keys_encrypting(ks->keys, ks->n, o->now);
		for (size_t i = 0; i < ks->n; i++)
			staged += kts_ticket_key_state(&ks->keys[i], o->now) == KTS_KEY_STAGED;
		printf("%s: ok: keyrev %u seals now; %d staged\n", o->file, ks->keys[seal].keyrev,
		       staged);
		if (!staged)
			printf("%s: warning: no key is staged; the next one must reach every server "
			       "before it seals (ktsctl keys rotate)\n",
			       o->file);
	}
	return rc;
}

static const struct keyfmt *format_of(const struct keys_opts *o)
{
	const struct keyfmt *f = o->format ? keyfmt_find(o->format) : NULL;

	if (!f)
		usage(o->format ? "keys: --format is one of nginx, nginx48, haproxy, haproxy48, envoy"
				: "keys: which --format?");
	return f;
}

/* Up to cap bytes of a foreign key file into buf; more is an error. */
static size_t read_in(const char *path, unsigned char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	size_t got = 0;

	if (fd < 0 || fstat(fd, &st) < 0)
		die(1, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		die(1, "%s: not a regular file", path);
	if ((uintmax_t)st.st_size > cap)
		die(1, "%s: %jd bytes, more than a key file of this format holds (%zu)", path,
		    (intmax_t)st.st_size, cap);
	for (;;) {
		ssize_t r = read(fd, buf + got, cap - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die(1, "%s: read: %s", path, strerror(errno));
		if (r == 0 || (got += (size_t)r) == cap)
			break;
	}
	close(fd);
	return got;
}

/* The foreign keys of o->in into keys[], and which one seals. */
static size_t read_foreign(const struct keys_opts *o, const struct keyfmt *f,
			   struct kts_ticket_key *keys, size_t *enc)
{
	char err[300];
	size_t n = 0;

	*enc = 0;
	if (f->haproxy) {
		char *text = malloc(KEYSET_MAX_SIZE);
		size_t len;
		int rc;

		if (o->nin != 1)
			usage("keys import: --format haproxy* reads one file");
		if (!text)
			die(1, "out of memory");
		len = read_in(o->in[0], (unsigned char *)text, KEYSET_MAX_SIZE);
		rc = keyfmt_haproxy_parse(f, text, len, keys, &n, enc, err, sizeof(err));
		OPENSSL_cleanse(text, len);
		free(text);
		if (rc < 0)
			die(1, "%s: %s", o->in[0], err);
		return n;
	}
	if (o->nin > KTS_TICKET_KEYSET_MAX)
		usage("keys import: at most 32 key files");
	for (; n < (size_t)o->nin; n++) {
		unsigned char raw[KEYFMT_RAW_MAX];
		size_t len = read_in(o->in[n], raw, sizeof(raw));
		int rc = keyfmt_decode(f, raw, len, &keys[n], err, sizeof(err));

		OPENSSL_cleanse(raw, sizeof(raw));
		if (rc < 0) {
			OPENSSL_cleanse(keys, n * sizeof(keys[0]));
			die(1, "%s: %s", o->in[n], err);
		}
	}
	return n;
}

static int keys_import(const struct keys_opts *o, struct keyset *ks)
{
	const struct keyfmt *f = format_of(o);
	struct kts_ticket_key in[KTS_TICKET_KEYSET_MAX];
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	char err[300], t[32], t2[32];
	struct stat st;
	size_t n, enc;
	int lock, rc;

	if (o->nin < 1)
		usage("keys import: which key file(s) IN?");
	if (o->owner)
		owner_of(o->owner, &uid, &gid);
	lock = lock_dir(o->file);
	if (!o->force && lstat(o->file, &st) == 0)
		die(1, "%s exists; --force replaces it (every ticket under its keys is then lost)",
		    o->file);
	n = read_foreign(o, f, in, &enc);
	ks->interval = KEYSET_INTERVAL_DEFAULT;
	ks->lifetime = KEYSET_LIFETIME_DEFAULT;
	apply_policy(o, ks);
	rc = keyimport_build(ks, in, n, enc, o->now, err, sizeof(err));
	OPENSSL_cleanse(in, sizeof(in));
	if (rc < 0)
		die(1, "%s: %s", o->in[0], err);
	save(o, ks, uid, gid);
	printf("%s: %zu key(s) imported (--format %s): keyrev %u seals until %s", o->file, n, f->name,
	       ks->keys[enc].keyrev, timefmt_utc(ks->keys[enc].encrypt_until, t));
	if (n > 1)
		printf(", the others open tickets until %s", timefmt_utc(o->now + ks->lifetime, t2));
	printf("; rotate every %u s (ktsctl keys rotate)\n", ks->interval);
	close(lock);
	return 0;
}

/* "PATH.i" for the nginx and Envoy formats. */
static void key_path(char *buf, size_t len, const char *out, size_t i)
{
	if (snprintf(buf, len, "%s.%zu", out, i) >= (int)len)
		die(1, "%s: path too long", out);
}

/* Write what an export wrote, each file atomically under the key set's owner. */
static void write_out(const char *path, const void *data, size_t len, const struct stat *st)
{
	char err[600];

	if (atomicfile_write(path, data, len, st->st_uid, st->st_gid, err, sizeof(err)) < 0)
		die(1, "%s", err);
}

static int keys_export(const struct keys_opts *o, struct keyset *ks)
{
	const struct keyfmt *f = format_of(o);
	unsigned char raw[KTS_TICKET_KEYSET_MAX][KEYFMT_RAW_MAX];
	size_t order[KTS_TICKET_KEYSET_MAX], lines[KEYFMT_HAPROXY_KEYS], n, left = 0;
	char err[300], path[4096];
	struct stat st;
	int lock, rc;

	if (!o->out)
		usage("keys export: --out PATH?");
	lock = lock_dir(o->file);
	load(o, ks, &st);
	if ((rc = keyexport_order(ks, o->now, order, err, sizeof(err))) < 0)
		die(1, "%s: %s", o->file, err);
	n = (size_t)rc;
	if (f->haproxy) {
		left = keyexport_haproxy_lines(ks, order, n, o->now, lines);
		memcpy(order, lines, sizeof(lines));
		n = KEYFMT_HAPROXY_KEYS;
	}
	/* Every key encoded before any file is written: all or nothing. */
	for (size_t i = 0; i < n; i++)
		if (keyfmt_encode(f, &ks->keys[order[i]], raw[i], err, sizeof(err)) < 0) {
			OPENSSL_cleanse(raw, sizeof(raw));
			die(1, "%s: %s", o->file, err);
		}
	if (f->haproxy) {
		unsigned char text[KEYFMT_HAPROXY_KEYS * (4 * ((KEYFMT_RAW_MAX + 2) / 3) + 1) + 1];
		size_t used = 0;

		for (size_t i = 0; i < n; i++) {
			used += (size_t)EVP_EncodeBlock(text + used, raw[i], (int)f->len);
			text[used++] = '\n';
		}
		write_out(o->out, text, used, &st);
		OPENSSL_cleanse(text, sizeof(text));
		printf("%s: keyrevs %u %u %u (HAProxy seals under the middle one)", o->out,
		       ks->keys[order[0]].keyrev, ks->keys[order[1]].keyrev, ks->keys[order[2]].keyrev);
		if (left)
			printf("; %zu more key(s) left out: HAProxy holds 3", left);
		putchar('\n');
	} else {
		for (size_t i = 0; i < n; i++) {
			key_path(path, sizeof(path), o->out, i);
			write_out(path, raw[i], f->len, &st);
			printf("%s: keyrev %u (%s)\n", path, ks->keys[order[i]].keyrev,
			       i == 0 ? "seals" : "opens tickets only");
		}
		/* Files of keys no longer exported go: no old key lingers. */
		for (size_t i = n; i < KTS_TICKET_KEYSET_MAX; i++) {
			key_path(path, sizeof(path), o->out, i);
			if (unlink(path) < 0 && errno != ENOENT)
				die(1, "%s: %s", path, strerror(errno));
		}
	}
	OPENSSL_cleanse(raw, sizeof(raw));
	close(lock);
	return 0;
}

/* The keys commands, and the options each takes. */
struct keys_cmd {
	const char *verb;
	int (*run)(const struct keys_opts *o, struct keyset *ks);
	int policy, owner, force, if_missing; /* --interval/--lifetime, --owner, ... */
	int format, out, in;                  /* --format, --out, IN files */
};

static const struct keys_cmd cmds[] = {
	{"init", keys_init, 1, 1, 1, 1, 0, 0, 0},
	{"rotate", keys_rotate, 1, 0, 1, 0, 0, 0, 0},
	{"list", keys_list, 0, 0, 0, 0, 0, 0, 0},
	{"check", keys_check, 0, 0, 0, 0, 0, 0, 0},
	{"import", keys_import, 1, 1, 1, 0, 1, 0, 1},
	{"export", keys_export, 0, 0, 0, 0, 1, 1, 0},
};

/* keys init|rotate|sync --store: the fleet's set (fleetcmd.h). */
static int fleet_main(const struct keys_opts *k, int nargs, int now_given)
{
	struct fleet_opts o = {.verb = k->verb, .store = k->store, .kek = k->kek, .to = k->to,
			       .interval = k->interval, .lifetime = k->lifetime, .force = k->force,
			       .follow = k->follow, .poll = k->poll,
			       .now = now_given ? k->now : -1, .uid = (uid_t)-1, .gid = (gid_t)-1};
	int sync = strcmp(k->verb, "sync") == 0;

	if (strcmp(k->verb, "init") != 0 && strcmp(k->verb, "rotate") != 0 && !sync)
		usage("keys: --store goes with init, rotate and sync");
	if (!k->store || !k->kek)
		usage("keys: the fleet's set needs --store URL and --kek FILE");
	if (nargs)
		usage("keys: with --store, no FILE (sync writes --to FILE)");
	if (sync != !!k->to || (!sync && (k->follow || k->owner)) || k->if_missing || k->user ||
	    k->format || k->out || (sync && (k->force || k->interval >= 0 || k->lifetime >= 0)) ||
	    (k->follow && now_given))
		usage("keys: option not valid for this command");
	if (k->owner)
		owner_of(k->owner, &o.uid, &o.gid);
	return fleetcmd_keys(&o);
}

static int keys_main(int argc, char **argv)
{
	enum { OPT_INTERVAL = 1, OPT_LIFETIME, OPT_OWNER, OPT_USER, OPT_FORCE, OPT_IF_MISSING, OPT_NOW,
	       OPT_FORMAT, OPT_OUT, OPT_STORE, OPT_KEK, OPT_TO, OPT_FOLLOW, OPT_POLL, OPT_HELP };
	static const struct option longopts[] = {
		{"interval", required_argument, NULL, OPT_INTERVAL},
		{"lifetime", required_argument, NULL, OPT_LIFETIME},
		{"owner", required_argument, NULL, OPT_OWNER},
		{"user", required_argument, NULL, OPT_USER},
		{"force", no_argument, NULL, OPT_FORCE},
		{"if-missing", no_argument, NULL, OPT_IF_MISSING},
		{"now", required_argument, NULL, OPT_NOW},
		{"format", required_argument, NULL, OPT_FORMAT},
		{"out", required_argument, NULL, OPT_OUT},
		{"store", required_argument, NULL, OPT_STORE},
		{"kek", required_argument, NULL, OPT_KEK},
		{"to", required_argument, NULL, OPT_TO},
		{"follow", no_argument, NULL, OPT_FOLLOW},
		{"poll", required_argument, NULL, OPT_POLL},
		{"help", no_argument, NULL, OPT_HELP},
		{NULL, 0, NULL, 0},
	};
	struct keys_opts o = {.interval = -1, .lifetime = -1, .now = (int64_t)time(NULL),
			      .poll = FLEET_POLL_DEFAULT};
	int now_given = 0;
	char *end;
	int opt;

	if (argc < 2)
		usage("keys: which? init, rotate, list, check, import or export");
	o.verb = argv[1];
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_INTERVAL:
			o.interval = parse_seconds(optarg, "--interval", KEYSET_INTERVAL_MIN);
			break;
		case OPT_LIFETIME:
			o.lifetime = parse_seconds(optarg, "--lifetime", KEYSET_LIFETIME_MIN);
			break;
		case OPT_OWNER: o.owner = optarg; break;
		case OPT_USER: o.user = optarg; break;
		case OPT_FORCE: o.force = 1; break;
		case OPT_IF_MISSING: o.if_missing = 1; break;
		case OPT_FORMAT: o.format = optarg; break;
		case OPT_OUT: o.out = optarg; break;
		case OPT_STORE: o.store = optarg; break;
		case OPT_KEK: o.kek = optarg; break;
		case OPT_TO: o.to = optarg; break;
		case OPT_FOLLOW: o.follow = 1; break;
		case OPT_POLL: o.poll = parse_seconds(optarg, "--poll", 1); break;
		case OPT_NOW:
			now_given = 1;
			errno = 0;
			o.now = (int64_t)strtoll(optarg, &end, 10);
			if (errno || end == optarg || *end || o.now < 0)
				die(2, "--now %s: want seconds since the Unix epoch", optarg);
			break;
		case OPT_HELP: usage(NULL); break;
		default: usage("bad option");
		}
	}
	if (o.store || o.kek || o.to || o.follow || strcmp(o.verb, "sync") == 0)
		return fleet_main(&o, argc - optind, now_given);
	if (optind == argc)
		usage("keys: which FILE?");
	o.file = argv[optind];
	o.in = argv + optind + 1;
	o.nin = argc - optind - 1;
	if (o.force && o.if_missing)
		usage("keys: --force or --if-missing, not both");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const struct keys_cmd *c = &cmds[i];
		struct keyset *ks;
		int rc;

		if (strcmp(o.verb, c->verb) != 0)
			continue;
		if ((!c->policy && (o.interval >= 0 || o.lifetime >= 0)) || (!c->owner && o.owner) ||
		    (!c->force && o.force) || (!c->if_missing && o.if_missing) ||
		    (!c->format && o.format) || (!c->out && o.out))
			usage("keys: option not valid for this command");
		if (!c->in && o.nin)
			usage("keys: one FILE only");
		if (!(ks = calloc(1, sizeof(*ks))))
			die(1, "out of memory");
		rc = c->run(&o, ks);
		keyset_wipe(ks);
		free(ks);
		return rc;
	}
	usage("keys: unknown command (init, rotate, list, check, import, export)");
	return 2;
}

static int check_main(int argc, char **argv)
{
	enum { OPT_JSON = 1, OPT_REQUIRE, OPT_KMOD, OPT_HELP };
	static const struct option longopts[] = {
		{"json", no_argument, NULL, OPT_JSON},
		{"require", no_argument, NULL, OPT_REQUIRE},
		{"kmod-config", required_argument, NULL, OPT_KMOD},
		{"help", no_argument, NULL, OPT_HELP},
		{NULL, 0, NULL, 0},
	};
	const char *kmod = KTS_KMOD_DIR;
	int json = 0, require = 0, opt;
	struct kcheck *k = calloc(1, sizeof(*k));
	char missing[1024], *text;

	if (!k)
		die(1, "out of memory");
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_JSON: json = 1; break;
		case OPT_REQUIRE: require = 1; break;
		case OPT_KMOD: kmod = optarg; break;
		case OPT_HELP: usage(NULL); break;
		default: usage("bad option");
		}
	}
	if (optind != argc)
		usage("check takes no arguments");
	kcheck_run(k, kmod);
	if (json) {
		if (!(text = kcheck_json(k)))
			die(1, "out of memory");
		puts(text);
		free(text);
	} else {
		kcheck_print(k, stdout);
	}
	kcheck_missing(k, missing, sizeof(missing));
	free(k);
	if (require && missing[0]) {
		fprintf(stderr, "%s: this kernel lacks what kts needs: %s\n", PROG, missing);
		return 1;
	}
	return 0;
}

/* Exit 0 when the session can resume now, 1 when not or unreadable. */
static int session_main(int argc, char **argv)
{
	int64_t now = (int64_t)time(NULL);
	char err[512], *end;
	int rc;

	if (argc == 4 && strcmp(argv[2], "--now") == 0) {
		errno = 0;
		now = (int64_t)strtoll(argv[3], &end, 10);
		if (errno || end == argv[3] || *end || now < 0)
			die(2, "--now %s: want seconds since the Unix epoch", argv[3]);
	} else if (argc != 2 || argv[1][0] == '-') {
		usage("session: one FILE (and --now T)");
	}
	rc = sessioninfo_print(argv[1], now, stdout, err, sizeof(err));
	if (rc < 0)
		die(1, "%s", err);
	return rc;
}

/* ktsctl kek init KEKFILE [--owner U[:G]] [--force] */
static int kek_main(int argc, char **argv)
{
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	const char *path = NULL;
	int force = 0;

	if (argc < 2 || strcmp(argv[1], "init") != 0)
		usage("kek: the only command is init");
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0)
			force = 1;
		else if (strcmp(argv[i], "--owner") == 0 && i + 1 < argc)
			owner_of(argv[++i], &uid, &gid);
		else if (argv[i][0] != '-' && !path)
			path = argv[i];
		else
			usage("kek init KEKFILE [--owner USER[:GROUP]] [--force]");
	}
	if (!path)
		usage("kek init: which KEKFILE?");
	return fleetcmd_kek_init(path, uid, gid, force);
}

/* A command for a running server: 0 when it answered ok, else 1. */
static int control_main(int argc, char **argv, enum control_cmd cmd)
{
	int json = 0, rc;
	const char *msg;
	json_t *ans;
	char err[512];

	if (argc == 3 && cmd == CTL_STATUS && strcmp(argv[1], "--json") == 0) {
		json = 1;
		argv++;
	} else if (argc != 2 || argv[1][0] == '-') {
		usage(cmd == CTL_STATUS ? "status: [--json] SOCKET" : "one SOCKET");
	}
	if (ctlclient_request(argv[1], cmd, &ans, err, sizeof(err)) < 0)
		die(1, "%s", err);
	rc = json_is_true(json_object_get(ans, "ok")) ? 0 : 1;
	if (json) {
		char *text = json_dumps(ans, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		if (!text)
			die(1, "out of memory");
		puts(text);
		free(text);
	} else if (rc) {
		msg = json_string_value(json_object_get(ans, "error"));
		fprintf(stderr, "%s: %s: %s\n", PROG, argv[1], msg ? msg : "refused");
	} else if (cmd == CTL_STATUS) {
		ctlclient_print_status(ans, stdout);
	} else if (cmd == CTL_RELOAD_KEYS) {
		msg = json_string_value(json_object_get(ans, "message"));
		printf("%s\n", msg ? msg : "reloaded");
	} else {
		printf("%s: %s\n", argv[1], cmd == CTL_DRAIN ? "draining" : "stopping");
	}
	json_decref(ans);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		enum control_cmd cmd;
	} control_cmds[] = {
		{"status", CTL_STATUS},
		{"reload-keys", CTL_RELOAD_KEYS},
		{"drain", CTL_DRAIN},
		{"stop", CTL_STOP},
	};

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		usage(argc < 2 ? "which command? keys, check, session, status, reload-keys, drain "
				 "or stop"
			       : NULL);
	if (strcmp(argv[1], "keys") == 0)
		return keys_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "check") == 0)
		return check_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "session") == 0)
		return session_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "kek") == 0)
		return kek_main(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(control_cmds) / sizeof(control_cmds[0]); i++)
		if (strcmp(argv[1], control_cmds[i].name) == 0)
			return control_main(argc - 1, argv + 1, control_cmds[i].cmd);
	usage("unknown command (keys, check, session, status, reload-keys, drain, stop)");
	return 2;
}
