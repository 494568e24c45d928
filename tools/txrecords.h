/* txrecords.h - where a reply's file sends stop on kernel TX, so that the
 * records the kernel seals from the file start on page boundaries. */
#ifndef KTS_TOOLS_TXRECORDS_H
#define KTS_TOOLS_TXRECORDS_H

#include <stddef.h>

#define TXREC_RECORD 16384 /* plaintext of a full kernel TX record */
#define TXREC_PAGE 4096

/* Kernel TX closes a record when it is full or when a send comes without
 * MSG_MORE. A reply's head (head bytes, sent with MSG_MORE) shares the first
 * record with the file (size bytes). Returns the file offset where that record
 * should end, the last page boundary it reaches, so that every later record
 * starts on one; 0 when there is none to aim for (no head, a head that
 * leaves less than a page of the record, or a file that ends inside it). */
long long txrec_first_end(size_t head, long long size);

/* The file offset where one send that starts at from (0 <= from < size)
 * should stop, given at most max bytes (max >= TXREC_RECORD): the first
 * record's end while before it, the file's end, or the last record boundary
 * (first end + n x TXREC_RECORD) within max; never from itself. */
long long txrec_send_end(size_t head, long long size, long long from, long long max);

#endif
