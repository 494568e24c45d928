/* vm_prof.h - instruction profiles inside the benchmark VM (VM_BENCH_PERF=1). */
#ifndef KTS_BENCH_VM_PROF_H
#define KTS_BENCH_VM_PROF_H

#include <sys/types.h>

/* A system-wide `perf record` of one transfer, started with its events off
 * and switched on and off through perf's control fifos, so that the profile
 * covers what the measurement covers. */
struct vm_prof {
	pid_t pid; /* perf record, 0 when none runs */
	int ctl, ack;
};

/* Whether this boot asked for profiles and has perf (else says why, once). */
int vm_prof_wanted(void);
/* Start perf with its events off. Returns 0, or -1 with a line printed. */
int vm_prof_start(struct vm_prof *p);
/* Events on (1) or off (0); returns once perf has acknowledged. */
void vm_prof_switch(struct vm_prof *p, int on);
/* Stop perf, then print "profile LABEL ..." lines: every task's share, then
 * the symbols of the tasks a perf report filter selects (tasks: "--pid 42",
 * "--comms nginx"). A NULL label prints nothing. */
void vm_prof_report(struct vm_prof *p, const char *label, const char *tasks);

#endif
