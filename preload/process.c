// SPDX-License-Identifier: MIT
/*
 * The shim's life in a process: start, fork and exit.
 *
 * Start reads the configuration, builds the fd table and publishes the
 * counters; if any of it fails, the shim stays out of the way (every call
 * takes the kernel path) and says so once.  fork gives the child fresh lanes
 * and its own counters; exit pushes queued bytes into the kernel.
 */
#include <stdlib.h>
#include <string.h>

#include "ringsteer.h"

RS_HIDDEN bool rs_active;
#define active rs_active

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
	rs_lanes_atfork_child();
	rs_sockets_atfork_child();
	rs_epoll_atfork_child();
	rs_stats_atfork_child();
}

static void at_exit(void)
{
	if (!active)
		return;
	rs_lanes_exit();
	rs_sockets_exit();
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
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	atexit(at_exit);
	active = true;
	rs_adopt_inherited();
	rs_config_describe(&rs_config, settings, sizeof(settings));
	rs_info("version %s started, settings: %s", RINGSTEER_VERSION, settings);
}
