/* kernelcheck.h - what this kernel offers kts (ktsctl check): the tls ULP,
 * which version x cipher x direction it takes (a loopback probe with dummy
 * keys, as the kernel's TLS selftests do), key replacement (TLS 1.3
 * KeyUpdate), TLS_RX_EXPECT_NO_PAD, the io_uring setup flags, opcodes and
 * multishot receives kts-server's uring engine uses, the /proc/net/tls_stat
 * counters (by name: kernels differ), and whether kmod-config is installed.
 * Every probe runs on its own throwaway sockets and ring. */
#ifndef KTS_TOOLS_KERNELCHECK_H
#define KTS_TOOLS_KERNELCHECK_H

#include <stddef.h>
#include <stdio.h>

#define KCHECK_COMBOS 12  /* TLS 1.2 / 1.3 x 3 ciphers x TX / RX */
#define KCHECK_OPS 9
#define KCHECK_STATS 64
#define KCHECK_KMOD 2

struct kcheck_combo {
	int version;    /* KTS_TLS1_2, KTS_TLS1_3 */
	int aead;       /* enum kts_aead */
	int tx;         /* 1: TLS_TX, 0: TLS_RX */
	int err;        /* 0: taken, else -errno */
};

struct kcheck {
	char release[65];
	int tls;           /* 1: the tls ULP is there (loaded, or loaded on demand), 0: not */
	int tls_err;       /* with tls 0: -errno of TCP_ULP (-ENOENT: no module) */
	int loaded;        /* /sys/module/tls exists (after the probe) */
	struct kcheck_combo combo[KCHECK_COMBOS];
	int rekey;         /* 1, 0 (or -errno: the probe could not run) */
	int rx_no_pad;     /* 1, 0 */
	int uring_err;     /* 0: io_uring works, else -errno of io_uring_queue_init */
	int single_issuer, defer_taskrun, buf_ring, multishot_accept, multishot_recv; /* 1 / 0 */
	struct {
		const char *name;
		int op;
		int ok;
	} ops[KCHECK_OPS];
	int have_stat;     /* /proc/net/tls_stat was there */
	size_t nstat;
	struct {
		char name[48];
		unsigned long long value;
	} stat[KCHECK_STATS];
	struct {
		const char *installed; /* /etc/... */
		char source[512];      /* the file in kmod-config */
		int state;             /* 1: installed and the same, 0: missing, -1: differs, -2: no source */
	} kmod[KCHECK_KMOD];
};

/* Run every probe. kmod_dir: the kmod-config directory to compare /etc with. */
void kcheck_run(struct kcheck *k, const char *kmod_dir);

/* What `--require` needs and is missing, as "a, b, c"; "" when nothing. */
void kcheck_missing(const struct kcheck *k, char *buf, size_t len);

/* The report, one fact per line. */
void kcheck_print(const struct kcheck *k, FILE *f);

/* The same as one JSON object (jansson); a malloc'd string, NULL without memory. */
char *kcheck_json(const struct kcheck *k);

#endif
