/*
 * uring_https.c - a complete io_uring program on kts' caller-owned I/O: an
 * HTTPS file server and a one-shot HTTPS client, each one ring, every byte
 * moved by the ring, kts turning them into TLS (kernel TLS where the kernel
 * takes the keys, userspace otherwise; the program does not change).
 *
 *   uring_https serve PORT CERT KEY DIR [COUNT]   serve DIR on 127.0.0.1:PORT,
 *                                                 exit after COUNT connections
 *   uring_https get ADDR PORT PATH [CAFILE]       GET PATH (Connection: close),
 *                                                 body to stdout
 * Each connection logs one line to stderr: version, cipher, and the path each
 * direction took. One operation is in flight per connection at a time, which
 * keeps the rules simple: kts' queued bytes go first, sends never overlap, and
 * a connection is freed only when its operation has completed.
 * Build: cc uring_https.c $(pkg-config --cflags --libs kts liburing)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "kts.h"
#include "kts_uring.h"

enum op { OP_NONE, OP_ACCEPT, OP_RECV, OP_OUT, OP_SEND };
enum phase { READING, WRITING, CLOSING, DONE };

struct conn {
	struct kts *k;
	int fd, is_server, id;
	enum op op;          /* the one operation in flight */
	enum phase phase;
	struct kts_msg rmsg, smsg;
	char rbuf[16384];
	char head[4096];      /* server: the request; client: the request to send */
	size_t head_len, head_sent;
	int file;             /* server: the file being sent, -1 if none */
	off_t off, size;
	char body[16384];     /* a chunk of the file on its way */
	size_t body_len, body_sent;
	int logged;
};

static struct io_uring ring;
static struct kts_config *cfg;
static int listen_fd = -1, dir_fd = -1, served, to_serve = -1, next_id, exit_code;
static struct sockaddr_in peer_addr;
static socklen_t peer_len;

static struct io_uring_sqe *sqe_for(struct conn *c, enum op op)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

	if (!sqe) { /* full: submit what is queued and take a fresh one */
		io_uring_submit(&ring);
		sqe = io_uring_get_sqe(&ring);
	}
	if (c)
		c->op = op;
	io_uring_sqe_set_data(sqe, c);
	return sqe;
}

static void arm_accept(void)
{
	peer_len = sizeof(peer_addr);
	io_uring_prep_accept(sqe_for(NULL, OP_ACCEPT), listen_fd, (struct sockaddr *)&peer_addr,
			     &peer_len, SOCK_CLOEXEC);
}

static void finish(struct conn *c, const char *why)
{
	int is_server = c->is_server;

	if (why && *why) {
		fprintf(stderr, "conn %d: %s\n", c->id, why);
		if (!c->is_server)
			exit_code = 1;
	}
	if (c->file >= 0)
		close(c->file);
	close(c->fd);
	kts_free(c->k);
	free(c);
	if (!is_server || (to_serve > 0 && ++served >= to_serve))
		to_serve = 0; /* the loop ends once nothing is in flight */
}

/* Once: how the connection ended up. */
static void log_paths(struct conn *c)
{
	if (c->logged)
		return;
	c->logged = 1;
	fprintf(stderr, "conn %d: %s %s tx=%s rx=%s\n", c->id, kts_version(c->k), kts_cipher(c->k),
		kts_path_name(kts_offload(c->k, KTS_TX)), kts_path_name(kts_offload(c->k, KTS_RX)));
}

/* Server: a whole request is in head; open the file and write the header. */
static void respond(struct conn *c)
{
	char path[1024];
	struct stat st;
	int status = 404;

	c->head[c->head_len] = '\0';
	if (sscanf(c->head, "GET /%1023s HTTP/1.", path) == 1 && !strstr(path, "..") &&
	    (c->file = openat(dir_fd, path, O_RDONLY | O_CLOEXEC)) >= 0) {
		if (fstat(c->file, &st) == 0 && S_ISREG(st.st_mode)) {
			status = 200;
			c->size = st.st_size;
		} else {
			close(c->file);
			c->file = -1;
		}
	}
	c->head_len = (size_t)snprintf(c->head, sizeof(c->head),
				       "HTTP/1.1 %d %s\r\nContent-Length: %lld\r\nConnection: close\r\n\r\n",
				       status, status == 200 ? "OK" : "Not Found",
				       status == 200 ? (long long)c->size : 0LL);
	c->head_sent = 0;
	c->phase = WRITING;
}

