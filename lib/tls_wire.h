/*
 * tls_wire.h - TLS constants kts reads or writes itself after the handoff:
 * record content types, alert levels and descriptions, handshake framing.
 */
#ifndef KTS_TLS_WIRE_H
#define KTS_TLS_WIRE_H

/* Record content types (RFC 8446 5.1). */
#define KTS_RECORD_CCS 20
#define KTS_RECORD_ALERT 21
#define KTS_RECORD_HANDSHAKE 22
#define KTS_RECORD_DATA 23

/* Alert levels and the descriptions kts sends or acts on (RFC 8446 6). */
#define ALERT_WARNING 1
#define ALERT_FATAL 2
#define ALERT_CLOSE_NOTIFY 0
#define ALERT_UNEXPECTED_MESSAGE 10
#define ALERT_BAD_RECORD_MAC 20
#define ALERT_RECORD_OVERFLOW 22
#define ALERT_DECODE_ERROR 50
#define ALERT_INTERNAL_ERROR 80
#define ALERT_USER_CANCELED 90
#define ALERT_NO_RENEGOTIATION 100

/* Handshake messages: type (1 byte), length (3 bytes), body. */
#define HS_HEADER 4
#define HS_HELLO_REQUEST 0
#define HS_CLIENT_HELLO 1

#endif
