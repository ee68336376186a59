// SPDX-License-Identifier: MIT
/*
 * Unit tests of connection steering: the program (bpf/steer.bpf.c), loaded
 * for real with `tools/ringsteer load` under a bpffs directory private to
 * this run, and the shim's side (preload/steer.c), called directly.
 *
 * Each test listens on 127.0.0.1 as an application would, gives every
 * "lane" its own listener the way the shim does (rs_steer_slot_claim,
 * rs_steer_listener_open), makes real connections, and accepts each one on
 * whichever listener it was steered to, so the counts are what a client
 * would see.  The lanes publish their open counts after every accept, as
 * the shim's lanes do; the single test thread plays every lane, so each
 * placement sees the previous ones and the expected spread is exact where
 * the policy is deterministic.  A connection on the application's own
 * listener (which no lane accepts on) fails the test.
 *
 * The run has its own mount namespace (a bpffs of its own, so nothing it
 * pins outlives it) and network namespace (its sysctl and ports are its
 * own).  Needs root and BPF.  Skips (77) only when the kernel lacks sk_reuseport
 * programs or REUSEPORT_SOCKARRAY; any other load failure fails.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ringsteer.h"
#include "../bpf/steer.h"

#define LANES 4
#define MAX_HELD 1200
#define ACCEPT_TIMEOUT_MS 10000
#define BACKLOG 511

/* One application listener and its lanes' listeners. */
struct server {
	int application;
	struct sockaddr_storage address;
	socklen_t address_length;
	int lane_count;
	struct rs_steer_listener lanes[LANES];
	int slots[LANES];
};

/* Connections a test holds open, per lane, and their clients. */
struct held {
	int server[MAX_HELD];
	int client[MAX_HELD];
	int lane_of[MAX_HELD];
	int count;
	unsigned open[LANES];  /* what each lane publishes */
	unsigned busy[LANES];
};

static char bpf_dir[128];
static const char *tool;
static int slots[LANES];
static struct held held;
static struct server servers[2];
static int server_count;
static char saved_migrate_req[16];

/* ---- helpers -------------------------------------------------------------------- */

static int run_tool(const char *format, ...)
{
	char arguments[256], command[512];
	va_list ap;
	int status;

	va_start(ap, format);
	vsnprintf(arguments, sizeof(arguments), format, ap);
	va_end(ap);
	snprintf(command, sizeof(command), "%s %s --dir %s >/dev/null", tool, arguments, bpf_dir);
	status = system(command);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void configure(const char *policy, unsigned stall_ms, unsigned cap)
{
	int status = run_tool("load --policy %s --stall-ms %u --max-conns-per-lane %u", policy,
			      stall_ms, cap);

	if (status != 0)
		fail_msg("ringsteer load --policy %s failed (status %d)", policy, status);
}

static void publish_all(void)
{
	for (int lane = 0; lane < LANES; lane++)
		rs_steer_publish((unsigned)slots[lane], held.open[lane], held.busy[lane]);
}

static unsigned port_of(const struct server *server)
{
	if (server->address.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&server->address)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&server->address)->sin_port);
}

/* Listens on address (a fresh port) as the application does, then opens
 * a listener for each of the given lanes. */
static struct server *open_server_on(const char *address, int lane_count, const int *lanes)
{
	struct server *server;
	socklen_t length;
	int off = 0;

	assert_true(server_count < 2);
	server = &servers[server_count++];
	memset(server, 0, sizeof(*server));
	if (strchr(address, ':')) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&server->address;

		in6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, address, &in6->sin6_addr), 1);
		length = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&server->address;

		in->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, address, &in->sin_addr), 1);
		length = sizeof(*in);
	}
	server->address_length = length;
	server->application = REAL(socket)(server->address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(server->application >= 0);
	/* A dual-stack listener, as servers listening on [::] usually are. */
	if (server->address.ss_family == AF_INET6)
		assert_int_equal(REAL(setsockopt)(server->application, IPPROTO_IPV6, IPV6_V6ONLY, &off,
						  sizeof(off)), 0);
	assert_int_equal(rs_steer_prepare_bind(server->application,
					       (struct sockaddr *)&server->address, length), 0);
	assert_int_equal(REAL(bind)(server->application, (struct sockaddr *)&server->address, length), 0);
	assert_int_equal(REAL(listen)(server->application, BACKLOG), 0);
	assert_int_equal(getsockname(server->application, (struct sockaddr *)&server->address, &length), 0);
	for (int i = 0; i < LANES; i++)
		server->lanes[i].fd = -1;
	for (int i = 0; i < lane_count; i++) {
		int lane = lanes ? lanes[i] : i;
		int fd = rs_steer_listener_open(server->application, (unsigned)slots[lane],
						&server->lanes[lane]);

		if (fd < 0)
			fail_msg("rs_steer_listener_open(slot %d): %s", slots[lane], strerror(-fd));
		if (rs_steer_loaded())
			assert_true(server->lanes[lane].group < RS_STEER_MAX_GROUPS);
	}
	server->lane_count = lane_count;
	return server;
}

static struct server *open_server(int lane_count, const int *lanes)
{
	return open_server_on("127.0.0.1", lane_count, lanes);
}

static void add_lane(struct server *server, int lane)
{
	assert_true(rs_steer_listener_open(server->application, (unsigned)slots[lane],
					   &server->lanes[lane]) >= 0);
}

/* Connects to the server's address, or to 127.0.0.1 on its port for a
 * listener on [::] (an IPv4 client of a dual-stack listener). */