/* The next plaintext to send: the rest of head, then the file in chunks. */
static int next_chunk(struct conn *c, const char **p, size_t *len)
{
	if (c->head_sent < c->head_len) {
		*p = c->head + c->head_sent;
		*len = c->head_len - c->head_sent;
		return 1;
	}
	if (c->body_sent == c->body_len && c->file >= 0 && c->off < c->size) {
		ssize_t n = pread(c->file, c->body, sizeof(c->body), c->off);
		if (n <= 0)
			return -1;
		c->body_len = (size_t)n;
		c->body_sent = 0;
		c->off += n;
	}
	*p = c->body + c->body_sent;
	*len = c->body_len - c->body_sent;
	return *len > 0;
}

static void consumed(struct conn *c, size_t n)
{
	if (c->head_sent < c->head_len)
		c->head_sent += n;
	else
		c->body_sent += n;
}

/* Start the connection's next operation, or end it. */
static void pump(struct conn *c)
{
	const char *p;
	size_t len;
	int r;

	if (kts_out_pending(c->k) > 0) { /* kts' own bytes first, always */
		kts_uring_prep_out(sqe_for(c, OP_OUT), c->k, c->fd, &c->smsg);
		return;
	}
	if (c->phase == READING) {
		kts_uring_prep_recvmsg(sqe_for(c, OP_RECV), c->k, c->fd, &c->rmsg, c->rbuf,
				       sizeof(c->rbuf));
		return;
	}
	while (c->phase == WRITING) {
		if ((r = next_chunk(c, &p, &len)) < 0)
			{ finish(c, "reading the file failed"); return; }
		if (r == 0) {
			/* Server: all sent, close_notify next. Client: read the answer. */
			c->phase = c->is_server ? CLOSING : READING;
			{ pump(c); return; }
		}
		if (kts_offload(c->k, KTS_TX) == KTS_PATH_KERNEL) {
			/* The kernel encrypts: send the plaintext itself. */
			kts_uring_prep_send(sqe_for(c, OP_SEND), c->fd, p, len, c->head_sent < c->head_len);
			return;
		}
		ssize_t n = kts_write(c->k, p, len); /* encrypts into kts' queue */
		if (n == KTS_WANT_WRITE)
			{ pump(c); return; } /* the queue is full: it goes out first */
		if (n < 0)
			{ finish(c, kts_error(c->k)); return; }
		consumed(c, (size_t)n);
		{ pump(c); return; }
	}
	if (c->phase == CLOSING) {
		if (kts_close(c->k) != KTS_OK)
			{ finish(c, kts_error(c->k)); return; }
		c->phase = DONE;
		{ pump(c); return; } /* close_notify is queued like any record */
	}
	finish(c, NULL);
}

/* Plaintext from the connection: a request (server) or the answer (client). */
static int got_data(struct conn *c, const char *p, size_t n)
{
	if (!c->is_server)
		return fwrite(p, 1, n, stdout) == n ? 0 : -1;
	if (n > sizeof(c->head) - 1 - c->head_len)
		return -1; /* request too large */
	memcpy(c->head + c->head_len, p, n);
	c->head_len += n;
	c->head[c->head_len] = '\0';
	if (c->phase == READING && strstr(c->head, "\r\n\r\n"))
		respond(c);
	return 0;
}

static void complete(struct conn *c, int res)
{
	enum op op = c->op;
	ssize_t r;

	c->op = OP_NONE;
	switch (op) {
	case OP_RECV:
		r = kts_recvmsg_done(c->k, &c->rmsg, res);
		/* Data in rbuf first, then whatever kts still holds. */
		for (; r > 0; r = kts_read(c->k, c->rbuf, sizeof(c->rbuf)))
			if (got_data(c, c->rbuf, (size_t)r) < 0)
				{ finish(c, "bad request"); return; }
		if (r == 0) /* close_notify */
			{ finish(c, c->is_server && c->phase == READING ? "closed before a request"
									  : NULL); return; }
		if (r != KTS_WANT_READ)
			{ finish(c, kts_error(c->k)); return; }
		break;
	case OP_OUT:
		if ((r = kts_out_done(c->k, res)) != KTS_OK && r != KTS_WANT_WRITE)
			{ finish(c, kts_error(c->k)); return; }
		break;
	case OP_SEND:
		r = kts_send_done(c->k, res, c->head_sent < c->head_len ? c->head_len - c->head_sent
									: c->body_len - c->body_sent);
		if (r < 0 && r != KTS_WANT_WRITE)
			{ finish(c, kts_error(c->k)); return; }
		if (r > 0)
			consumed(c, (size_t)r);
		break;
	default:
		break;
	}
	if (!c->logged) {
		/* Nothing is in flight now: the moment kts may hand off. */
		r = kts_handshake(c->k);
		if (r == KTS_OK) {
			log_paths(c);
			if (!c->is_server)
				c->phase = WRITING; /* send the request */
			/* What came with the handshake's end (a request). */
			while ((r = kts_read(c->k, c->rbuf, sizeof(c->rbuf))) > 0)
				if (got_data(c, c->rbuf, (size_t)r) < 0) {
					finish(c, "bad request");
					return;
				}
		} else if (r != KTS_WANT_READ && r != KTS_WANT_WRITE) {
			finish(c, kts_error(c->k));
			return;
		}
	}
	pump(c);
}

