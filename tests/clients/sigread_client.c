// SPDX-License-Identifier: MIT
/*
 * Drives tests/servers/sigread: makes the server block in a receive,
 * signals it, and records what the server sends back, round by round.
 *
 *   sigread_client -p PORT [-6] -k SERVER_PID [-r ROUNDS] [-t SECONDS]
 *
 * Each round: send "ping-N" and wait for its echo; wait until the server's
 * main thread sleeps (it is back in its receive); send SIGUSR1; wait until
 * the signal is no longer pending (the kernel has delivered it, so the
 * interrupted call has already chosen between EINTR and restarting) and
 * the thread sleeps again; then send "after-N" and collect lines up to its
 * echo.  Prints one line per round listing the lines received after the
 * signal, e.g. `round 1: EINTR after-1` or `round 1: after-1`, so the runs
 * on the plain kernel and under the shim can be compared line for line.
 * Exits 1 on a timeout or a connection error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int server_pid;
static int socket_fd;
static char pending[65536];
static size_t pending_length;

__attribute__((format(printf, 1, 2), noreturn))
static void fail(const char *format, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "sigread_client: error: ");
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

static void sleep_ms(unsigned milliseconds)
{
	struct timespec pause = { milliseconds / 1000, (long)(milliseconds % 1000) * 1000000 };

	nanosleep(&pause, NULL);
}

static bool read_proc_file(const char *name, char *buffer, size_t size)
{
	char path[64];
	FILE *file;
	size_t length;

	snprintf(path, sizeof(path), "/proc/%d/%s", server_pid, name);
	file = fopen(path, "r");
	if (!file)
		return false;
	length = fread(buffer, 1, size - 1, file);
	fclose(file);
	buffer[length] = 0;
	return true;
}

/* State letter of the server's main thread, from /proc/PID/stat. */
static char server_state(void)
{
	char stat[1024];
	char *end;

	if (!read_proc_file("stat", stat, sizeof(stat)))
		fail("server %d is gone", server_pid);
	end = strrchr(stat, ')');
	if (!end || end[1] != ' ')
		fail("cannot parse /proc/%d/stat", server_pid);
	return end[2];
}

/* Waits until the server's main thread sleeps, seen twice in a row some
 * milliseconds apart so a passing sleep inside a call does not count. */
static void wait_until_blocked(unsigned timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	int sleeping_seen = 0;

	while (sleeping_seen < 2) {
		if (now_ms() > deadline)
			fail("the server never blocked (state %c)", server_state());
		sleeping_seen = server_state() == 'S' ? sleeping_seen + 1 : 0;
		sleep_ms(20);
	}
}

static uint64_t parse_pending_mask(const char *status, const char *field)
{
	const char *line = strstr(status, field);

	if (!line)
		fail("no %s in /proc/%d/status", field, server_pid);
	return strtoull(line + strlen(field), NULL, 16);
}

/* Waits until SIGUSR1 is pending neither for the process nor the thread. */
static void wait_until_delivered(unsigned timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	const uint64_t mask = 1ull << (SIGUSR1 - 1);

	for (;;) {
		char status[4096];

		if (!read_proc_file("status", status, sizeof(status)))
			fail("server %d is gone", server_pid);
		if (!((parse_pending_mask(status, "\nSigPnd:") |
		       parse_pending_mask(status, "\nShdPnd:")) & mask))
			return;
		if (now_ms() > deadline)
			fail("SIGUSR1 stayed pending in the server");
		sleep_ms(5);
	}
}

static void send_text(const char *text)
{
	size_t length = strlen(text);

	while (length > 0) {
		ssize_t sent = send(socket_fd, text, length, MSG_NOSIGNAL);

		if (sent < 0) {
			if (errno == EINTR)
				continue;
			fail("send: %s", strerror(errno));
		}
		text += sent;
		length -= (size_t)sent;
	}
}

