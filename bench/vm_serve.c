/*
 * vm_serve.c - the kernel-TLS group of bench/run-all.sh, run as the guest
 * binary of bench/vm-serve.sh (one vCPU, instruction-count clock). Not a test:
 * it prints numbers (bench/README.md).
 *
 * In one boot: server CPU per GB while serving one big file over TLS 1.2 and
 * 1.3 (AES-128-GCM) from kts-server (each engine it has), nginx with OpenSSL's
 * kTLS and nginx in userspace (if /nginx/nginx is in the initramfs), and a
 * plain-TCP sendfile server (the floor), and the uring engine of a second
 * build as base-uring when /bin/kts-server-base is there; the cipher's own cost per GB
 * (OpenSSL EVP AES-128-GCM over 16 KiB records, sealing and opening); and
 * the CPU of a kts client receiving the file: kernel RX (256 KiB reads, 16
 * KiB reads, and TLS 1.3 with TLS_RX_EXPECT_NO_PAD) vs offload off, and a
 * plain-TCP receive of the same file (the receive floor). Rounds are interleaved:
 * every variant once per round; the lines give medians.
 *
 * Environment (kernel command line words): VM_BENCH_SIZE (default 256M),
 * VM_BENCH_ROUNDS (default 3), VM_BENCH_CONNS (idle connections per server in
 * the memory phase, default 1000; 0 skips it), VM_BENCH_ONLY (the servers to
 * measure, as kts-uring,nginx-ktls; default all), VM_BENCH_PERF (profiles,
 * bench/vm_prof.c). Output lines (CPU s/GB:
 * instruction counts here, GB = 10^9 bytes):
 *   serve server=kts-threads tls=1.3 path=ktls size=256MiB rounds=3 cpu_s_per_gb=...
 *   cipher tls=1.2 cipher=aes128gcm cpu_s_per_gb=...   (decipher: the same, opening)
 *   rx tls=1.3 offload=auto no_pad=off|on|refused buf=256KiB path=kernel size=... cpu_s_per_gb=...
 *   rx tls=none offload=tcp no_pad=off buf=256KiB path=tcp size=... cpu_s_per_gb=...
 *   mem server=kts-uring tls=1.3 conns=1000 server_ktls_tx=1000 server_ktls_rx=1000
 *       pss_kib_per_conn=...
 *   not-measured NAME: why
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <linux/tls.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "kts.h"
#include "testutil.h"
#include "vm_prof.h"

#define MAXV 8
#define MAXR 16
#define NGINX "/nginx/nginx"
#define BASE_SERVER "kts-server-base"
#define SMALL 1024 /* bytes of /small, the idle connections' one request */
#define WARM 16    /* connections opened before the memory baseline */

static size_t size = 256u << 20;
static int rounds = 3;
static int conns = 1000; /* idle connections per server in the memory phase */
static char root[] = "/tmp/vmserve";

