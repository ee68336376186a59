// SPDX-License-Identifier: MIT
/*
 * Verifying echo client.  Opens up to 1000 connections concurrently (one
 * thread, non-blocking sockets, epoll), sends each a reproducible
 * pseudo-random payload in writes of random sizes, reads the echo back in
 * reads of random sizes and checks every byte and the total.
 *
 *   echo_verify -p PORT [-6] [-c CONNECTIONS] [-n BYTES] [-s SEED] [options]
 *
 *   -c N            connections, 1..1000 (default 1)
 *   -C N            at most N connections open at once (default: all);
 *                   --sequential is -C 1
 *   -n BYTES        bytes each connection sends (default 1 MiB); suffixes
 *                   K, M, G (powers of 1024)
 *   --vary          each connection sends a seeded random size in 0..BYTES
 *   -s SEED         payload, sizes and splits derive from it (default 1)
 *   --max-write N   writes are 1..N bytes, log-uniform (default 65536)
 *   --max-read N    reads are 1..N bytes, log-uniform (default 65536)
 *   --half-close    shutdown(SHUT_WR) after sending; expect the echo, then
 *                   end of file
 *   --rst-after B   send B bytes, wait until half of them came back, then
 *                   reset the connection (SO_LINGER {1, 0} and close)
 *   --no-read       never read: send until everything is sent or nothing
 *                   moves for --stall-ms (default 1000), print `holding
 *                   ...`, hold the connections for --hold seconds (default
 *                   3), then close (reset with --rst-after)
 *   --burst B       pipelined request and answer: at most B bytes sent and
 *                   not yet echoed back, so the writes in flight (several
 *                   small requests with a small --max-write) wait for
 *                   their answers before the next burst (default: no limit)
 *   -t SECONDS      give up after this long (default 60)
 *   -v              one line per connection at the end, in order
 *
 * Prints `ok connections=N bytes=M` (or `ok rst ...`, `ok no-read ...`)
 * and exits 0; on any mismatch, early end of file, connection error or
 * timeout prints which connection and which offset and exits 1.  The output
 * of a successful run depends only on the options, never on timing (except
 * the byte counts of --no-read), so runs can be compared.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS   1000
#define MAX_CHUNK         (1u << 24)
#define CALLS_PER_EVENT   16

enum connection_state { STATE_IDLE, STATE_CONNECTING, STATE_OPEN, STATE_DONE };

struct connection {
	int fd;
	unsigned index;
	enum connection_state state;
	uint64_t payload_key;     /* selects this connection's byte stream */
	uint64_t send_target;     /* bytes to send */
	uint64_t sent;
	uint64_t received;
	uint64_t write_sizes;     /* generator state for write sizes */
	uint64_t read_sizes;      /* generator state for read sizes */
	uint32_t registered;      /* epoll events currently asked for */
	bool write_shut;
	bool end_of_file;
	bool reset;
};

struct options {
	int port;
	bool ipv6;
	unsigned connections;
	unsigned max_open;
	uint64_t bytes;
	bool vary;
	uint64_t seed;
	size_t max_write;
	size_t max_read;
	bool half_close;
	uint64_t rst_after;       /* 0: no reset */
	bool no_read;
	unsigned hold_seconds;
	unsigned stall_ms;
	uint64_t burst;           /* 0: no limit on bytes awaiting their echo */
	unsigned timeout_seconds;
	bool verbose;
};

static struct options options = {
	.connections = 1,
	.bytes = 1 << 20,
	.seed = 1,
	.max_write = 65536,
	.max_read = 65536,
	.hold_seconds = 3,
	.stall_ms = 1000,
	.timeout_seconds = 60,
};

static struct connection connections[MAX_CONNECTIONS];
static int epoll_fd;
static unsigned char *send_buffer, *receive_buffer, *expected_buffer;