static int connect_client(const struct server *server)
{
	struct sockaddr_storage target = server->address;
	socklen_t length = server->address_length;
	int client;

	if (target.ss_family == AF_INET6 &&
	    IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&target)->sin6_addr)) {
		struct sockaddr_in *in = (struct sockaddr_in *)&target;

		memset(&target, 0, sizeof(target));
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port_of(server));
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		length = sizeof(*in);
	}
	client = REAL(socket)(target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(client >= 0);
	if (REAL(connect)(client, (const struct sockaddr *)&target, length) < 0)
		fail_msg("connect to port %u: %s", port_of(server), strerror(errno));
	return client;
}

/* Accepts the next connection on whichever of the server's listeners has
 * it; returns its lane and the accepted fd in *accepted.  A connection on
 * the application's own listener fails the test. */
static int accept_next(const struct server *server, int *accepted)
{
	struct pollfd fds[LANES + 1];
	int lanes[LANES + 1], count = 0;

	for (int lane = 0; lane < LANES; lane++) {
		if (server->lanes[lane].fd < 0)
			continue;
		fds[count].fd = server->lanes[lane].fd;
		fds[count].events = POLLIN;
		lanes[count++] = lane;
	}
	fds[count].fd = server->application;
	fds[count].events = POLLIN;
	lanes[count++] = -1;
	if (REAL(poll)(fds, (nfds_t)count, ACCEPT_TIMEOUT_MS) <= 0)
		fail_msg("no connection arrived on any listener within %d ms", ACCEPT_TIMEOUT_MS);
	for (int i = 0; i < count; i++) {
		if (!(fds[i].revents & POLLIN))
			continue;
		if (lanes[i] < 0 && rs_steer_loaded())
			fail_msg("a connection reached the application's listener, which no lane accepts on");
		*accepted = REAL(accept4)(fds[i].fd, NULL, NULL, SOCK_CLOEXEC);
		assert_true(*accepted >= 0);
		if (lanes[i] >= 0)
			rs_steer_accepted(&server->lanes[lanes[i]]);
		return lanes[i];
	}
	fail_msg("poll returned without a readable listener");
	return -1;
}

/* One connection, accepted and held open; the lanes publish.  Returns its
 * lane (-1: the application's listener, only without the program). */
static int connect_and_hold(const struct server *server)
{
	int client = connect_client(server), accepted, lane;

	lane = accept_next(server, &accepted);
	assert_true(held.count < MAX_HELD);
	held.server[held.count] = accepted;
	held.client[held.count] = client;
	held.lane_of[held.count] = lane;
	held.count++;
	if (lane >= 0)
		held.open[lane]++;
	publish_all();
	return lane;
}

static void count_lanes(const struct server *server, int connections, unsigned *counts)
{
	memset(counts, 0, sizeof(unsigned) * LANES);
	for (int i = 0; i < connections; i++) {
		int lane = connect_and_hold(server);

		assert_true(lane >= 0);
		counts[lane]++;
	}
}

static void close_held(void)
{
	for (int i = 0; i < held.count; i++) {
		REAL(close)(held.server[i]);
		REAL(close)(held.client[i]);
	}
	memset(&held, 0, sizeof(held));
}

static void write_file(const char *path, const char *text)
{
	FILE *file = fopen(path, "w");

	if (file) {
		fputs(text, file);
		fclose(file);
	}
}

/* ---- setup ------------------------------------------------------------------------ */

/* Whether the kernel has what the program needs at all: a sockarray. */
static bool kernel_has_sockarray(void)
{
	union bpf_attr attributes;
	long fd;

	memset(&attributes, 0, sizeof(attributes));
	attributes.map_type = BPF_MAP_TYPE_REUSEPORT_SOCKARRAY;
	attributes.key_size = 4;
	attributes.value_size = 8;
	attributes.max_entries = 1;
	fd = syscall(__NR_bpf, BPF_MAP_CREATE, &attributes, sizeof(attributes));
	if (fd < 0)
		return errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS;
	close((int)fd);
	return true;
}

/* A new network namespace starts with lo down. */
static int bring_loopback_up(void)
{
	struct ifreq request;
	int fd = REAL(socket)(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), result = -1;

	if (fd < 0)
		return -1;
	memset(&request, 0, sizeof(request));
	snprintf(request.ifr_name, sizeof(request.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &request) == 0) {
		request.ifr_flags |= IFF_UP;
		if (ioctl(fd, SIOCSIFFLAGS, &request) == 0)
			result = 0;
	}
	REAL(close)(fd);
	return result;
}

static int group_setup(void **state)
{
	struct rlimit files;
	int status;

	alarm(280);
	rs_init();
	if (geteuid() != 0) {
		printf("SKIP: the steering tests load a BPF program and need root\n");
		fflush(stdout);
		exit(77);
	}
	if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < 4 * MAX_HELD) {
		files.rlim_cur = files.rlim_max < 4 * MAX_HELD ? files.rlim_max : 4 * MAX_HELD;
		setrlimit(RLIMIT_NOFILE, &files);
	}
	tool = getenv("RINGSTEER_TOOL");
	if (!tool || !*tool)
		tool = "tools/ringsteer";
	/* A bpffs of our own, in a mount namespace of our own, and a network
	 * namespace of our own: whatever this run pins, and the sysctl the
	 * migration test sets, vanish with it, even if it is killed, and no
	 * other test on the machine sees either. */
	if (unshare(CLONE_NEWNS | CLONE_NEWNET) < 0 || bring_loopback_up() < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") < 0) {
		print_message("cannot isolate the test in its own namespaces: %s\n", strerror(errno));
		return -1;
	}
	snprintf(bpf_dir, sizeof(bpf_dir), "/sys/fs/bpf/ringsteer-test-steer-%d", (int)getpid());
	status = run_tool("load --stall-ms 0");
	if (status != 0) {
		if (!kernel_has_sockarray()) {
			printf("SKIP: this kernel has no BPF_MAP_TYPE_REUSEPORT_SOCKARRAY: steering cannot work here\n");
			fflush(stdout);
			exit(77);
		}
		print_message("%s load --dir %s failed with status %d\n", tool, bpf_dir, status);
		return -1;
	}
	setenv("RINGSTEER_BPF_DIR", bpf_dir, 1);
	unsetenv("RINGSTEER_STEER");
	status = rs_steer_init();
	if (status != 0 || !rs_steer_loaded() || !rs_steer_wanted()) {
		print_message("rs_steer_init: %s\n", strerror(-status));
		return -1;
	}
	for (int lane = 0; lane < LANES; lane++) {
		slots[lane] = rs_steer_slot_claim((unsigned)lane, -1);
		if (slots[lane] < 0) {
			print_message("rs_steer_slot_claim: %s\n", strerror(-slots[lane]));
			return -1;
		}
	}
	return 0;
}

