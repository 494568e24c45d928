/*
 * vm_prof.c - instruction profiles inside the benchmark VM. With -icount the
 * guest's clock counts instructions, so perf's cpu-clock event samples one
 * instruction in every VM_BENCH_PERF_PERIOD (default 20000): the profile is
 * of instructions, the unit the benchmark's CPU figures are in. bench/vm-serve.sh
 * puts perf and its libraries at /perf when KTS_BENCH_VM_PERF=1. Sampling
 * costs the profiled tasks CPU, so a profiling boot's figures are not the
 * benchmark's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "vm_prof.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PERF "/perf/perf"
#define DATA "/tmp/perf.data"
#define CTL "/tmp/perf.ctl"
#define ACK "/tmp/perf.ack"
#define SYMBOL_MIN "0.02" /* percent: smaller symbols are left out */

int vm_prof_wanted(void)
{
	static int told;
	const char *want = getenv("VM_BENCH_PERF");

	if (!want || !strcmp(want, "0"))
		return 0;
	if (access(PERF, X_OK) == 0)
		return 1;
	if (!told++)
		printf("not-profiled: VM_BENCH_PERF is set but %s is missing (bench/vm-serve.sh "
		       "adds it with KTS_BENCH_VM_PERF=1 when the host has perf)\n",
		       PERF);
	return 0;
}

int vm_prof_start(struct vm_prof *p)
{
	const char *period = getenv("VM_BENCH_PERF_PERIOD");
	char ctl[64];

	p->pid = 0;
	p->ctl = p->ack = -1;
	unlink(CTL);
	unlink(ACK);
	if (mkfifo(CTL, 0600) < 0 || mkfifo(ACK, 0600) < 0) {
		printf("not-profiled: mkfifo: %s\n", strerror(errno));
		return -1;
	}
	snprintf(ctl, sizeof(ctl), "fifo:%s,%s", CTL, ACK);
	p->pid = fork();
	if (p->pid == 0) {
		/* -D -1: events off until "enable"; -B: no build-id pass at exit. */
		execl(PERF, "perf", "record", "-q", "-a", "-B", "-e", "cpu-clock", "-c",
		      period ? period : "20000", "-D", "-1", "--control", ctl, "-o", DATA,
		      (char *)NULL);
		_exit(127);
	}
	if (p->pid < 0) {
		printf("not-profiled: fork: %s\n", strerror(errno));
		p->pid = 0;
		return -1;
	}
	/* Opening blocks until perf has opened its end: then it is set up. */
	p->ctl = open(CTL, O_WRONLY);
	p->ack = open(ACK, O_RDONLY);
	if (p->ctl < 0 || p->ack < 0) {
		printf("not-profiled: perf control fifos: %s\n", strerror(errno));
		vm_prof_report(p, NULL, NULL);
		return -1;
	}
	return 0;
}

void vm_prof_switch(struct vm_prof *p, int on)
{
	const char *cmd = on ? "enable" : "disable";
	char ack[16];

	if (!p->pid)
		return;
	if (write(p->ctl, cmd, strlen(cmd)) != (ssize_t)strlen(cmd) || read(p->ack, ack, sizeof(ack)) <= 0)
		printf("profile: perf did not acknowledge \"%s\"\n", cmd);
}

/* Run a perf report and print its lines as "profile LABEL LINE". */
static void report(const char *label, const char *args)
{
	char cmd[512], line[512];
	FILE *f;

	snprintf(cmd, sizeof(cmd), PERF " report -i " DATA " --stdio -q --no-children %s 2>&1", args);
	if (!(f = popen(cmd, "r")))
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (line[strspn(line, " ")])
			printf("profile %s %s\n", label, line + strspn(line, " "));
	}
	pclose(f);
}

void vm_prof_report(struct vm_prof *p, const char *label, const char *tasks)
{
	char args[256];

	if (!p->pid)
		return;
	if (p->ctl >= 0)
		close(p->ctl);
	if (p->ack >= 0)
		close(p->ack);
	kill(p->pid, SIGINT);
	waitpid(p->pid, NULL, 0);
	p->pid = 0;
	if (!label)
		return;
	report(label, "--sort comm --percent-limit 0.5");
	snprintf(args, sizeof(args),
		 "%s --percentage relative --sort dso,sym --percent-limit %s", tasks, SYMBOL_MIN);
	report(label, args);
	fflush(stdout);
}