__attribute__((format(printf, 1, 2), noreturn))
static void fail(const char *format, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "echo_verify: error: ");
	va_start(ap, format);
	vfprintf(stderr, format, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

/* ---- reproducible pseudo-random numbers --------------------------------- */

static uint64_t mix64(uint64_t value)
{
	value = (value ^ (value >> 30)) * 0xbf58476d1ce4e5b9ull;
	value = (value ^ (value >> 27)) * 0x94d049bb133111ebull;
	return value ^ (value >> 31);
}

static uint64_t next_random(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ull;
	return mix64(*state);
}

/* Sizes spread evenly over the orders of magnitude up to `maximum`, so tiny
 * and large calls are both common. */
static size_t choose_size(uint64_t *state, size_t maximum)
{
	uint64_t random = next_random(state);
	unsigned bits = 0;
	size_t range;

	while (bits < 63 && ((size_t)1 << bits) < maximum)
		bits++;
	range = (size_t)1 << (random % (bits + 1));
	if (range > maximum)
		range = maximum;
	return 1 + (size_t)((random >> 8) % range);
}

/* The payload is a function of (connection, offset), so what was sent can
 * be regenerated for checking without keeping it. */
static void fill_payload(const struct connection *connection, uint64_t offset,
			 unsigned char *buffer, size_t length)
{
	size_t done = 0;

	while (done < length) {
		uint64_t position = offset + done;
		uint64_t word = mix64(connection->payload_key + (position / 8) * 0x9e3779b97f4a7c15ull);

		for (unsigned byte = (unsigned)(position % 8); byte < 8 && done < length; byte++)
			buffer[done++] = (unsigned char)(word >> (8 * byte));
	}
}

/* ---- connections ------------------------------------------------------- */

static void set_interest(struct connection *connection, uint32_t events)
{
	struct epoll_event event = { .events = events, .data.ptr = connection };

	if (events == connection->registered)
		return;
	if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, connection->fd, &event) != 0)
		fail("epoll_ctl: %s", strerror(errno));
	connection->registered = events;
}

static void open_connection(struct connection *connection)
{
	struct sockaddr_storage address;
	socklen_t length;
	struct epoll_event event = { .events = EPOLLOUT, .data.ptr = connection };

	memset(&address, 0, sizeof(address));
	if (options.ipv6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&address;

		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_loopback;
		in6->sin6_port = htons((uint16_t)options.port);
		length = sizeof(*in6);
	} else {
		struct sockaddr_in *in4 = (struct sockaddr_in *)&address;

		in4->sin_family = AF_INET;
		in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		in4->sin_port = htons((uint16_t)options.port);
		length = sizeof(*in4);
	}
	connection->fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (connection->fd < 0)
		fail("connection %u: socket: %s", connection->index, strerror(errno));
	if (connect(connection->fd, (struct sockaddr *)&address, length) != 0 &&
	    errno != EINPROGRESS)
		fail("connection %u: connect: %s", connection->index, strerror(errno));
	if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, connection->fd, &event) != 0)
		fail("epoll_ctl: %s", strerror(errno));
	connection->registered = EPOLLOUT;
	connection->state = STATE_CONNECTING;
}

static void finish_connection(struct connection *connection, bool with_reset)
{
	if (with_reset) {
		struct linger linger = { .l_onoff = 1, .l_linger = 0 };

		if (setsockopt(connection->fd, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger)) != 0)
			fail("connection %u: setsockopt(SO_LINGER): %s", connection->index,
			     strerror(errno));
		connection->reset = true;
	}
	if (close(connection->fd) != 0)
		fail("connection %u: close: %s", connection->index, strerror(errno));
	connection->fd = -1;
	connection->state = STATE_DONE;
}

/* Bytes the server can have echoed so far. */
static uint64_t echo_limit(const struct connection *connection)
{
	return connection->sent;
}

static void check_received(struct connection *connection, const unsigned char *data, size_t length)
{
	if (connection->received + length > echo_limit(connection))
		fail("connection %u: received %" PRIu64 " bytes but only %" PRIu64 " were sent",
		     connection->index, connection->received + length, echo_limit(connection));
	fill_payload(connection, connection->received, expected_buffer, length);
	if (memcmp(data, expected_buffer, length) != 0) {
		size_t at = 0;

		while (data[at] == expected_buffer[at])
			at++;
		fail("connection %u: byte at offset %" PRIu64 " is 0x%02x, expected 0x%02x "
		     "(read of %zu bytes at offset %" PRIu64 ")",
		     connection->index, connection->received + at, data[at], expected_buffer[at],
		     length, connection->received);
	}
	connection->received += length;
}

static void receive_some(struct connection *connection)
{
	for (int calls = 0; calls < CALLS_PER_EVENT; calls++) {
		size_t size = choose_size(&connection->read_sizes, options.max_read);
		ssize_t received = recv(connection->fd, receive_buffer, size, 0);

		if (received < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			fail("connection %u: receive after %" PRIu64 " of %" PRIu64 " bytes: %s",
			     connection->index, connection->received, connection->send_target,
			     strerror(errno));
		}
		if (received == 0) {
			bool complete = connection->write_shut &&
					connection->received == connection->send_target;

			if (!complete)
				fail("connection %u: end of file after %" PRIu64 " of %" PRIu64
				     " bytes came back (%" PRIu64 " sent)", connection->index,
				     connection->received, connection->send_target, connection->sent);
			connection->end_of_file = true;
			return;
		}
		check_received(connection, receive_buffer, (size_t)received);
	}
}

