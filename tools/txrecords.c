/* txrecords.c - where kernel TX file sends stop (see txrecords.h). Why: the
 * kernel's AES-GCM walks a record page by page, and a page boundary inside a
 * cipher block costs a copy through a bounce buffer and more calls. With the
 * head in the first record, every record after it started mid-page: in a VM
 * profile the uring engine spent more in the cipher than the threads engine,
 * whose head is a record of its own. */
#include "txrecords.h"

long long txrec_first_end(size_t head, long long size)
{
	size_t used = head % TXREC_RECORD;
	long long end = (long long)((TXREC_RECORD - used) / TXREC_PAGE * TXREC_PAGE);

	return used && end < size ? end : 0;
}

long long txrec_send_end(size_t head, long long size, long long from, long long max)
{
	long long first = txrec_first_end(head, size), end = from + max;

	if (from < first)
		return first;
	if (end >= size)
		return size;
	end -= (end - first) % TXREC_RECORD;
	return end > from ? end : from + max;
}