static int group_teardown(void **state)
{
	struct stat info;

	for (int lane = 0; lane < LANES; lane++)
		rs_steer_slot_release((unsigned)slots[lane]);
	rs_steer_shutdown();
	if (run_tool("unload") != 0 || stat(bpf_dir, &info) == 0) {
		print_message("ringsteer unload left %s behind\n", bpf_dir);
		return -1;
	}
	return 0;
}

static int setup(void **state)
{
	memset(&held, 0, sizeof(held));
	server_count = 0;
	publish_all();
	return 0;
}

static int teardown(void **state)
{
	close_held();
	for (int s = 0; s < server_count; s++) {
		for (int lane = 0; lane < LANES; lane++)
			rs_steer_listener_close(&servers[s].lanes[lane]);
		REAL(close)(servers[s].application);
	}
	server_count = 0;
	return 0;
}

/* ---- tests ------------------------------------------------------------------------ */

/* BPF descriptors of this process; fails on one without FD_CLOEXEC. */
static int count_bpf_descriptors(void)
{
	DIR *fds = opendir("/proc/self/fd");
	struct dirent *entry;
	int count = 0;

	assert_non_null(fds);
	while ((entry = readdir(fds))) {
		char path[64], target[64];
		ssize_t length;
		int fd = atoi(entry->d_name);

		if (entry->d_name[0] == '.' || fd == dirfd(fds))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		length = readlink(path, target, sizeof(target) - 1);
		if (length <= 0)
			continue;
		target[length] = 0;
		if (strncmp(target, "anon_inode:bpf-", 15))
			continue;
		if (!(fcntl(fd, F_GETFD) & FD_CLOEXEC))
			fail_msg("descriptor %d (%s) is not close-on-exec", fd, target);
		count++;
	}
	closedir(fds);
	return count;
}