static double thread_cpu(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* CPU seconds of one process (all threads): schedstat (ns). */
static double proc_cpu(pid_t pid)
{
	double t = 0;
	char path[320], buf[512];
	DIR *d;
	struct dirent *e;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if ((d = opendir(path))) {
		while ((e = readdir(d))) {
			unsigned long long ns;
			if (e->d_name[0] == '.')
				continue;
			snprintf(buf, sizeof(buf), "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
			if ((f = fopen(buf, "r"))) {
				if (fscanf(f, "%llu", &ns) == 1)
					t += (double)ns / 1e9;
				fclose(f);
			}
		}
		closedir(d);
	}
	return t;
}

/* Proportional set size of one process, KiB. */
static double proc_pss_kib(pid_t pid)
{
	char path[64], line[128];
	double kib = 0, v;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	if (!(f = fopen(path, "r")))
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pss: %lf", &v) == 1)
			kib += v;
	fclose(f);
	return kib;
}

/* own(pid) summed over pid and its descendants (nginx's workers). */
static double tree_sum(pid_t pid, double (*own)(pid_t))
{
	double t = own(pid);
	char path[320], buf[512];
	DIR *d;
	struct dirent *e;
	FILE *f;

	if ((d = opendir("/proc"))) {
		while ((e = readdir(d))) {
			int ppid = 0;
			char *p;
			if (e->d_name[0] < '1' || e->d_name[0] > '9')
				continue;
			snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
			if (!(f = fopen(path, "r")))
				continue;
			if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
				sscanf(p + 2, "%*c %d", &ppid);
			fclose(f);
			if (ppid == pid)
				t += tree_sum(atoi(e->d_name), own);
		}
		closedir(d);
	}
	return t;
}

static double tree_cpu(pid_t pid)
{
	return tree_sum(pid, proc_cpu);
}

static long tls_stat(const char *name)
{
	char line[128], key[64];
	long v, r = -1;
	FILE *f = fopen("/proc/net/tls_stat", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s %ld", key, &v) == 2 && !strcmp(key, name))
			r = v;
	if (f)
		fclose(f);
	return r;
}

static int tcp_connect(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- servers ------------------------------------------------------------- */

struct variant {
	char name[32], note[256];
	int tls; /* 12, 13, or 0 for plain TCP */
	pid_t pid;
	int port;
	double cpu[MAXR];
	int n;
	long txsw; /* TlsTxSw growth over its transfers */
};

/* Start argv[0] with stderr to a pipe; wait for "listening on 127.0.0.1:PORT". */
static pid_t start_kts(char *const argv[], int *port, char *note, size_t notelen)
{
	static char text[8192];
	size_t len = 0;
	int p[2];
	pid_t pid;
	char *s;

	if (pipe(p) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		dup2(p[1], 2);
		dup2(p[1], 1);
		execvp(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	text[0] = 0;
	for (;;) {
		ssize_t n = read(p[0], text + len, sizeof(text) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		text[len] = 0;
		if ((s = strstr(text, "listening on 127.0.0.1:")) && strchr(s, '\n')) {
			*port = atoi(s + strlen("listening on 127.0.0.1:"));
			/* keep draining its log in a child so it never blocks on a full pipe */
			if (fork() == 0) {
				char b[4096];
				int nul = open("/dev/null", O_WRONLY);
				dup2(nul, 1);
				dup2(nul, 2);
				while (read(p[0], b, sizeof(b)) > 0)
					;
				_exit(0);
			}
			close(p[0]);
			return pid;
		}
	}
	close(p[0]);
	snprintf(note, notelen, "did not start: %.200s", text);
	for (s = note; *s; s++)
		if (*s == '\n')
			*s = ' ';
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/* The floor: plain TCP, one request per connection, sendfile of the file. */
static pid_t start_tcp(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	pid_t pid;

	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 16) ||
	    getsockname(ls, (struct sockaddr *)&a, &al))
		return -1;
	*port = ntohs(a.sin_port);
	pid = fork();
	if (pid)
		return close(ls), pid;
	setpgid(0, 0);
	prctl(PR_SET_NAME, "tcp-sendfile"); /* its own name in profiles */
	for (;;) {
		int c = accept(ls, NULL, NULL), f;
		char req[4096], hdr[256];
		size_t got = 0;
		off_t off = 0;
		ssize_t n;

		if (c < 0)
			continue;
		while (got < sizeof(req) - 1 && (n = read(c, req + got, sizeof(req) - 1 - got)) > 0) {
			got += (size_t)n;
			req[got] = 0;
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		f = open("/tmp/vmserve/root/big", O_RDONLY);
		n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", size);
		if (f >= 0 && write(c, hdr, (size_t)n) == n)
			while ((size_t)off < size && sendfile(c, f, &off, size - (size_t)off) > 0)
				;
		close(f);
		close(c);
	}
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static pid_t start_nginx(int ktls, int *port, char *note, size_t notelen)
{
	static int seq;
	char dir[128], conf[2048], path[192], pidf[192];
	pid_t pid;

	if (access(NGINX, X_OK)) {
		snprintf(note, notelen,
			 "no nginx in the initramfs (bench/vm-serve.sh copies /usr/sbin/nginx and its "
			 "libraries when the host has it)");
		return -1;
	}
	*port = 18080 + seq;
	snprintf(dir, sizeof(dir), "%s/nginx%d", root, seq++);
	mkdir(dir, 0755);
	snprintf(conf, sizeof(conf),
		 "daemon off;\nworker_processes 1;\nuser root;\nerror_log %s/error.log;\npid %s/nginx.pid;\n"
		 "worker_rlimit_nofile %d;\nevents { worker_connections %d; }\n"
		 "http { access_log off; sendfile on; keepalive_requests 100000000;\n"
		 " keepalive_timeout 3600s;\n"
		 " client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s;\n"
		 " uwsgi_temp_path %s; scgi_temp_path %s;\n"
		 " server { listen 127.0.0.1:%d ssl; ssl_certificate %s/cert.pem;\n"
		 "  ssl_certificate_key %s/key.pem; ssl_protocols TLSv1.2 TLSv1.3;\n"
		 "  ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;\n"
		 "  ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;\n"
		 "  ssl_session_cache shared:b%d:1m; %s\n  root %s/root; } }\n",
		 dir, dir, conns * 2 + 512, conns + WARM + 64, dir, dir, dir, dir, dir, *port, root,
		 root, seq,
		 ktls ? "ssl_conf_command Options KTLS;" : "", root);
	snprintf(path, sizeof(path), "%s/nginx.conf", dir);
	write_file(path, conf);
	snprintf(pidf, sizeof(pidf), "%s/error.log", dir);
	pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", O_WRONLY);
		setpgid(0, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		setenv("LD_LIBRARY_PATH", "/nginx/lib", 1);
		execl(NGINX, "nginx", "-p", dir, "-e", pidf, "-c", path, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		int fd = tcp_connect(*port);
		if (fd >= 0) {
			close(fd);
			return pid;
		}
		if (waitpid(pid, NULL, WNOHANG) == pid)
			break;
		usleep(50000);
	}
	{
		FILE *f = fopen(pidf, "r");
		char line[200] = "";
		if (f) {
			while (fgets(line, sizeof(line), f) && !strstr(line, "emerg"))
				;
			fclose(f);
		}
		line[strcspn(line, "\n")] = 0;
		snprintf(note, notelen, "nginx did not start in the guest: %s", line);
	}
	kill(-pid, SIGKILL);
	return -1;
}

/* ---- client ------------------------------------------------------------------ */

/* How a client receives: offload policy, TLS_RX_EXPECT_NO_PAD (TLS 1.3 only),
 * bytes per read. */
struct rx_mode {
	const char *name;
	int offload, no_pad;
	size_t buf;
};
static const struct rx_mode rx_modes[] = {
	{"auto", KTS_OFFLOAD_AUTO, 0, 256 << 10},
	{"off", KTS_OFFLOAD_OFF, 0, 256 << 10},
	{"auto", KTS_OFFLOAD_AUTO, 0, 16 << 10},
	{"auto", KTS_OFFLOAD_AUTO, 1, 256 << 10},
};
#define RX_MODES (int)(sizeof(rx_modes) / sizeof(*rx_modes))

/* GET /big from v (TLS with a kts client receiving as m says, or plain TCP);
 * returns the server's CPU over the body, and *rx_cpu the client's own.
 * *no_pad: whether the kernel took TLS_RX_EXPECT_NO_PAD. */
static int client_ktx; /* connections whose client side had kernel TX (also counted in TlsTxSw) */
static struct vm_prof *profiling; /* while set, fetch() profiles its body transfer */

static int fetch(struct variant *v, const struct rx_mode *m, double *srv_cpu, double *rx_cpu,
		 int *rx_path, int *no_pad)
{
	static char buf[256 << 10];
	size_t cap = m->buf < sizeof(buf) ? m->buf : sizeof(buf);
	static const char req[] = "GET /big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
	struct kts_config *cfg = NULL;
	struct kts *k = NULL;
	int fd = tcp_connect(v->port), ok = 0;
	size_t got = 0, hlen = 0, body = 0;
	double c0, r0;
	char *e;

	if (fd < 0)
		return 0;
	if (v->tls) {
		cfg = test_kts_config(v->tls, &test_suites[0], 0);
		if (!cfg || kts_config_set_offload(cfg, m->offload) ||
		    kts_config_set_rx_no_pad(cfg, m->no_pad) || !(k = kts_client_new(cfg)) ||
		    kts_attach(k, fd) || kts_handshake(k) != KTS_OK)
			goto out;
		*rx_path = kts_offload(k, KTS_RX);
		{
			int on = 0;
			socklen_t ol = sizeof(on);

			*no_pad = getsockopt(fd, SOL_TLS, TLS_RX_EXPECT_NO_PAD, &on, &ol) == 0 && on;
		}
		client_ktx += kts_offload(k, KTS_TX) == KTS_PATH_KERNEL;
	}
	if (profiling)
		vm_prof_switch(profiling, 1);
	c0 = tree_cpu(v->pid);
	r0 = thread_cpu();
	if ((k ? kts_write(k, req, sizeof(req) - 1) : write(fd, req, sizeof(req) - 1)) !=
	    (ssize_t)(sizeof(req) - 1))
		goto out;
	for (;;) {
		size_t room = (body ? cap : sizeof(buf)) - hlen;
		ssize_t n = k ? kts_read(k, buf + hlen, room) : read(fd, buf + hlen, room);
		if (n <= 0)
			break;
		if (!body) {
			hlen += (size_t)n;
			buf[hlen < sizeof(buf) ? hlen : sizeof(buf) - 1] = 0;
			if (!(e = strstr(buf, "\r\n\r\n")))
				continue;
			got = hlen - (size_t)(e + 4 - buf);
			body = 1;
			hlen = 0;
		} else {
			got += (size_t)n;
		}
		if (got >= size)
			break;
	}
	*rx_cpu = thread_cpu() - r0;
	*srv_cpu = tree_cpu(v->pid) - c0;
	if (profiling)
		vm_prof_switch(profiling, 0);
	ok = got == size;
out:
	if (k) {
		kts_close(k);
		kts_free(k);
	}
	kts_config_free(cfg);
	close(fd);
	return ok;
}

/* VM_BENCH_ONLY (a comma-separated list of server names, as kts-uring):
 * only these serve; the receive rows still run. */
static int wanted(const char *name)
{
	const char *only = getenv("VM_BENCH_ONLY");
	size_t n = strlen(name);

	for (const char *p = only; p && *p; p += strcspn(p, ","), p += *p == ',')
		if (strcspn(p, ",") == n && !strncmp(p, name, n))
			return 1;
	return !only || !*only;
}

/* perf report's filter for the tasks whose CPU a serve figure counts: a kts-server
 * is one process (its io_uring workers are threads named after a ring's
 * thread), nginx a master and its worker. */
static const char *server_tasks(const struct variant *v)
{
	static char filter[64];

	if (!strncmp(v->name, "nginx", 5))
		return "--comms nginx";
	if (!v->tls)
		return "--comms tcp-sendfile";
	snprintf(filter, sizeof(filter), "--pid %d", (int)v->pid);
	return filter;
}

/* fetch(), in the first round of a VM_BENCH_PERF boot under a profile of
 * the tasks perf report's filter names, printed as "profile LABEL ..." lines. */
static int profiled_fetch(int first, const char *label, const char *tasks, struct variant *v,
			  const struct rx_mode *m, double *srv_cpu, double *rx_cpu, int *rx_path,
			  int *no_pad)
{
	struct vm_prof p;
	int ok;

	if (!first || !vm_prof_wanted() || vm_prof_start(&p) < 0)
		return fetch(v, m, srv_cpu, rx_cpu, rx_path, no_pad);
	profiling = &p;
	ok = fetch(v, m, srv_cpu, rx_cpu, rx_path, no_pad);
	profiling = NULL;
	vm_prof_report(&p, label, tasks);
	return ok;
}

/* ---- memory per idle connection ------------------------------------------------ */

/* One keep-alive connection: handshake (kts client, offload auto), GET /small,
 * the whole response read; left open. Returns 0 on success. */
static int idle_open(struct variant *v, struct kts_config *cfg, struct kts **k, int *fd)
{
	static const char req[] = "GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n";
	char buf[4096], *e;
	size_t got = 0;

	*k = NULL;
	if ((*fd = tcp_connect(v->port)) < 0)
		return -1;
	if (!(*k = kts_client_new(cfg)) || kts_attach(*k, *fd) || kts_handshake(*k) != KTS_OK ||
	    kts_write(*k, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1))
		return -1;
	for (;;) {
		ssize_t n = kts_read(*k, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
		buf[got] = 0;
		if ((e = strstr(buf, "\r\n\r\n")) && got - (size_t)(e + 4 - buf) >= SMALL)
			return 0;
	}
}

/* Server PSS growth per connection with n idle connections open (after 16
 * warm-up connections, kept open), and whether the server's side of them was
 * kernel TLS: TlsCurrTxSw/TlsCurrRxSw growth minus the client's own. */
static void measure_idle(struct variant *v, int n)
{
	int total = n + WARM, ok = 1, ctx = 0, crx = 0, i;
	struct kts_config *cfg = test_kts_config(v->tls, &test_suites[0], 0);
	struct kts **k = calloc((size_t)total, sizeof(*k));
	int *fd = calloc((size_t)total, sizeof(*fd));
	long tx0 = 0, rx0 = 0, tx, rx;
	double pss0 = 0, pss;

	for (i = 0; ok && cfg && k && fd && i < total; i++) {
		if (i == WARM) {
			sleep(1);
			pss0 = tree_sum(v->pid, proc_pss_kib);
			tx0 = tls_stat("TlsCurrTxSw");
			rx0 = tls_stat("TlsCurrRxSw");
		}
		ok = idle_open(v, cfg, &k[i], &fd[i]) == 0;
		if (ok && i >= WARM) {
			ctx += kts_offload(k[i], KTS_TX) == KTS_PATH_KERNEL;
			crx += kts_offload(k[i], KTS_RX) == KTS_PATH_KERNEL;
		}
	}
	sleep(1);
	pss = tree_sum(v->pid, proc_pss_kib);
	tx = tls_stat("TlsCurrTxSw") - tx0 - ctx;
	rx = tls_stat("TlsCurrRxSw") - rx0 - crx;
	if (ok && cfg && k && fd)
		printf("mem server=%s tls=%s conns=%d server_ktls_tx=%ld server_ktls_rx=%ld "
		       "pss_kib_per_conn=%.2f\n",
		       v->name, v->tls == 12 ? "1.2" : "1.3", n, tx, rx, (pss - pss0) / n);
	else
		printf("mem server=%s tls=%s FAILED at connection %d\n", v->name,
		       v->tls == 12 ? "1.2" : "1.3", i);
	fflush(stdout);
	for (i = 0; k && fd && i < total; i++) {
		kts_free(k[i]);
		if (fd[i] > 0)
			close(fd[i]);
	}
	free(k);
	free(fd);
	kts_config_free(cfg);
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double med(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmpd);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* OpenSSL AES-128-GCM sealing (or opening) 16 KiB records of size bytes: the
 * cipher alone. Opening checks a tag that does not match: the work is the
 * same, and the result is not used. */
static double cipher_cost(int open)
{
	static unsigned char in[16384], out[16384 + 32], key[16], iv[12], tag[16];
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	double t0 = thread_cpu();
	int l;

	for (size_t done = 0; done < size; done += sizeof(in)) {
		iv[11]++;
		EVP_CipherInit_ex(c, EVP_aes_128_gcm(), NULL, key, iv, !open);
		EVP_CipherUpdate(c, NULL, &l, in, 13); /* the record header as AAD */
		EVP_CipherUpdate(c, out, &l, in, sizeof(in));
		if (open)
			EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag);
		EVP_CipherFinal_ex(c, out + l, &l);
		if (!open)
			EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag);
	}
	EVP_CIPHER_CTX_free(c);
	return thread_cpu() - t0;
}

static size_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	switch (*end) {
	case 'G': v *= 1024; /* fall through */
	case 'M': v *= 1024; /* fall through */
	case 'K': v *= 1024; break;
	}
	return (size_t)v;
}

int main(void)
{
	struct variant vs[MAXV * 2];
	int nv = 0, has_engine = 0;
	char cert[64], key[64], dir[64], note[256], line[4096], maxconn[16];
	/* rx[tls][mode]: tls 0 1.2, 1 1.3, 2 plain TCP (mode 0 only) */
	double gb, rx[3][RX_MODES][MAXR], ci[MAXR], de[MAXR];
	int rxn[3][RX_MODES] = {{0}}, rxpath[3][RX_MODES] = {{0}}, rxpad[3][RX_MODES] = {{0}};
	FILE *h;

	if (getenv("VM_BENCH_SIZE"))
		size = parse_size(getenv("VM_BENCH_SIZE"));
	if (getenv("VM_BENCH_ROUNDS"))
		rounds = atoi(getenv("VM_BENCH_ROUNDS"));
	if (rounds < 1 || rounds > MAXR)
		rounds = 3;
	if (getenv("VM_BENCH_CONNS"))
		conns = atoi(getenv("VM_BENCH_CONNS"));
	{
		/* root may raise its own limit; the servers started below inherit it */
		struct rlimit rl = {.rlim_cur = (rlim_t)conns * 2 + 1024,
				    .rlim_max = (rlim_t)conns * 2 + 1024};
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			printf("setrlimit NOFILE %lu: %s\n", (unsigned long)rl.rlim_cur, strerror(errno));
	}
	gb = (double)size / 1e9;
	signal(SIGPIPE, SIG_IGN);
	printf("bench vm_serve size=%zuMiB rounds=%d tls_stat=%s\n", size >> 20, rounds,
	       tls_stat("TlsTxSw") >= 0 ? "yes" : "no");
	fflush(stdout);

	test_cert_init();
	mkdir(root, 0755);
	snprintf(cert, sizeof(cert), "%s/cert.pem", root);
	snprintf(key, sizeof(key), "%s/key.pem", root);
	snprintf(dir, sizeof(dir), "%s/root", root);
	mkdir(dir, 0755);
	if (test_write_cert_files(cert, key) < 0) {
		printf("setup failed: certificate files\n");
		return 1;
	}
	{
		int f = open("/tmp/vmserve/root/big", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		static unsigned char blk[1 << 20];
		for (size_t i = 0, s = 1; i < sizeof(blk); i++) {
			s = s * 6364136223846793005u + 1442695040888963407u;
			blk[i] = (unsigned char)(s >> 56);
		}
		for (size_t off = 0; off < size; off += sizeof(blk))
			if (write(f, blk, size - off < sizeof(blk) ? size - off : sizeof(blk)) <= 0) {
				printf("setup failed: cannot write the %zu MiB file (tmpfs full?)\n", size >> 20);
				return 1;
			}
		close(f);
		f = open("/tmp/vmserve/root/small", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (f < 0 || write(f, blk, SMALL) != SMALL) {
			printf("setup failed: cannot write /small\n");
			return 1;
		}
		close(f);
	}

	/* Which engines does this kts-server have? */
	if ((h = popen("kts-server --help 2>&1", "r"))) {
		while (fgets(line, sizeof(line), h))
			if (strstr(line, "--engine"))
				has_engine = 1;
		pclose(h);
	}
	snprintf(maxconn, sizeof(maxconn), "%d", conns + WARM + 64);
	for (int tls = 12; tls <= 13; tls++) {
		/* base-uring: a second build's kts-server (bench/vm-serve.sh
		 * KTS_BENCH_VM_BASE), for an A/B within one boot */
		static const char *eng[] = {"uring", "threads", "uring"};
		int engines = access("/bin/" BASE_SERVER, X_OK) == 0 ? 3 : 2;

		for (int e = 0; e < engines; e++) {
			struct variant *v = &vs[nv];
			char *argv[24];
			int a = 0;

			memset(v, 0, sizeof(*v));
			v->tls = tls;
			snprintf(v->name, sizeof(v->name), "%s-%s", e == 2 ? "base" : "kts", eng[e]);
			if (!has_engine && e == 0) {
				if (tls == 12)
					printf("not-measured kts-uring: kts-server has no --engine option yet\n");
				continue;
			}
			argv[a++] = e == 2 ? BASE_SERVER : "kts-server";
			argv[a++] = "--listen";
			argv[a++] = "127.0.0.1:0";
			argv[a++] = "--cert";
			argv[a++] = cert;
			argv[a++] = "--key";
			argv[a++] = key;
			argv[a++] = "--root";
			argv[a++] = dir;
			argv[a++] = "--tls";
			argv[a++] = tls == 12 ? "1.2" : "1.3";
			argv[a++] = "--timeout";
			argv[a++] = "3600";
			argv[a++] = "--max-conn";
			argv[a++] = maxconn;
			if (has_engine) {
				argv[a++] = "--engine";
				argv[a++] = (char *)eng[e];
			}
			argv[a] = NULL;
			v->pid = start_kts(argv, &v->port, v->note, sizeof(v->note));
			if (v->pid < 0) {
				printf("not-measured %s: tls=%d.%d %s\n", v->name, tls / 10, tls % 10, v->note);
				continue;
			}
			nv++;
		}
		for (int kt = 1; kt >= 0; kt--) {
			struct variant *v = &vs[nv];
			memset(v, 0, sizeof(*v));
			v->tls = tls;
			snprintf(v->name, sizeof(v->name), kt ? "nginx-ktls" : "nginx-user");
			v->pid = start_nginx(kt, &v->port, note, sizeof(note));
			if (v->pid < 0) {
				if (tls == 12)
					printf("not-measured %s: %s\n", v->name, note);
				continue;
			}
			nv++;
		}
	}
	memset(&vs[nv], 0, sizeof(vs[nv]));
	snprintf(vs[nv].name, sizeof(vs[nv].name), "tcp-sendfile");
	if ((vs[nv].pid = start_tcp(&vs[nv].port)) > 0)
		nv++;
	fflush(stdout);

	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < nv; i++) { /* interleaved: every variant once a round */
			struct variant *v = &vs[i];
			double sc = 0, rc = 0;
			int rp = 0;

			if (!wanted(v->name))
				continue;
			long t0 = tls_stat("TlsTxSw");
			int k0 = client_ktx, np = 0, ok;
			char label[96];

			snprintf(label, sizeof(label), "serve server=%.32s tls=%s", v->name,
				 v->tls ? (v->tls == 12 ? "1.2" : "1.3") : "none");
			ok = profiled_fetch(!r, label, server_tasks(v), v, &rx_modes[0], &sc, &rc, &rp, &np);
			if (!ok) {
				printf("serve server=%s tls=%d.%d round=%d FAILED\n", v->name, v->tls / 10,
				       v->tls % 10, r + 1);
				continue;
			}
			v->txsw += tls_stat("TlsTxSw") - t0 - (client_ktx - k0); /* the server's own */
			v->cpu[v->n++] = sc / gb;
			printf("serve-round server=%s tls=%s round=%d cpu_s_per_gb=%.3f\n", v->name,
			       v->tls ? (v->tls == 12 ? "1.2" : "1.3") : "none", r + 1, sc / gb);
			fflush(stdout);
		}
		/* Receive: a kts client in each mode from the first kts-server, and
		 * plain TCP from the sendfile server. */
		for (int tls = 0; tls < 3; tls++)
			for (int o = 0; o < RX_MODES; o++) {
				struct variant *v = NULL;
				double sc, rc;
				int rp = 0, np = 0;

				if ((tls == 0 && rx_modes[o].no_pad) || (tls == 2 && o > 0))
					continue; /* NO_PAD is TLS 1.3's; TCP has one mode */
				for (int i = 0; i < nv && !v; i++)
					if (tls == 2 ? !vs[i].tls
						     : !strncmp(vs[i].name, "kts-", 4) && vs[i].tls == 12 + tls)
						v = &vs[i];
				char label[96];

				snprintf(label, sizeof(label), "rx tls=%s offload=%s no_pad=%s buf=%zuKiB",
					 tls == 2 ? "none" : tls ? "1.3" : "1.2",
					 tls == 2 ? "tcp" : rx_modes[o].name, rx_modes[o].no_pad ? "on" : "off",
					 rx_modes[o].buf >> 10);
				if (v && profiled_fetch(!r, label, "--comms vm_serve", v, &rx_modes[o], &sc, &rc, &rp,
							&np)) {
					rx[tls][o][rxn[tls][o]++] = rc / gb;
					rxpath[tls][o] = rp;
					rxpad[tls][o] = np;
				}
			}
		ci[r] = cipher_cost(0) / gb;
		de[r] = cipher_cost(1) / gb;
	}

	for (int i = 0; i < nv; i++) {
		struct variant *v = &vs[i];
		const char *path = !v->tls ? "tcp" : v->txsw > 0 ? "ktls" : "user";
		if (!v->n)
			continue;
		printf("serve server=%s tls=%s path=%s size=%zuMiB rounds=%d cpu_s_per_gb=%.3f tls_tx_sw=+%ld\n",
		       v->name, v->tls ? (v->tls == 12 ? "1.2" : "1.3") : "none", path, size >> 20, v->n,
		       med(v->cpu, v->n), v->txsw);
		if (!strcmp(v->name, "nginx-ktls") && v->txsw <= 0 && v->tls == 12)
			printf("not-measured nginx-ktls: nginx ran but OpenSSL did not hand TX to the kernel "
			       "(TlsTxSw unchanged): this libssl was built without kTLS\n");
	}
	for (int r = 0; r < 2; r++) {
		printf("cipher tls=%s cipher=aes128gcm record=16KiB rounds=%d cpu_s_per_gb=%.3f\n",
		       r ? "1.3" : "1.2", rounds, med(ci, rounds));
		printf("decipher tls=%s cipher=aes128gcm record=16KiB rounds=%d cpu_s_per_gb=%.3f\n",
		       r ? "1.3" : "1.2", rounds, med(de, rounds));
	}
	for (int tls = 0; tls < 3; tls++)
		for (int o = 0; o < RX_MODES; o++)
			if (rxn[tls][o])
				printf("rx tls=%s offload=%s no_pad=%s buf=%zuKiB path=%s size=%zuMiB "
				       "rounds=%d cpu_s_per_gb=%.3f\n",
				       tls == 2 ? "none" : tls ? "1.3" : "1.2",
				       tls == 2 ? "tcp" : rx_modes[o].name,
				       !rx_modes[o].no_pad ? "off" : rxpad[tls][o] ? "on" : "refused",
				       rx_modes[o].buf >> 10, tls == 2 ? "tcp" : kts_path_name(rxpath[tls][o]),
				       size >> 20, rxn[tls][o], med(rx[tls][o], rxn[tls][o]));
	/* Memory: idle kTLS keep-alive connections, TLS 1.3, the two servers the
	 * goal compares (kts-threads is a thread each; nginx-user is the host
	 * group's nginx). */
	for (int i = 0; conns > 0 && i < nv; i++)
		if (vs[i].tls == 13 && (!strcmp(vs[i].name, "kts-uring") || !strcmp(vs[i].name, "nginx-ktls")))
			measure_idle(&vs[i], conns);
	for (int i = 0; i < nv; i++)
		kill(-vs[i].pid, SIGKILL);
	while (wait(NULL) > 0)
		;
	printf("bench done\n");
	fflush(stdout);
	return 0;
}
