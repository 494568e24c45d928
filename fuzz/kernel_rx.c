/* kernel_rx.c - fuzz what kts does with records kernel RX hands up: the
 * record interpreter (lib/rx.c) and post-handshake handling
 * (lib/posthandshake.c: TLS 1.3 tickets and KeyUpdate, TLS 1.2
 * renegotiation), with no kernel. rx.c does no I/O, so the target feeds it
 * records as kts_read would after recvmsg.
 *
 * Input: byte 0 picks the connection (bit 0 server, bit 1 TLS 1.3, bit 2 the
 * kernel can rekey, bit 3 end with a TCP EOF, bits 4-6 the reader's buffer
 * size), then records: type (1 byte), length (2 bytes, big-endian), bytes.
 * Each record reaches the interpreter in reads of the buffer size, as a
 * small reader's recvmsg returns it. The connection is set up as if the
 * handoff had given both directions to the kernel; its fd is -1, so the key
 * installs a KeyUpdate asks for fail as a kernel refusing them would, and
 * tickets reach an OpenSSL object that holds no keys for them.
 * Checked: data comes back only from data records and never exceeds the
 * read; partial state stays within bounds; a failed connection stays failed.
 */
#include <string.h>

#include <openssl/ssl.h>

#include "fuzz.h"
#include "internal.h"
#include "record.h"
#include "testutil.h"
#include "tls_wire.h"

static struct kts_config *cfg[2]; /* client, server */
static const size_t buf_sizes[8] = {1, 2, 3, 5, 64, 512, 4096, 16384};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	test_cert_init();
	cfg[0] = test_kts_config(13, &test_suites[0], 0);
	cfg[1] = test_kts_config(13, &test_suites[0], 1);
	FUZZ_CHECK(cfg[0] && cfg[1]);
	return 0;
}

/* A connection in the state kts_handoff leaves with both directions in the kernel. */
static struct kts *open_conn(unsigned flags)
{
	int server = flags & 1;
	struct kts *c = server ? kts_server_new(cfg[1]) : kts_client_new(cfg[0]);

	FUZZ_CHECK(c);
	atomic_store(&c->cfg->rekey, flags & 4 ? 1 : 2);
	c->state = KTS_STATE_OPEN;
	c->path[KTS_TX] = c->path[KTS_RX] = KTS_PATH_KERNEL;
	c->version = flags & 2 ? TLS1_3_VERSION : TLS1_2_VERSION;
	if (c->version == TLS1_3_VERSION) {
		c->aead = KTS_AEAD_AES_128_GCM;
		strcpy(c->digest, "SHA256");
		FUZZ_CHECK(kts_secrets_get(c));
		c->sec->size = 32;
		memset(c->sec->rx, 0x11, 32);
		memset(c->sec->tx, 0x22, 32);
		memset(c->sec->ossl_tx, 0x22, 32);
	}
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned char buf[16384];
	unsigned flags;
	size_t at = 1, bufsize;
	struct kts *c;
	ssize_t r = KTS_RX_AGAIN;

	if (size < 1)
		return 0;
	flags = data[0];
	bufsize = buf_sizes[(flags >> 4) & 7];
	c = open_conn(flags);
	while (at + 3 <= size && r == KTS_RX_AGAIN) {
		unsigned char type = data[at];
		size_t len = (size_t)data[at + 1] << 8 | data[at + 2];

		at += 3;
		if (len > size - at)
			len = size - at;
		/* One record, read in parts of bufsize; an empty record is a read of 0. */
		for (size_t done = 0; r == KTS_RX_AGAIN && (done < len || len == 0);) {
			size_t n = len - done < bufsize ? len - done : bufsize;

			memcpy(buf, data + at + done, n);
			r = kts_rx_record(c, type, buf, n, done + n == len);
			FUZZ_CHECK(r <= (ssize_t)n);
			FUZZ_CHECK(r <= 0 || type == KTS_RECORD_DATA);
			FUZZ_CHECK(c->hs_len <= KTS_RECORD_MAX_PLAIN && c->rx_alert_len < 2);
			FUZZ_CHECK(c->tx_hs_len <= KTS_RECORD_MAX_PLAIN);
			if (r > 0) /* data handed to the caller: read on */
				r = KTS_RX_AGAIN;
			done += n;
			if (len == 0)
				break;
		}
		at += len;
	}
	if (r == KTS_RX_AGAIN && (flags & 8))
		r = kts_rx_record(c, KTS_RECORD_DATA, buf, 0, 1);
	if (r < 0 && r != KTS_RX_AGAIN) {
		FUZZ_CHECK(c->state == KTS_STATE_FAILED);
		FUZZ_CHECK(c->fail_code == r);
		FUZZ_CHECK(kts_rx_record(c, KTS_RECORD_DATA, buf, 1, 1) == 1 || c->state == KTS_STATE_FAILED);
	}
	kts_free(c);
	return 0;
}