/* The shim's descriptors must not leak into programs the server runs. */
static void test_listener_is_close_on_exec_and_shares_the_address(void **state)
{
	struct server *server;
	int reuseport = 0;
	socklen_t length = sizeof(reuseport);

	configure("least-loaded", 0, 0);
	server = open_server(1, NULL);
	assert_true(fcntl(server->lanes[0].fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(getsockopt(server->application, SOL_SOCKET, SO_REUSEPORT, &reuseport, &length), 0);
	assert_int_equal(reuseport, 1);
	assert_int_equal(server->lanes[0].slot, (unsigned)slots[0]);
	/* the shim's own map and program descriptors too */
	assert_true(count_bpf_descriptors() >= 4);
}

/* busy_weight 2: a fully busy lane counts as two more connections.  Lane
 * 0 (busy 1000 per mille) is chosen only once the others hold two more
 * (ties go to the lowest slot): 30 connections give 6, 8, 8, 8. */
static void test_busy_lane_counts_as_more_connections(void **state)
{
	struct server *server;
	unsigned counts[LANES];

	assert_int_equal(run_tool("load --policy least-loaded --stall-ms 0 --busy-weight 2"), 0);
	server = open_server(LANES, NULL);
	held.busy[0] = 1000;
	publish_all();
	count_lanes(server, 30, counts);
	print_message("lane 0 busy: %u %u %u %u\n", counts[0], counts[1], counts[2], counts[3]);
	assert_int_equal(counts[0], 6);
	for (int lane = 1; lane < LANES; lane++)
		assert_int_equal(counts[lane], 8);
}

static void read_status(const struct server *server, unsigned long long *steered, unsigned *pending)
{
	char command[512], line[128];
	FILE *output;

	memset(steered, 0, sizeof(*steered) * LANES);
	memset(pending, 0, sizeof(*pending) * LANES);
	snprintf(command, sizeof(command),
		 "%s status --json --dir %s | jq -r '.groups[] | select(.address == \"127.0.0.1:%u\") | "
		 ".slots[] | \"\\(.slot) \\(.steered) \\(.pending)\"'",
		 tool, bpf_dir, port_of(server));
	output = popen(command, "r");
	assert_non_null(output);
	while (fgets(line, sizeof(line), output)) {
		unsigned slot, pending_here;
		unsigned long long steered_here;

		if (sscanf(line, "%u %llu %u", &slot, &steered_here, &pending_here) != 3)
			continue;
		for (int lane = 0; lane < LANES; lane++) {
			if ((unsigned)slots[lane] == slot) {
				steered[lane] = steered_here;
				pending[lane] = pending_here;
			}
		}
	}
	assert_int_equal(pclose(output), 0);
}

static void test_equal_connections_spread_evenly(void **state)
{
	struct server *server;
	unsigned counts[LANES], maximum = 0, total = 0;
	unsigned long long steered[LANES];
	unsigned pending[LANES];

	configure("least-loaded", 0, 0);
	server = open_server(LANES, NULL);
	count_lanes(server, 1000, counts);
	for (int lane = 0; lane < LANES; lane++) {
		total += counts[lane];
		if (counts[lane] > maximum)
			maximum = counts[lane];
	}
	print_message("1000 connections over %d lanes: %u %u %u %u\n", LANES, counts[0], counts[1],
		      counts[2], counts[3]);
	assert_int_equal(total, 1000);
	/* max/mean <= 1.05 */
	assert_true(maximum * LANES * 100 <= total * 105);
	/* `ringsteer status` counted what the clients saw. */
	read_status(server, steered, pending);
	for (int lane = 0; lane < LANES; lane++) {
		assert_int_equal(steered[lane], counts[lane]);
		assert_int_equal(pending[lane], 0);
	}
}

static void test_held_connections_send_new_ones_elsewhere(void **state)
{
	int only_first[] = { 0 };
	struct server *server;
	unsigned counts[LANES];

	configure("least-loaded", 0, 0);
	server = open_server(1, only_first);
	count_lanes(server, 200, counts);
	assert_int_equal(counts[0], 200);
	for (int lane = 1; lane < LANES; lane++)
		add_lane(server, lane);
	count_lanes(server, 200, counts);
	print_message("after 200 held by lane 0: %u %u %u %u\n", counts[0], counts[1], counts[2],
		      counts[3]);
	assert_int_equal(counts[0], 0);
	for (int lane = 1; lane < LANES; lane++)
		assert_true(counts[lane] >= 66 && counts[lane] <= 67);
}

static void test_stalled_lane_gets_nothing_while_stalled(void **state)
{
	const int stalled = 2;
	struct server *server;
	unsigned counts[LANES] = { 0 };

	/* Only stall_ms matters, not how fast anything runs: the stalled
	 * lane's heartbeat is left alone for longer than that, the others
	 * refresh theirs before every connection. */
	configure("least-loaded", 3000, 0);
	server = open_server(LANES, NULL);
	rs_steer_publish((unsigned)slots[stalled], 0, 0);
	sleep(4);
	for (int i = 0; i < 100; i++) {
		int lane;

		for (int other = 0; other < LANES; other++)
			if (other != stalled)
				rs_steer_publish((unsigned)slots[other], held.open[other], 0);
		lane = connect_client(server);
		held.client[held.count] = lane;
		lane = accept_next(server, &held.server[held.count]);
		held.lane_of[held.count++] = lane;
		assert_true(lane >= 0);
		held.open[lane]++;
		counts[lane]++;
	}
	print_message("lane %d stalled: %u %u %u %u\n", stalled, counts[0], counts[1], counts[2],
		      counts[3]);
	assert_int_equal(counts[stalled], 0);
	/* Back in its loop, it is the least loaded again. */
	count_lanes(server, 40, counts);
	assert_true(counts[stalled] >= 30);
}

static void test_cap_per_lane_holds(void **state)
{
	int only_first[] = { 0 };
	struct server *server;
	unsigned counts[LANES];

	configure("least-loaded", 0, 25);
	server = open_server(1, only_first);
	/* A single lane takes everything, beyond its cap: never refused. */
	count_lanes(server, 26, counts);
	assert_int_equal(counts[0], 26);
	for (int lane = 1; lane < LANES; lane++)
		add_lane(server, lane);
	count_lanes(server, 75, counts);
	assert_int_equal(counts[0], 0);
	for (int lane = 1; lane < LANES; lane++)
		assert_int_equal(counts[lane], 25);
	/* Everyone at the cap: still placed, on a live lane. */
	count_lanes(server, 4, counts);
	assert_int_equal(counts[0] + counts[1] + counts[2] + counts[3], 4);
}

static void test_cap_holds_under_hashing(void **state)
{
	struct server *server;
	unsigned counts[LANES];

	configure("hash", 0, 30);
	server = open_server(LANES, NULL);
	count_lanes(server, 110, counts);
	for (int lane = 0; lane < LANES; lane++)
		assert_true(counts[lane] <= 30);
}

static void test_round_robin_is_exact(void **state)
{
	struct server *server;
	unsigned counts[LANES] = { 0 };
	int previous = -1;

	configure("round-robin", 0, 0);
	server = open_server(LANES, NULL);
	/* Load does not matter to round robin. */
	held.open[0] = 1000;
	publish_all();
	for (int i = 0; i < 400; i++) {
		int lane = connect_and_hold(server);

		assert_true(lane >= 0);
		/* slots were claimed in lane order, so slot order is lane order */
		if (previous >= 0)
			assert_int_equal(lane, (previous + 1) % LANES);
		previous = lane;
		counts[lane]++;
	}
	for (int lane = 0; lane < LANES; lane++)
		assert_int_equal(counts[lane], 100);
}

static void test_hash_ignores_load(void **state)
{
	struct server *server;
	unsigned counts[LANES] = { 0 };

	configure("hash", 0, 0);
	server = open_server(LANES, NULL);
	for (int i = 0; i < 400; i++) {
		int client = connect_client(server), accepted, lane;

		held.open[0] = 1000; /* lane 0 looks very loaded, but hashing does not look */
		lane = accept_next(server, &accepted);
		assert_true(lane >= 0);
		counts[lane]++;
		REAL(close)(accepted);
		REAL(close)(client);
		publish_all();
	}
	print_message("hash, 400 connections: %u %u %u %u\n", counts[0], counts[1], counts[2], counts[3]);
	/* 100 expected each; 50..150 is more than 5 standard deviations. */
	for (int lane = 0; lane < LANES; lane++)
		assert_true(counts[lane] >= 50 && counts[lane] <= 150);
}

static void test_p2c_avoids_the_loaded_lane(void **state)
{
	struct server *server;
	unsigned counts[LANES], maximum = 0, minimum = ~0u;

	configure("p2c", 0, 0);
	server = open_server(LANES, NULL);
	held.open[0] = 1000;
	publish_all();
	count_lanes(server, 300, counts);
	print_message("p2c with lane 0 loaded: %u %u %u %u\n", counts[0], counts[1], counts[2],
		      counts[3]);
	/* Two distinct candidates: lane 0 always loses the comparison. */
	assert_int_equal(counts[0], 0);
	for (int lane = 1; lane < LANES; lane++) {
		if (counts[lane] > maximum)
			maximum = counts[lane];
		if (counts[lane] < minimum)
			minimum = counts[lane];
	}
	/* The lower of two choices keeps them within a few of each other. */
	assert_true(maximum - minimum <= 10);
}

static void test_two_ports_are_steered_independently(void **state)
{
	int first_lanes[] = { 0, 1 }, second_lanes[] = { 2, 3 };
	struct server *first, *second;
	unsigned first_counts[LANES] = { 0 }, second_counts[LANES] = { 0 };
	int first_previous = -1, second_previous = -1;

	/* Disjoint lanes: each port's connections stay on its own group. */
	configure("least-loaded", 0, 0);
	first = open_server(2, first_lanes);
	second = open_server(2, second_lanes);
	for (int i = 0; i < 100; i++) {
		first_counts[connect_and_hold(first)]++;
		second_counts[connect_and_hold(second)]++;
	}
	assert_int_equal(first_counts[0], 50);
	assert_int_equal(first_counts[1], 50);
	assert_int_equal(second_counts[2], 50);
	assert_int_equal(second_counts[3], 50);
	teardown(state);

	/* Same lanes, round robin: each port keeps its own turn. */
	configure("round-robin", 0, 0);
	first = open_server(LANES, NULL);
	second = open_server(LANES, NULL);
	for (int i = 0; i < 100; i++) {
		int lane = connect_and_hold(first);

		if (first_previous >= 0)
			assert_int_equal(lane, (first_previous + 1) % LANES);
		first_previous = lane;
		lane = connect_and_hold(second);
		if (second_previous >= 0)
			assert_int_equal(lane, (second_previous + 1) % LANES);
		second_previous = lane;
	}
}

/* The group of an IPv6 address, and of a dual-stack listener on [::] that
 * IPv4 clients reach: round robin shows each is steered as one group. */
static void test_ipv6_listeners_are_steered(void **state)
{
	const char *addresses[] = { "::1", "::" };

	configure("round-robin", 0, 0);
	for (int a = 0; a < 2; a++) {
		struct server *server = open_server_on(addresses[a], LANES, NULL);
		unsigned counts[LANES] = { 0 };
		int previous = -1;

		for (int i = 0; i < 40; i++) {
			int lane = connect_and_hold(server);

			assert_true(lane >= 0);
			if (previous >= 0)
				assert_int_equal(lane, (previous + 1) % LANES);
			previous = lane;
			counts[lane]++;
		}
		for (int lane = 0; lane < LANES; lane++)
			assert_int_equal(counts[lane], 10);
		teardown(state);
	}
}

static void test_closing_listener_moves_its_queue(void **state)
{
	const int closing = 1, connections = 40;
	struct server *server;
	struct tcp_info info;
	socklen_t length = sizeof(info);
	bool seen[40] = { false };
	int clients[40], accepted_count = 0;

	configure("least-loaded", 0, 0);
	server = open_server(LANES, NULL);
	/* Nobody accepts yet: the program's pending counts spread them. */
	for (int i = 0; i < connections; i++) {
		clients[i] = connect_client(server);
		assert_int_equal(write(clients[i], &i, sizeof(i)), (ssize_t)sizeof(i));
	}
	memset(&info, 0, sizeof(info));
	assert_int_equal(getsockopt(server->lanes[closing].fd, IPPROTO_TCP, TCP_INFO, &info, &length), 0);
	print_message("%u connections queued on the closing listener\n", info.tcpi_unacked);
	assert_int_equal(info.tcpi_unacked, connections / LANES);
	rs_steer_listener_close(&server->lanes[closing]);
	while (accepted_count < connections) {
		int accepted, index = -1, lane;

		lane = accept_next(server, &accepted);
		assert_true(lane >= 0 && lane != closing);
		assert_int_equal(read(accepted, &index, sizeof(index)), (ssize_t)sizeof(index));
		assert_true(index >= 0 && index < connections && !seen[index]);
		seen[index] = true;
		/* and the connection still works both ways */
		assert_int_equal(write(accepted, "k", 1), 1);
		held.server[held.count] = accepted;
		held.client[held.count++] = clients[index];
		accepted_count++;
	}
	for (int i = 0; i < held.count; i++) {
		char byte = 0;

		assert_int_equal(read(held.client[i], &byte, 1), 1);
		assert_int_equal(byte, 'k');
	}
}

static void test_without_the_program_lanes_still_listen(void **state)
{
	struct server *server;
	int reuseport = 0, lanes_used = 0;
	socklen_t length = sizeof(reuseport);
	bool used[LANES + 1] = { false };

	rs_steer_shutdown();
	setenv("RINGSTEER_BPF_DIR", "/nonexistent/ringsteer", 1);
	/* Nothing loaded, default mode: nothing changes for the application. */
	assert_int_equal(rs_steer_init(), -ENOENT);
	assert_false(rs_steer_wanted());
	server = open_server(0, NULL);
	assert_int_equal(getsockopt(server->application, SOL_SOCKET, SO_REUSEPORT, &reuseport, &length), 0);
	assert_int_equal(reuseport, 0);
	teardown(state);

	/* RINGSTEER_STEER=1 where the kernel does not migrate requests: a
	 * lane's listener that closed would reset its queue, so the
	 * application's listener stays as it is. */
	write_file("/proc/sys/net/ipv4/tcp_migrate_req", "0\n");
	setenv("RINGSTEER_STEER", "1", 1);
	assert_int_equal(rs_steer_init(), -ENOENT);
	assert_false(rs_steer_wanted());
	server = open_server(0, NULL);
	length = sizeof(reuseport);
	assert_int_equal(getsockopt(server->application, SOL_SOCKET, SO_REUSEPORT, &reuseport, &length), 0);
	assert_int_equal(reuseport, 0);
	teardown(state);

	/* RINGSTEER_STEER=1 with migration: lanes get listeners anyway,
	 * kernel hashing over them and the application's; every connection
	 * is still accepted. */
	write_file("/proc/sys/net/ipv4/tcp_migrate_req", "1\n");
	assert_int_equal(rs_steer_init(), -ENOENT);
	assert_true(rs_steer_wanted());
	assert_false(rs_steer_loaded());
	server = open_server(LANES, NULL);
	for (int lane = 0; lane < LANES; lane++)
		assert_int_equal(server->lanes[lane].group, RS_STEER_MAX_GROUPS);
	for (int i = 0; i < 100; i++) {
		int lane = connect_and_hold(server);

		used[lane + 1] = true;
	}
	for (int i = 0; i <= LANES; i++)
		lanes_used += used[i];
	assert_true(lanes_used >= 2);

	teardown(state);

	/* Without the privilege to open the pinned maps (a process started
	 * as another user): one warning, and lanes still get listeners. */
	unsetenv("RINGSTEER_STEER");
	setenv("RINGSTEER_BPF_DIR", bpf_dir, 1);
	{
		int pipe_fds[2], report[3] = { 0, 0, 0 }, status;
		pid_t child;

		assert_int_equal(pipe(pipe_fds), 0);
		child = fork();
		assert_true(child >= 0);
		if (child == 0) {
			rs_steer_shutdown();
			if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
				_exit(1);
			report[0] = rs_steer_init();
			report[1] = rs_steer_wanted() && !rs_steer_loaded();
			server = open_server(1, NULL);
			report[2] = server->lanes[0].fd >= 0 && server->lanes[0].group == RS_STEER_MAX_GROUPS;
			(void)!write(pipe_fds[1], report, sizeof(report));
			_exit(0);
		}
		assert_int_equal(read(pipe_fds[0], report, sizeof(report)), (ssize_t)sizeof(report));
		assert_int_equal(waitpid(child, &status, 0), child);
		REAL(close)(pipe_fds[0]);
		REAL(close)(pipe_fds[1]);
		assert_int_equal(report[0], -EACCES);
		assert_true(report[1]);
		assert_true(report[2]);
	}
	assert_int_equal(rs_steer_init(), 0);
}

/* Slots are system-wide: another process gets other slots, and a dead
 * process's slots are taken over. */
static void test_slots_are_per_process(void **state)
{
	int pipe_fds[2], child_slot = -1, status;
	pid_t child;

	assert_int_equal(pipe(pipe_fds), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		int slot = rs_steer_slot_claim(0, -1);

		(void)!write(pipe_fds[1], &slot, sizeof(slot));
		_exit(0);
	}
	assert_int_equal(read(pipe_fds[0], &child_slot, sizeof(child_slot)), (ssize_t)sizeof(child_slot));
	assert_int_equal(waitpid(child, &status, 0), child);
	REAL(close)(pipe_fds[0]);
	REAL(close)(pipe_fds[1]);
	assert_true(child_slot >= 0);
	for (int lane = 0; lane < LANES; lane++)
		assert_int_not_equal(child_slot, slots[lane]);
	/* The child is gone without releasing: its slot is free again. */
	assert_int_equal(rs_steer_slot_claim(9, -1), child_slot);
	rs_steer_slot_release((unsigned)child_slot);
}

/* A worker that drops root after fork (nginx) still claims a slot and
 * publishes through the maps its parent opened as root.  It cannot open a
 * listener in the root-owned group any more (the kernel's rule), but it
 * can register one opened before it dropped root, and then gets the
 * connections. */
static void test_worker_that_dropped_root_still_steers(void **state)
{
	struct rs_steer_listener spare;
	struct server *server;
	struct rs_steer_slot published;
	union bpf_attr attributes;
	char path[256];
	int pipe_fds[2], report[4] = { -1, -1, -1, -1 }, status, map;
	uint32_t key;
	pid_t child;

	configure("least-loaded", 0, 0);
	server = open_server(0, NULL);
	assert_true(rs_steer_listener_open(server->application, RS_STEER_UNREGISTERED, &spare) >= 0);
	assert_int_equal(spare.group, RS_STEER_MAX_GROUPS);
	assert_int_equal(pipe(pipe_fds), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct rs_steer_listener listener;

		if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(1);
		report[0] = rs_steer_slot_claim(0, -1);
		if (report[0] < 0)
			_exit(2);
		rs_steer_publish((unsigned)report[0], 7, 500);
		report[1] = rs_steer_listener_open(server->application, (unsigned)report[0], &listener);
		report[2] = rs_steer_listener_register(&spare, (unsigned)report[0]);
		(void)!write(pipe_fds[1], report, 3 * sizeof(int));
		/* accept the parent's ten connections (or give up after 30 s),
		 * then say how many came */
		report[3] = 0;
		while (report[3] < 10) {
			struct pollfd listening = { spare.fd, POLLIN, 0 };
			int accepted;

			if (REAL(poll)(&listening, 1, 30000) <= 0)
				break;
			accepted = REAL(accept4)(spare.fd, NULL, NULL, SOCK_CLOEXEC);
			if (accepted < 0)
				break;
			rs_steer_accepted(&spare);
			report[3]++;
		}
		(void)!write(pipe_fds[1], &report[3], sizeof(int));
		_exit(0);
	}
	assert_int_equal(read(pipe_fds[0], report, 3 * sizeof(int)), (ssize_t)(3 * sizeof(int)));
	print_message("after setuid: slot %d, new lane listener %d (%s), registering one opened before: %d\n",
		      report[0], report[1], report[1] < 0 ? strerror(-report[1]) : "ok", report[2]);
	assert_true(report[0] >= 0);
	assert_int_equal(report[2], 0);
	/* its load, published with plain stores after setuid */
	snprintf(path, sizeof(path), "%s/%s", bpf_dir, RS_STEER_PIN_SLOTS);
	memset(&attributes, 0, sizeof(attributes));
	attributes.pathname = (uint64_t)(uintptr_t)path;
	map = (int)syscall(__NR_bpf, BPF_OBJ_GET, &attributes, sizeof(attributes));
	assert_true(map >= 0);
	key = (uint32_t)report[0];
	memset(&attributes, 0, sizeof(attributes));
	attributes.map_fd = (uint32_t)map;
	attributes.key = (uint64_t)(uintptr_t)&key;
	attributes.value = (uint64_t)(uintptr_t)&published;
	assert_int_equal(syscall(__NR_bpf, BPF_MAP_LOOKUP_ELEM, &attributes, sizeof(attributes)), 0);
	REAL(close)(map);
	assert_int_equal(published.owner_pid, (uint32_t)child);
	assert_int_equal(published.open, 7);
	assert_int_equal(published.busy, 500);
	assert_int_equal(published.alive, 1);
	/* every connection goes to the worker's registered listener */
	for (int i = 0; i < 10; i++) {
		struct pollfd application = { server->application, POLLIN, 0 };

		held.client[held.count] = connect_client(server);
		held.server[held.count++] = -1;
		assert_int_equal(REAL(poll)(&application, 1, 0), 0);
	}
	assert_int_equal(read(pipe_fds[0], &report[3], sizeof(int)), (ssize_t)sizeof(int));
	assert_int_equal(waitpid(child, &status, 0), child);
	REAL(close)(pipe_fds[0]);
	REAL(close)(pipe_fds[1]);
	rs_steer_listener_close(&spare);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(report[3], 10);
}

/* A process that died without closing its listener leaves a registration
 * behind: the program finds the listener gone, unregisters it, and places
 * the connection elsewhere. */
static void test_listener_of_a_dead_process_is_skipped(void **state)
{
	struct server *server;
	char command[512], answer[32] = "";
	int pipe_fds[2], child_slot = -1, status;
	unsigned counts[LANES];
	FILE *output;
	pid_t child;

	configure("least-loaded", 0, 0);
	server = open_server(LANES, NULL);
	for (int lane = 0; lane < LANES; lane++)
		held.open[lane] = 5;
	publish_all();
	assert_int_equal(pipe(pipe_fds), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct rs_steer_listener listener;
		int slot = rs_steer_slot_claim(0, -1);

		/* the least loaded of all, so the first one tried */
		if (slot >= 0)
			rs_steer_publish((unsigned)slot, 0, 0);
		if (slot >= 0 && rs_steer_listener_open(server->application, (unsigned)slot, &listener) < 0)
			slot = -1;
		(void)!write(pipe_fds[1], &slot, sizeof(slot));
		_exit(0);
	}
	assert_int_equal(read(pipe_fds[0], &child_slot, sizeof(child_slot)), (ssize_t)sizeof(child_slot));
	assert_int_equal(waitpid(child, &status, 0), child);
	REAL(close)(pipe_fds[0]);
	REAL(close)(pipe_fds[1]);
	assert_true(child_slot >= 0);
	count_lanes(server, 20, counts);
	assert_int_equal(counts[0] + counts[1] + counts[2] + counts[3], 20);
	snprintf(command, sizeof(command),
		 "%s status --json --dir %s | jq -r '.groups[] | select(.address == \"127.0.0.1:%u\") | "
		 "[.slots[] | select(.slot == %d and .listening)] | length'",
		 tool, bpf_dir, port_of(server), child_slot);
	output = popen(command, "r");
	assert_non_null(output);
	if (!fgets(answer, sizeof(answer), output))
		answer[0] = 0;
	assert_int_equal(pclose(output), 0);
	assert_string_equal(answer, "0\n");
	/* and the dead process's slot is free again */
	assert_int_equal(rs_steer_slot_claim(8, -1), child_slot);
	rs_steer_slot_release((unsigned)child_slot);
}

/* Pre-fork servers: a second process (root, as a master's children are
 * before they drop privileges) has a lane in the same group, accepts on
 * it and publishes; connections are balanced across both processes. */
static void test_two_processes_share_a_group(void **state)
{
	int only_first[] = { 0 }, accepted_pipe[2], quit_pipe[2], status;
	unsigned parent_count = 0, child_count = 0;
	struct server *server;
	pid_t child;

	configure("least-loaded", 0, 0);
	server = open_server(1, only_first);
	assert_int_equal(pipe(accepted_pipe), 0);
	assert_int_equal(pipe(quit_pipe), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct rs_steer_listener listener;
		int slot = rs_steer_slot_claim(0, -1), held_fds[200], open = 0;

		if (slot < 0 || rs_steer_listener_open(server->application, (unsigned)slot, &listener) < 0)
			_exit(1);
		rs_steer_publish((unsigned)slot, 0, 0);
		(void)!write(accepted_pipe[1], "r", 1);
		for (;;) {
			struct pollfd fds[2] = { { listener.fd, POLLIN, 0 }, { quit_pipe[0], POLLIN, 0 } };

			if (REAL(poll)(fds, 2, 30000) <= 0 || fds[1].revents)
				_exit(0);
			held_fds[open] = REAL(accept4)(listener.fd, NULL, NULL, SOCK_CLOEXEC);
			if (held_fds[open] < 0 || open >= 199)
				_exit(2);
			rs_steer_accepted(&listener);
			open++;
			rs_steer_publish((unsigned)slot, (unsigned)open, 0);
			(void)!write(accepted_pipe[1], "a", 1);
		}
	}
	{
		char ready = 0;

		assert_int_equal(read(accepted_pipe[0], &ready, 1), 1);
		assert_int_equal(ready, 'r');
	}
	for (int i = 0; i < 100; i++) {
		struct pollfd fds[3] = { { server->lanes[0].fd, POLLIN, 0 },
					 { accepted_pipe[0], POLLIN, 0 },
					 { server->application, POLLIN, 0 } };
		int client = connect_client(server);
		char byte;

		held.client[held.count] = client;
		held.server[held.count++] = -1;
		if (REAL(poll)(fds, 3, ACCEPT_TIMEOUT_MS) <= 0)
			fail_msg("connection %d reached neither process within %d ms", i, ACCEPT_TIMEOUT_MS);
		assert_int_equal(fds[2].revents, 0);
		if (fds[0].revents & POLLIN) {
			held.server[held.count - 1] = REAL(accept4)(server->lanes[0].fd, NULL, NULL, SOCK_CLOEXEC);
			assert_true(held.server[held.count - 1] >= 0);
			rs_steer_accepted(&server->lanes[0]);
			held.open[0]++;
			publish_all();
			parent_count++;
		} else {
			assert_int_equal(read(accepted_pipe[0], &byte, 1), 1);
			child_count++;
		}
	}
	(void)!write(quit_pipe[1], "q", 1);
	assert_int_equal(waitpid(child, &status, 0), child);
	for (int i = 0; i < 4; i++)
		REAL(close)(i < 2 ? accepted_pipe[i] : quit_pipe[i - 2]);
	print_message("two processes: %u and %u\n", parent_count, child_count);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(parent_count, 50);
	assert_int_equal(child_count, 50);
}

/* Addresses come and go (ephemeral ports, restarted servers): groups that
 * nobody listens on any more are reused, so steering never runs out. */
static void test_groups_of_closed_addresses_are_reused(void **state)
{
	const int addresses = RS_STEER_MAX_GROUPS + 16;

	configure("least-loaded", 0, 0);
	for (int i = 0; i < addresses; i++) {
		struct server *server = open_server(1, NULL);

		assert_true(server->lanes[0].group < RS_STEER_MAX_GROUPS);
		teardown(state);
	}
	/* and steering still works on a fresh one */
	configure("round-robin", 0, 0);
	{
		struct server *server = open_server(LANES, NULL);
		unsigned counts[LANES];

		count_lanes(server, 8, counts);
		for (int lane = 0; lane < LANES; lane++)
			assert_int_equal(counts[lane], 2);
	}
}

/* The migration test wants net.ipv4.tcp_migrate_req=1; restored after. */
static int migrate_setup(void **state)
{
	FILE *file = fopen("/proc/sys/net/ipv4/tcp_migrate_req", "r");

	saved_migrate_req[0] = 0;
	if (file) {
		if (!fgets(saved_migrate_req, sizeof(saved_migrate_req), file))
			saved_migrate_req[0] = 0;
		fclose(file);
	}
	write_file("/proc/sys/net/ipv4/tcp_migrate_req", "1\n");
	return setup(state);
}

static int migrate_teardown(void **state)
{
	if (saved_migrate_req[0])
		write_file("/proc/sys/net/ipv4/tcp_migrate_req", saved_migrate_req);
	return teardown(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_listener_is_close_on_exec_and_shares_the_address,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_equal_connections_spread_evenly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_lane_counts_as_more_connections, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_held_connections_send_new_ones_elsewhere, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stalled_lane_gets_nothing_while_stalled, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cap_per_lane_holds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cap_holds_under_hashing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_robin_is_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hash_ignores_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_p2c_avoids_the_loaded_lane, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_ports_are_steered_independently, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_ipv6_listeners_are_steered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_closing_listener_moves_its_queue, migrate_setup,
						migrate_teardown),
		cmocka_unit_test_setup_teardown(test_without_the_program_lanes_still_listen, migrate_setup,
						migrate_teardown),
		cmocka_unit_test_setup_teardown(test_slots_are_per_process, setup, teardown),
		cmocka_unit_test_setup_teardown(test_worker_that_dropped_root_still_steers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_listener_of_a_dead_process_is_skipped, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_groups_of_closed_addresses_are_reused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_two_processes_share_a_group, setup, teardown),
	};

	return cmocka_run_group_tests_name("steer", tests, group_setup, group_teardown);
}
