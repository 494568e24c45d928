/* engine.h - kts-server's io_uring engine, as the process loop sees it. The
 * threads engine lives in kts-server.c (the reference); both serve HTTP
 * through the same tools (fsroot, http), the uring engine by way of httpsess. */
#ifndef KTS_TOOLS_ENGINE_H
#define KTS_TOOLS_ENGINE_H

struct server;

/* Rings to run by default: the CPUs this process may use (sched_getaffinity). */
int engine_default_threads(void);

/* Serve lfd with srv->threads rings until SIGINT/SIGTERM arrives on sfd (read
 * by server_loop in this thread), then stop gracefully within STOP_GRACE_MS +
 * STOP_CUT_MS. Closes lfd. Returns the exit status. */
int engine_uring_serve(struct server *srv, int lfd, int sfd);

#endif
