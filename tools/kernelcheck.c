/* kernelcheck.c - what this kernel offers kts; see kernelcheck.h. */
#include "kernelcheck.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <kts.h>
#include <liburing.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "kernel.h"
#include "keysched.h"

static const char *const dir_name[2] = {"rx", "tx"};

static const char *version_name(int v)
{
	return v == KTS_TLS1_3 ? "TLS 1.3" : "TLS 1.2";
}

/* ---- kTLS ------------------------------------------------------------------- */

static void probe_tls(struct kcheck *k)
{
	static const int versions[2] = {KTS_TLS1_2, KTS_TLS1_3};
	static const enum kts_aead aeads[3] = {KTS_AEAD_AES_128_GCM, KTS_AEAD_AES_256_GCM,
					      KTS_AEAD_CHACHA20_POLY1305};
	struct stat st;
	int i = 0;

	for (int v = 0; v < 2; v++)
		for (int a = 0; a < 3; a++)
			for (int tx = 1; tx >= 0; tx--, i++) {
				k->combo[i].version = versions[v];
				k->combo[i].aead = aeads[a];
				k->combo[i].tx = tx;
				k->combo[i].err = kts_kernel_probe_install(versions[v], aeads[a],
									   tx ? TLS_TX : TLS_RX, 0);
			}
	k->tls = kts_kernel_has_tls() == 1;
	k->tls_err = k->tls ? 0 : k->combo[0].err ? k->combo[0].err : -ENOENT;
	k->loaded = stat("/sys/module/tls", &st) == 0;
	k->rekey = k->tls ? kts_kernel_probe_rekey() : 0;
	k->rx_no_pad = k->tls && kts_kernel_probe_install(KTS_TLS1_3, KTS_AEAD_AES_128_GCM, TLS_RX,
							  1) == 0;
}

static void read_tls_stat(struct kcheck *k)
{
	FILE *f = fopen("/proc/net/tls_stat", "re");
	char line[160];

	k->have_stat = f != NULL;
	while (f && fgets(line, sizeof(line), f) && k->nstat < KCHECK_STATS) {
		char name[48];
		unsigned long long v;

		if (sscanf(line, "%47s %llu", name, &v) == 2) {
			snprintf(k->stat[k->nstat].name, sizeof(k->stat[0].name), "%s", name);
			k->stat[k->nstat++].value = v;
		}
	}
	if (f)
		fclose(f);
}

/* ---- io_uring ------------------------------------------------------------------ */

/* Wait for one completion, at most a second. */
static int wait_one(struct io_uring *ring, int *res, unsigned *flags)
{
	struct __kernel_timespec ts = {.tv_sec = 1};
	struct io_uring_cqe *cqe;

	if (io_uring_submit(ring) < 0 || io_uring_wait_cqe_timeout(ring, &cqe, &ts) < 0)
		return -1;
	*res = cqe->res;
	*flags = cqe->flags;
	io_uring_cqe_seen(ring, cqe);
	return 0;
}

/* A buffer ring of one buffer (group 1), then a multishot recv from it: the
 * first completion of a working one says more will come. Each multishot
 * probe gets a ring of its own: what one leaves behind must not reach the
 * other. */
static void probe_recv_multishot(struct kcheck *k, struct io_uring *ring)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	struct io_uring_buf_ring *br = mmap(NULL, pg, PROT_READ | PROT_WRITE,
					    MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	struct io_uring_buf_reg reg = {.ring_entries = 1, .bgid = 1};
	static char buf[64];
	struct io_uring_sqe *sqe;
	unsigned flags = 0;
	int sv[2] = {-1, -1}, res = 0;

	if (br == MAP_FAILED)
		return;
	reg.ring_addr = (unsigned long)br;
	if (io_uring_register_buf_ring(ring, &reg, 0) == 0) {
		k->buf_ring = 1;
		io_uring_buf_ring_init(br);
		io_uring_buf_ring_add(br, buf, sizeof(buf), 0, io_uring_buf_ring_mask(1), 0);
		io_uring_buf_ring_advance(br, 1);
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0 &&
		    (sqe = io_uring_get_sqe(ring))) {
			io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
			sqe->flags |= IOSQE_BUFFER_SELECT;
			sqe->buf_group = 1;
			if (write(sv[1], "x", 1) == 1 && wait_one(ring, &res, &flags) == 0)
				k->multishot_recv = res == 1 && (flags & IORING_CQE_F_MORE);
		}
		io_uring_unregister_buf_ring(ring, 1);
	}
	for (int i = 0; i < 2; i++)
		if (sv[i] >= 0)
			close(sv[i]);
	munmap(br, pg);
}

