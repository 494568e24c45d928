/* keywatch.c - what the library keeps of the ticket keys (see keywatch.h). */
#include "keywatch.h"

#include <string.h>

void keywatch_init(struct keywatch *w, unsigned int lifetime)
{
	memset(w, 0, sizeof(*w));
	w->lifetime = lifetime;
}

/* As the library does before every use: keys added 2 x lifetime ago go. */
static void expire(struct keywatch *w, time_t now)
{
	size_t keep = 0;

	for (size_t i = 0; i < w->n; i++)
		if (!w->lifetime || now - w->added[i] < 2 * (time_t)w->lifetime)
			w->added[keep++] = w->added[i];
	w->n = keep;
}

size_t keywatch_add(struct keywatch *w, time_t now)
{
	size_t pushed = 0;

	expire(w, now);
	if (w->n == KTS_TICKET_KEYS_MAX) {
		memmove(w->added, w->added + 1, (w->n - 1) * sizeof(w->added[0]));
		w->n--;
		pushed = 1;
	}
	w->added[w->n++] = now;
	w->told = 0;
	return pushed;
}

size_t keywatch_kept(struct keywatch *w, time_t now)
{
	expire(w, now);
	return w->n;
}

int keywatch_sealing(const struct keywatch *w, time_t now)
{
	return w->n > 0 && (!w->lifetime || now - w->added[w->n - 1] < (time_t)w->lifetime);
}

int keywatch_stopped(struct keywatch *w, time_t now)
{
	if (w->told || keywatch_sealing(w, now))
		return 0;
	w->told = 1;
	return 1;
}

time_t keywatch_until_stop(const struct keywatch *w, time_t now)
{
	if (!keywatch_sealing(w, now) || !w->lifetime)
		return 0;
	return w->added[w->n - 1] + (time_t)w->lifetime - now;
}