static bool send_some(struct connection *connection, uint64_t *last_progress)
{
	bool progress = false;

	for (int calls = 0; calls < CALLS_PER_EVENT && connection->sent < connection->send_target;
	     calls++) {
		size_t size = choose_size(&connection->write_sizes, options.max_write);
		ssize_t sent;

		if (size > connection->send_target - connection->sent)
			size = (size_t)(connection->send_target - connection->sent);
		if (options.burst) {
			uint64_t awaiting = connection->sent - connection->received;

			if (awaiting >= options.burst)
				break;
			if (size > options.burst - awaiting)
				size = (size_t)(options.burst - awaiting);
		}
		fill_payload(connection, connection->sent, send_buffer, size);
		sent = send(connection->fd, send_buffer, size, MSG_NOSIGNAL);
		if (sent < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			fail("connection %u: send after %" PRIu64 " of %" PRIu64 " bytes: %s",
			     connection->index, connection->sent, connection->send_target,
			     strerror(errno));
		}
		connection->sent += (uint64_t)sent;
		progress = true;
	}
	if (progress)
		*last_progress = now_ms();
	if (options.half_close && !connection->write_shut &&
	    connection->sent == connection->send_target) {
		if (shutdown(connection->fd, SHUT_WR) != 0)
			fail("connection %u: shutdown: %s", connection->index, strerror(errno));
		connection->write_shut = true;
	}
	return progress;
}

/* Decides whether the connection is finished and what it waits for next. */
static void advance(struct connection *connection)
{
	uint32_t interest = 0;

	if (options.rst_after) {
		if (connection->sent == connection->send_target &&
		    (options.no_read || connection->received >= connection->send_target / 2)) {
			finish_connection(connection, true);
			return;
		}
	} else if (!options.no_read && connection->sent == connection->send_target &&
		   connection->received == connection->send_target &&
		   (!options.half_close || connection->end_of_file)) {
		finish_connection(connection, false);
		return;
	}
	if (!options.no_read)
		interest |= EPOLLIN;
	if (connection->sent < connection->send_target &&
	    (!options.burst || connection->sent - connection->received < options.burst))
		interest |= EPOLLOUT;
	set_interest(connection, interest);
}