static void probe_accept_multishot(struct kcheck *k, struct io_uring *ring)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c = -1, res = -1;
	struct io_uring_sqe *sqe;
	unsigned flags = 0;

	if (l >= 0 && bind(l, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(l, 4) == 0 &&
	    getsockname(l, (struct sockaddr *)&a, &alen) == 0 && (sqe = io_uring_get_sqe(ring))) {
		io_uring_prep_multishot_accept(sqe, l, NULL, NULL, SOCK_CLOEXEC);
		if (io_uring_submit(ring) == 1 &&
		    (c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0 &&
		    connect(c, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		    wait_one(ring, &res, &flags) == 0)
			k->multishot_accept = res >= 0 && (flags & IORING_CQE_F_MORE);
		if (res >= 0)
			close(res);
	}
	if (c >= 0)
		close(c);
	if (l >= 0)
		close(l);
}

static void probe_uring(struct kcheck *k)
{
	static const struct {
		const char *name;
		int op;
	} ops[KCHECK_OPS] = {
		{"ACCEPT", IORING_OP_ACCEPT},	    {"RECV", IORING_OP_RECV},
		{"RECVMSG", IORING_OP_RECVMSG},	    {"SEND", IORING_OP_SEND},
		{"SENDMSG", IORING_OP_SENDMSG},	    {"SPLICE", IORING_OP_SPLICE},
		{"READ", IORING_OP_READ},	    {"TIMEOUT", IORING_OP_TIMEOUT},
		{"ASYNC_CANCEL", IORING_OP_ASYNC_CANCEL},
	};
	struct io_uring_params p;
	struct io_uring_probe *probe;
	struct io_uring ring;
	int rc;

	for (int i = 0; i < KCHECK_OPS; i++) {
		k->ops[i].name = ops[i].name;
		k->ops[i].op = ops[i].op;
	}
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	if (io_uring_queue_init_params(8, &ring, &p) == 0) {
		k->single_issuer = k->defer_taskrun = 1;
		io_uring_queue_exit(&ring);
	} else {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_SINGLE_ISSUER;
		if (io_uring_queue_init_params(8, &ring, &p) == 0) {
			k->single_issuer = 1;
			io_uring_queue_exit(&ring);
		}
	}
	if ((rc = io_uring_queue_init(8, &ring, 0)) < 0) {
		k->uring_err = rc;
		return;
	}
	if ((probe = io_uring_get_probe_ring(&ring))) {
		for (int i = 0; i < KCHECK_OPS; i++)
			k->ops[i].ok = io_uring_opcode_supported(probe, k->ops[i].op);
		io_uring_free_probe(probe);
	}
	io_uring_queue_exit(&ring);
	if (io_uring_queue_init(8, &ring, 0) == 0) {
		probe_recv_multishot(k, &ring);
		io_uring_queue_exit(&ring);
	}
	if (io_uring_queue_init(8, &ring, 0) == 0) {
		probe_accept_multishot(k, &ring);
		io_uring_queue_exit(&ring);
	}
}

/* ---- kmod-config ------------------------------------------------------------------ */

/* A small file's bytes (at most 1 MiB), or NULL. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL, *grown;
	size_t cap = 0, n = 0, r;

	if (!f)
		return NULL;
	for (;;) {
		if (n == cap) {
			if (!(grown = realloc(buf, cap = cap ? 2 * cap : 4096))) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = grown;
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0 || n >= (1 << 20))
			break;
	}
	fclose(f);
	*len = n;
	return buf;
}

static void probe_kmod(struct kcheck *k, const char *dir)
{
	static const char *const rel[KCHECK_KMOD] = {"modprobe.d/kts.conf", "modules-load.d/kts.conf"};
	static const char *const etc[KCHECK_KMOD] = {"/etc/modprobe.d/kts.conf",
						     "/etc/modules-load.d/kts.conf"};

	for (int i = 0; i < KCHECK_KMOD; i++) {
		size_t la = 0, lb = 0;
		char *a, *b;

		k->kmod[i].installed = etc[i];
		snprintf(k->kmod[i].source, sizeof(k->kmod[i].source), "%s/%s", dir, rel[i]);
		a = slurp(k->kmod[i].source, &la);
		b = slurp(etc[i], &lb);
		k->kmod[i].state = !a ? -2 : !b ? 0 : la == lb && memcmp(a, b, la) == 0 ? 1 : -1;
		free(a);
		free(b);
	}
}

void kcheck_run(struct kcheck *k, const char *kmod_dir)
{
	struct utsname u;

	memset(k, 0, sizeof(*k));
	if (uname(&u) == 0)
		snprintf(k->release, sizeof(k->release), "%s", u.release);
	probe_tls(k);
	probe_uring(k);
	read_tls_stat(k); /* after the probes: the ULP may have loaded the module */
	probe_kmod(k, kmod_dir);
}

/* ---- reporting ------------------------------------------------------------------- */

/* Each thing kts needs and this kernel lacks, in order, to one callback: the
 * one list behind the text and the JSON. */
static void each_missing(const struct kcheck *k, void (*fn)(void *arg, const char *what),
			 void *arg)
{
	char what[96];

	if (!k->tls) {
		fn(arg, "the tls ULP (kernel TLS: modprobe tls; kmod-config/)");
	} else {
		for (int i = 0; i < KCHECK_COMBOS; i++) {
			if (!k->combo[i].err)
				continue;
			snprintf(what, sizeof(what), "%s %s %s", version_name(k->combo[i].version),
				 kts_aead_name(k->combo[i].aead), k->combo[i].tx ? "TX" : "RX");
			fn(arg, what);
		}
	}
	if (k->uring_err) {
		fn(arg, "io_uring");
		return;
	}
	for (int i = 0; i < KCHECK_OPS; i++)
		if (!k->ops[i].ok) {
			snprintf(what, sizeof(what), "io_uring %s", k->ops[i].name);
			fn(arg, what);
		}
}

struct text {
	char *buf;
	size_t len;
};

static void add_text(void *arg, const char *what)
{
	struct text *t = arg;
	size_t n = strlen(t->buf);

	snprintf(t->buf + n, t->len - n, "%s%s", n ? ", " : "", what);
}

void kcheck_missing(const struct kcheck *k, char *buf, size_t len)
{
	struct text t = {buf, len};

	buf[0] = '\0';
	each_missing(k, add_text, &t);
}

static void add_json(void *arg, const char *what)
{
	json_array_append_new(arg, json_string(what));
}

static const char *yes(int v)
{
	return v ? "yes" : "no";
}

void kcheck_print(const struct kcheck *k, FILE *f)
{
	char missing[1024];

	fprintf(f, "kernel %s\n", k->release);
	if (k->tls)
		fprintf(f, "tls ULP: yes%s\n", k->loaded ? " (module loaded)" : "");
	else
		fprintf(f, "tls ULP: no (%s)\n",
			k->tls_err == -ENOENT ? "no tls module" : strerror(-k->tls_err));
	for (int i = 0; k->tls && i < KCHECK_COMBOS; i++)
		fprintf(f, "  %s %-18s %s: %s\n", version_name(k->combo[i].version),
			kts_aead_name(k->combo[i].aead), k->combo[i].tx ? "TX" : "RX",
			k->combo[i].err ? strerror(-k->combo[i].err) : "yes");
	fprintf(f, "rekey (TLS 1.3 KeyUpdate, Linux 6.14+): %s\n", yes(k->rekey == 1));
	fprintf(f, "TLS_RX_EXPECT_NO_PAD: %s\n", yes(k->rx_no_pad));
	if (k->uring_err) {
		fprintf(f, "io_uring: no (%s)\n", strerror(-k->uring_err));
	} else {
		fprintf(f, "io_uring: yes; SINGLE_ISSUER %s, DEFER_TASKRUN %s, buffer rings %s, "
			   "multishot accept %s, multishot recv %s\n",
			yes(k->single_issuer), yes(k->defer_taskrun), yes(k->buf_ring),
			yes(k->multishot_accept), yes(k->multishot_recv));
		fprintf(f, "  opcodes:");
		for (int i = 0; i < KCHECK_OPS; i++)
			fprintf(f, " %s%s", k->ops[i].name, k->ops[i].ok ? "" : "(no)");
		fputc('\n', f);
	}
	if (!k->have_stat)
		fprintf(f, "tls_stat: none (/proc/net/tls_stat appears with the tls module)\n");
	for (size_t i = 0; i < k->nstat; i++)
		fprintf(f, "%s %s %llu\n", i ? "        " : "tls_stat:", k->stat[i].name, k->stat[i].value);
	for (int i = 0; i < KCHECK_KMOD; i++)
		if (k->kmod[i].state == 1 || k->kmod[i].state == -2)
			fprintf(f, "kmod-config: %s %s\n", k->kmod[i].installed,
				k->kmod[i].state == 1 ? "installed" : "(no kmod-config to compare with)");
		else
			fprintf(f, "kmod-config: %s %s: install -m 0644 %s %s\n", k->kmod[i].installed,
				k->kmod[i].state == 0 ? "missing" : "differs", k->kmod[i].source,
				k->kmod[i].installed);
	kcheck_missing(k, missing, sizeof(missing));
	fprintf(f, "missing for kts: %s\n", missing[0] ? missing : "nothing");
}

char *kcheck_json(const struct kcheck *k)
{
	json_t *o = json_object(), *combos = json_array(), *ops = json_object(),
	       *stat = json_object(), *kmod = json_array(), *miss = json_array();
	char *out = NULL;

	if (!o || !combos || !ops || !stat || !kmod || !miss)
		goto out;
	for (int i = 0; i < KCHECK_COMBOS; i++)
		json_array_append_new(
			combos, json_pack("{s:s, s:s, s:s, s:b, s:s?}", "version",
					  version_name(k->combo[i].version), "cipher",
					  kts_aead_name(k->combo[i].aead), "direction",
					  dir_name[k->combo[i].tx], "ok", !k->combo[i].err, "error",
					  k->combo[i].err ? strerror(-k->combo[i].err) : NULL));
	for (int i = 0; i < KCHECK_OPS; i++)
		json_object_set_new(ops, k->ops[i].name, json_boolean(k->ops[i].ok));
	for (size_t i = 0; i < k->nstat; i++)
		json_object_set_new(stat, k->stat[i].name, json_integer((json_int_t)k->stat[i].value));
	for (int i = 0; i < KCHECK_KMOD; i++)
		json_array_append_new(kmod, json_pack("{s:s, s:s, s:s}", "file", k->kmod[i].installed,
						      "source", k->kmod[i].source, "state",
						      k->kmod[i].state == 1    ? "installed"
						      : k->kmod[i].state == 0  ? "missing"
						      : k->kmod[i].state == -1 ? "differs"
									       : "no source"));
	each_missing(k, add_json, miss);
	json_object_set_new(o, "kernel", json_string(k->release));
	json_object_set_new(o, "tls_ulp", json_boolean(k->tls));
	json_object_set_new(o, "tls_module_loaded", json_boolean(k->loaded));
	json_object_set(o, "ciphers", combos);
	json_object_set_new(o, "rekey", json_boolean(k->rekey == 1));
	json_object_set_new(o, "rx_expect_no_pad", json_boolean(k->rx_no_pad));
	json_object_set_new(o, "io_uring",
			    json_pack("{s:b, s:b, s:b, s:b, s:b, s:b, s:O}", "ok", !k->uring_err,
				      "single_issuer", k->single_issuer, "defer_taskrun",
				      k->defer_taskrun, "buffer_rings", k->buf_ring,
				      "multishot_accept", k->multishot_accept, "multishot_recv",
				      k->multishot_recv, "opcodes", ops));
	json_object_set(o, "tls_stat", k->have_stat ? stat : json_null());
	json_object_set(o, "kmod_config", kmod);
	json_object_set(o, "missing", miss);
	out = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
out:
	json_decref(o);
	json_decref(combos);
	json_decref(ops);
	json_decref(stat);
	json_decref(kmod);
	json_decref(miss);
	return out;
}