static struct conn *conn_new(int fd, int is_server, const char *name)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	c->is_server = is_server;
	c->file = -1;
	c->id = next_id++;
	c->k = is_server ? kts_server_new(cfg) : kts_client_new(cfg);
	if (!c->k || kts_attach_caller_io(c->k, fd) != KTS_OK ||
	    (name && kts_set_server_name(c->k, name) != KTS_OK)) {
		fprintf(stderr, "conn: %s\n", c->k ? kts_error(c->k) : kts_config_error(cfg));
		kts_free(c->k);
		free(c);
		close(fd);
		return NULL;
	}
	return c;
}

static int setup_server(char **argv, int argc)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	if (kts_config_set_cert_file(cfg, argv[3]) || kts_config_set_key_file(cfg, argv[4])) {
		fprintf(stderr, "%s\n", kts_config_error(cfg));
		return -1;
	}
	to_serve = argc > 6 ? atoi(argv[6]) : -1;
	dir_fd = open(argv[5], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
	if (dir_fd < 0 || listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(listen_fd, 128) < 0) {
		perror("serve");
		return -1;
	}
	arm_accept();
	return 0;
}

static int setup_client(char **argv, int argc)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
	struct conn *c;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (argc > 5 ? kts_config_set_ca_file(cfg, argv[5])
		     : kts_config_set_verify(cfg, 0)) {
		fprintf(stderr, "%s\n", kts_config_error(cfg));
		return -1;
	}
	if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1 || fd < 0 ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("get");
		return -1;
	}
	if (!(c = conn_new(fd, 0, argc > 5 ? "localhost" : NULL)))
		return -1;
	c->head_len = (size_t)snprintf(c->head, sizeof(c->head),
				       "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
				       argv[4], argv[2]);
	kts_handshake(c->k); /* the ClientHello, into kts' queue */
	pump(c);
	return 0;
}

int main(int argc, char **argv)
{
	struct io_uring_cqe *cqe;
	int serve = argc >= 6 && strcmp(argv[1], "serve") == 0;

	if (!serve && !(argc >= 5 && strcmp(argv[1], "get") == 0)) {
		fprintf(stderr, "usage: %s serve PORT CERT KEY DIR [COUNT]\n"
				"       %s get ADDR PORT PATH [CAFILE]\n", argv[0], argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (io_uring_queue_init(256, &ring, 0) < 0 || !(cfg = kts_config_new())) {
		fprintf(stderr, "io_uring or kts setup failed\n");
		return 1;
	}
	if ((serve ? setup_server(argv, argc) : setup_client(argv, argc)) < 0)
		return 1;
	/* Clients run until their connection ends; servers for COUNT connections. */
	while (to_serve != 0 && io_uring_submit_and_wait(&ring, 1) >= 0) {
		unsigned head, seen = 0;

		io_uring_for_each_cqe(&ring, head, cqe) {
			struct conn *c = io_uring_cqe_get_data(cqe);
			int res = cqe->res;

			seen++;
			if (c) {
				complete(c, res);
			} else if (res >= 0) { /* a new connection, and the next accept */
				if ((c = conn_new(res, 1, NULL)))
					pump(c);
				arm_accept();
			} else if (res != -EINTR) {
				fprintf(stderr, "accept: %s\n", strerror(-res));
			}
		}
		io_uring_cq_advance(&ring, seen);
	}
	io_uring_queue_exit(&ring);
	kts_config_free(cfg);
	return exit_code;
}
