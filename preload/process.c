// SPDX-License-Identifier: MIT
/*
 * The shim's life in a process: start, fork, exec and exit.
 *
 * Start reads the configuration, builds the fd table and publishes the
 * counters; if any of it fails, the shim stays out of the way (every call
 * takes the kernel path) and says so once.  fork gives the child fresh lanes
 * and its own counters; exec and exit push queued bytes into the kernel,
 * since the new image or nobody would send them.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ringsteer.h"

RS_HIDDEN bool rs_active;
#define active rs_active

/* The process the shim's state belongs to: a vfork child runs on it, with
 * another pid, and must leave it alone. */
static pid_t owner_pid;

static const char *lookup_environment(const char *name)
{
	return getenv(name);
}

static void report_config(int level, const char *line)
{
	rs_log(level, "%s", line);
}

static void atfork_prepare(void)
{
	if (active)
		rs_lanes_atfork_prepare();
}

static void atfork_parent(void)
{
	if (active)
		rs_lanes_atfork_parent();
}

static void atfork_child(void)
{
	if (!active)
		return;
	owner_pid = getpid();
	rs_lanes_atfork_child();
	rs_sockets_atfork_child();
	rs_epoll_atfork_child();
	rs_stats_atfork_child();
}

/* The calling thread's lane settles what it submitted, and every socket's
 * queue goes into the kernel (for at most a second). */
static void send_everything_queued(enum rs_process_end end)
{
	struct rs_lane *lane = rs_current_lane;

	if (lane) {
		/* A send's completion must be reaped before the socket's next
		 * bytes can go; a few rounds settle what completes at once. */
		rs_lane_enter(lane);
		for (int round = 0; round < 8 && (lane->dirty_count || lane->sends_in_flight);
		     round++) {
			rs_lane_submit(lane);
			rs_lane_reap_now(lane);
		}
		rs_lane_leave(lane);
	}
	rs_sockets_exit(end);
}

/* What the process queued must leave before exec replaces the image that
 * holds it; bytes received ahead cannot go back (one line each says so).
 * If the exec fails, the process goes on, its queues simply emptier. */
static void before_exec(void)
{
	if (!active || getpid() != owner_pid)
		return;
	send_everything_queued(RS_END_EXEC);
	rs_stats_exec(false);
}

static void before_spawn(void)
{
	if (active && getpid() == owner_pid)
		send_everything_queued(RS_END_EXIT);
}

/* An exec that returned failed: the process goes on. */
static long after_exec(long result)
{
	if (active && getpid() == owner_pid)
		rs_stats_exec(true);
	return rs_kernel_result(result);
}

/* _exit and _Exit skip the exit handlers that send what is queued, and may
 * come from a signal handler: the sockets' queues go into the kernel with
 * nothing that could wait for a lock or the allocator. */
long rs__exit(int status)
{
	(void)status;
	if (active && getpid() == owner_pid)
		rs_sockets_exit(RS_END_EXIT_NOW);
	return 0;
}

long rs__Exit(int status)
{
	return rs__exit(status);
}

/* posix_spawn's child execs through the C library's internal call, on
 * the parent's memory: the parent's queues go first, so that what the new
 * program writes on an inherited socket comes after them.  Its result is
 * an error number, never negative, which the wrapper passes through. */

long rs_posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
		    const posix_spawnattr_t *attributes, char *const arguments[],
		    char *const environment[])
{
	before_spawn();
	return REAL(posix_spawn)(pid, path, actions, attributes, arguments, environment);
}

long rs_posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
		     const posix_spawnattr_t *attributes, char *const arguments[],
		     char *const environment[])
{
	before_spawn();
	return REAL(posix_spawnp)(pid, file, actions, attributes, arguments, environment);
}

long rs_execve(const char *path, char *const arguments[], char *const environment[])
{
	before_exec();
	return after_exec(REAL(execve)(path, arguments, environment));
}

long rs_execveat(int directory, const char *path, char *const arguments[],
		 char *const environment[], int flags)
{
	before_exec();
	return after_exec(REAL(execveat)(directory, path, arguments, environment, flags));
}

long rs_fexecve(int fd, char *const arguments[], char *const environment[])
{
	before_exec();
	return after_exec(REAL(fexecve)(fd, arguments, environment));
}

long rs_execv(const char *path, char *const arguments[])
{
	before_exec();
	return after_exec(REAL(execv)(path, arguments));
}

long rs_execvp(const char *file, char *const arguments[])
{
	before_exec();
	return after_exec(REAL(execvp)(file, arguments));
}

long rs_execvpe(const char *file, char *const arguments[], char *const environment[])
{
	before_exec();
	return after_exec(REAL(execvpe)(file, arguments, environment));
}

static void at_exit(void)
{
	if (!active)
		return;
	rs_lanes_exit();
	rs_sockets_exit(RS_END_EXIT);
	rs_stats_exit();
}

void rs_sock_init(void);

void rs_sock_init(void)
{
	char settings[512];
	int ret;

	rs_config_defaults(&rs_config);
	rs_config_load(&rs_config, lookup_environment, report_config);
	if (rs_config.disable) {
		rs_info("disabled by RINGSTEER_DISABLE: every call takes the kernel path");
		return;
	}
	ret = rs_fdtable_init();
	if (ret < 0) {
		rs_warn("cannot allocate the fd table (%s): every call takes the kernel path",
			strerror(-ret));
		return;
	}
	ret = rs_epoll_init();
	if (ret < 0)
		rs_warn("cannot allocate the epoll table (%s): epoll stays on the kernel path",
			strerror(-ret));
	rs_stats_init();
	ret = rs_steer_init();
	if (ret == 0)
		rs_info("connection steering: the program is loaded, each lane gets its own listener");
	else if (rs_steer_wanted())
		rs_info("connection steering without the program: lanes get their own listeners, the kernel hashes");
	owner_pid = getpid();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	atexit(at_exit);
	active = true;
	rs_adopt_inherited();
	rs_config_describe(&rs_config, settings, sizeof(settings));
	rs_info("version %s started, settings: %s", RINGSTEER_VERSION, settings);
}