static void handle_event(struct connection *connection, uint32_t events, uint64_t *last_progress)
{
	if (connection->state == STATE_CONNECTING) {
		int error = 0;
		socklen_t length = sizeof(error);

		if (getsockopt(connection->fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0)
			fail("connection %u: getsockopt(SO_ERROR): %s", connection->index,
			     strerror(errno));
		if (error)
			fail("connection %u: connect: %s", connection->index, strerror(error));
		if (!(events & EPOLLOUT))
			return;
		connection->state = STATE_OPEN;
		*last_progress = now_ms();
		/* Nothing to send at all: the half-close is due at once. */
		send_some(connection, last_progress);
		advance(connection);
		return;
	}
	if (!options.no_read && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		receive_some(connection);
	if (events & (EPOLLOUT | EPOLLERR))
		send_some(connection, last_progress);
	if (options.no_read && (events & EPOLLERR) && !(events & EPOLLOUT)) {
		int error = 0;
		socklen_t length = sizeof(error);

		getsockopt(connection->fd, SOL_SOCKET, SO_ERROR, &error, &length);
		fail("connection %u: error while not reading, %" PRIu64 " bytes sent: %s",
		     connection->index, connection->sent, strerror(error));
	}
	advance(connection);
}

/* ---- the run ----------------------------------------------------------- */

static void report_unfinished(const char *why)
{
	unsigned unfinished = 0, shown = 0;

	for (unsigned i = 0; i < options.connections; i++)
		if (connections[i].state != STATE_DONE)
			unfinished++;
	fflush(stdout);
	fprintf(stderr, "echo_verify: error: %s: %u of %u connections unfinished\n", why, unfinished,
		options.connections);
	for (unsigned i = 0; i < options.connections && shown < 5; i++) {
		const struct connection *connection = &connections[i];
		static const char *const state_names[] = { "not opened", "connecting", "open", "done" };

		if (connection->state == STATE_DONE)
			continue;
		shown++;
		fprintf(stderr, "echo_verify:   connection %u: %s, sent %" PRIu64 " of %" PRIu64
			", received %" PRIu64 "%s\n", i, state_names[connection->state],
			connection->sent, connection->send_target, connection->received,
			connection->write_shut ? ", write side shut" : "");
	}
	exit(1);
}

static void hold_and_close(void)
{
	uint64_t total_sent = 0;

	for (unsigned i = 0; i < options.connections; i++)
		total_sent += connections[i].sent;
	printf("holding connections=%u bytes_sent=%" PRIu64 "\n", options.connections, total_sent);
	fflush(stdout);
	for (unsigned slept = 0; slept < options.hold_seconds; slept++)
		sleep(1);
	for (unsigned i = 0; i < options.connections; i++)
		if (connections[i].state != STATE_DONE)
			finish_connection(&connections[i], options.rst_after != 0);
	printf("ok no-read%s connections=%u bytes_sent=%" PRIu64 "\n",
	       options.rst_after ? " rst" : "", options.connections, total_sent);
}

static uint64_t parse_size(const char *text, const char *what)
{
	char *end;
	unsigned long long value;
	uint64_t multiplier = 1;

	errno = 0;
	value = strtoull(text, &end, 10);
	if (end == text || errno)
		goto bad;
	switch (*end) {
	case 'K': case 'k': multiplier = 1ull << 10; end++; break;
	case 'M': case 'm': multiplier = 1ull << 20; end++; break;
	case 'G': case 'g': multiplier = 1ull << 30; end++; break;
	default: break;
	}
	if (*end || value > (1ull << 40) / multiplier)
		goto bad;
	return value * multiplier;
bad:
	fprintf(stderr, "echo_verify: bad %s '%s'\n", what, text);
	exit(2);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: echo_verify -p PORT [-6] [-c CONNECTIONS] [-C MAX_OPEN] [--sequential]\n"
		"                   [-n BYTES] [--vary] [-s SEED] [--max-write N] [--max-read N]\n"
		"                   [--half-close] [--rst-after BYTES] [--no-read] [--hold SECONDS]\n"
		"                   [--stall-ms MS] [--burst BYTES] [-t SECONDS] [-v]\n");
	exit(2);
}

static void parse_options(int argc, char **argv)
{
	static const struct option long_options[] = {
		{ "sequential", no_argument, NULL, 'S' },
		{ "vary", no_argument, NULL, 'V' },
		{ "max-write", required_argument, NULL, 'W' },
		{ "max-read", required_argument, NULL, 'R' },
		{ "half-close", no_argument, NULL, 'H' },
		{ "rst-after", required_argument, NULL, 'X' },
		{ "no-read", no_argument, NULL, 'N' },
		{ "hold", required_argument, NULL, 'h' },
		{ "stall-ms", required_argument, NULL, 'm' },
		{ "burst", required_argument, NULL, 'B' },
		{ NULL, 0, NULL, 0 },
	};
	int option;
	bool have_port = false;

	while ((option = getopt_long(argc, argv, "p:6c:C:n:s:t:v", long_options, NULL)) != -1) {
		switch (option) {
		case 'p':
			options.port = (int)parse_size(optarg, "port");
			have_port = options.port > 0 && options.port <= 65535;
			break;
		case '6':
			options.ipv6 = true;
			break;
		case 'c':
			options.connections = (unsigned)parse_size(optarg, "connection count");
			break;
		case 'C':
			options.max_open = (unsigned)parse_size(optarg, "open connection limit");
			break;
		case 'S':
			options.max_open = 1;
			break;
		case 'n':
			options.bytes = parse_size(optarg, "byte count");
			break;
		case 'V':
			options.vary = true;
			break;
		case 's':
			options.seed = parse_size(optarg, "seed");
			break;
		case 'W':
			options.max_write = (size_t)parse_size(optarg, "write size");
			break;
		case 'R':
			options.max_read = (size_t)parse_size(optarg, "read size");
			break;
		case 'H':
			options.half_close = true;
			break;
		case 'X':
			options.rst_after = parse_size(optarg, "reset point");
			if (!options.rst_after)
				usage();
			break;
		case 'N':
			options.no_read = true;
			break;
		case 'h':
			options.hold_seconds = (unsigned)parse_size(optarg, "hold time");
			break;
		case 'm':
			options.stall_ms = (unsigned)parse_size(optarg, "stall time");
			break;
		case 'B':
			options.burst = parse_size(optarg, "burst size");
			break;
		case 't':
			options.timeout_seconds = (unsigned)parse_size(optarg, "timeout");
			break;
		case 'v':
			options.verbose = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || !have_port)
		usage();
	if (options.connections < 1 || options.connections > MAX_CONNECTIONS) {
		fprintf(stderr, "echo_verify: connections must be 1..%d\n", MAX_CONNECTIONS);
		exit(2);
	}
	if (options.max_write < 1 || options.max_write > MAX_CHUNK ||
	    options.max_read < 1 || options.max_read > MAX_CHUNK) {
		fprintf(stderr, "echo_verify: write and read sizes must be 1..%u\n", MAX_CHUNK);
		exit(2);
	}
	if (options.half_close && (options.rst_after || options.no_read)) {
		fprintf(stderr, "echo_verify: --half-close does not combine with --rst-after or --no-read\n");
		exit(2);
	}
	if (options.burst && options.no_read) {
		fprintf(stderr, "echo_verify: --burst does not combine with --no-read\n");
		exit(2);
	}
	if (options.max_open == 0 || options.max_open > options.connections)
		options.max_open = options.connections;
	if (options.timeout_seconds == 0)
		options.timeout_seconds = 1;
}

int main(int argc, char **argv)
{
	struct epoll_event events[256];
	struct rlimit limit;
	unsigned next_to_open = 0, open_count = 0, done_count = 0;
	uint64_t deadline, last_progress, total_bytes = 0;

	parse_options(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
		limit.rlim_cur = limit.rlim_max;
		setrlimit(RLIMIT_NOFILE, &limit);
	}
	send_buffer = malloc(options.max_write);
	receive_buffer = malloc(options.max_read);
	expected_buffer = malloc(options.max_read);
	if (!send_buffer || !receive_buffer || !expected_buffer)
		fail("out of memory");
	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (epoll_fd < 0)
		fail("epoll_create1: %s", strerror(errno));

	for (unsigned i = 0; i < options.connections; i++) {
		struct connection *connection = &connections[i];
		uint64_t base = mix64(options.seed ^ mix64((uint64_t)i + 1));

		connection->index = i;
		connection->fd = -1;
		connection->payload_key = base;
		connection->write_sizes = base ^ 0x5752495445ull;
		connection->read_sizes = base ^ 0x52454144ull;
		if (options.rst_after)
			connection->send_target = options.no_read ? options.bytes : options.rst_after;
		else if (options.vary)
			connection->send_target = mix64(base ^ 0x53495a45ull) % (options.bytes + 1);
		else
			connection->send_target = options.bytes;
		total_bytes += connection->send_target;
	}

	deadline = now_ms() + (uint64_t)options.timeout_seconds * 1000;
	last_progress = now_ms();
	while (done_count < options.connections) {
		uint64_t now = now_ms();
		int count;

		while (open_count < options.max_open && next_to_open < options.connections) {
			open_connection(&connections[next_to_open++]);
			open_count++;
		}
		if (now >= deadline)
			report_unfinished("timed out");
		if (options.no_read && now - last_progress >= options.stall_ms &&
		    next_to_open == options.connections) {
			bool all_open = true;

			for (unsigned i = 0; i < options.connections; i++)
				if (connections[i].state == STATE_CONNECTING)
					all_open = false;
			if (all_open) {
				hold_and_close();
				return 0;
			}
		}
		count = epoll_wait(epoll_fd, events, 256, 100);
		if (count < 0) {
			if (errno == EINTR)
				continue;
			fail("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < count; i++) {
			struct connection *connection = events[i].data.ptr;

			if (connection->state == STATE_DONE)
				continue;
			handle_event(connection, events[i].events, &last_progress);
			if (connection->state == STATE_DONE) {
				open_count--;
				done_count++;
			}
		}
		if (options.no_read) {
			bool all_sent = true;

			for (unsigned i = 0; i < options.connections; i++)
				if (connections[i].state != STATE_DONE &&
				    (connections[i].state != STATE_OPEN ||
				     connections[i].sent < connections[i].send_target))
					all_sent = false;
			if (all_sent && done_count < options.connections &&
			    next_to_open == options.connections) {
				hold_and_close();
				return 0;
			}
		}
	}

	if (options.verbose) {
		for (unsigned i = 0; i < options.connections; i++) {
			const struct connection *connection = &connections[i];

			/* How much came back before a reset depends on timing:
			 * leave it out so the output stays comparable. */
			if (connection->reset)
				printf("connection %u: sent %" PRIu64 " reset\n", i, connection->sent);
			else
				printf("connection %u: sent %" PRIu64 " received %" PRIu64 "%s\n", i,
				       connection->sent, connection->received,
				       connection->end_of_file ? " end-of-file" : "");
		}
	}
	if (options.rst_after)
		printf("ok rst connections=%u bytes_sent=%" PRIu64 "\n", options.connections, total_bytes);
	else if (options.no_read)
		printf("ok no-read connections=%u bytes_sent=%" PRIu64 "\n", options.connections,
		       total_bytes);
	else
		printf("ok connections=%u bytes=%" PRIu64 "\n", options.connections, total_bytes);
	return 0;
}