/* Next complete line, waiting at most `timeout_ms`; false on timeout. */
static bool next_line(char *line, size_t size, unsigned timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		char *newline = memchr(pending, '\n', pending_length);
		struct pollfd poller = { .fd = socket_fd, .events = POLLIN };
		uint64_t now = now_ms();
		ssize_t received;
		int ready;

		if (newline) {
			size_t length = (size_t)(newline - pending);

			if (length >= size)
				fail("line too long");
			memcpy(line, pending, length);
			line[length] = 0;
			pending_length -= length + 1;
			memmove(pending, newline + 1, pending_length);
			return true;
		}
		if (now >= deadline)
			return false;
		ready = poll(&poller, 1, (int)(deadline - now));
		if (ready < 0 && errno != EINTR)
			fail("poll: %s", strerror(errno));
		if (ready <= 0)
			continue;
		if (pending_length == sizeof(pending))
			fail("no newline in %zu bytes", pending_length);
		received = recv(socket_fd, pending + pending_length, sizeof(pending) - pending_length,
				MSG_DONTWAIT);
		if (received < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (received < 0)
			fail("receive: %s", strerror(errno));
		if (received == 0)
			fail("the server closed the connection");
		pending_length += (size_t)received;
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: sigread_client -p PORT [-6] -k SERVER_PID [-r ROUNDS] [-t SECONDS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct sockaddr_storage address;
	socklen_t length;
	int option, port = 0, rounds = 3, timeout_seconds = 20;
	bool ipv6 = false;

	while ((option = getopt(argc, argv, "p:6k:r:t:")) != -1) {
		switch (option) {
		case 'p':
			port = atoi(optarg);
			break;
		case '6':
			ipv6 = true;
			break;
		case 'k':
			server_pid = atoi(optarg);
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		case 't':
			timeout_seconds = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || port <= 0 || port > 65535 || server_pid <= 0 || rounds < 1 ||
	    rounds > 100 || timeout_seconds < 1)
		usage();

	memset(&address, 0, sizeof(address));
	if (ipv6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&address;

		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_loopback;
		in6->sin6_port = htons((uint16_t)port);
		length = sizeof(*in6);
	} else {
		struct sockaddr_in *in4 = (struct sockaddr_in *)&address;

		in4->sin_family = AF_INET;
		in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		in4->sin_port = htons((uint16_t)port);
		length = sizeof(*in4);
	}
	socket_fd = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (socket_fd < 0)
		fail("socket: %s", strerror(errno));
	if (connect(socket_fd, (struct sockaddr *)&address, length) != 0)
		fail("connect: %s", strerror(errno));

	for (int round = 1; round <= rounds; round++) {
		unsigned timeout_ms = (unsigned)timeout_seconds * 1000;
		char expected[32], line[256], received[1024];
		size_t used;

		snprintf(expected, sizeof(expected), "ping-%d", round);
		send_text(expected);
		send_text("\n");
		if (!next_line(line, sizeof(line), timeout_ms))
			fail("round %d: no echo of %s", round, expected);
		if (strcmp(line, expected) != 0)
			fail("round %d: expected the echo %s, received '%s'", round, expected, line);

		wait_until_blocked(timeout_ms);
		if (kill(server_pid, SIGUSR1) != 0)
			fail("kill: %s", strerror(errno));
		wait_until_delivered(timeout_ms);
		wait_until_blocked(timeout_ms);

		used = 0;
		received[0] = 0;
		snprintf(expected, sizeof(expected), "after-%d", round);
		send_text(expected);
		send_text("\n");
		for (int lines = 0;; lines++) {
			if (lines > 20)
				fail("round %d: too many lines before the echo of %s", round, expected);
			if (!next_line(line, sizeof(line), timeout_ms))
				fail("round %d: no echo of %s (received so far:%s)", round, expected,
				     received);
			used += (size_t)snprintf(received + used, sizeof(received) - used, " %s", line);
			if (used >= sizeof(received))
				fail("round %d: too much received", round);
			if (!strcmp(line, expected))
				break;
		}
		printf("round %d:%s\n", round, received);
		fflush(stdout);
	}
	close(socket_fd);
	return 0;
}
