// SPDX-License-Identifier: MIT
/*
 * The client half of tests/servers/errno_probe: sends the scenario name,
 * then plays its side of the scenario, waiting for each of the server's
 * replies before the next step so that every call on the server side has a
 * result the kernel fully determines.  Prints what it received, so its
 * output can be compared too.
 *
 *   probe_client -p PORT [-6] SCENARIO
 *
 * SCENARIO: reset, halfclose, peek, zero, efault, closedpeer, dup, sendfile,
 * closerange, closefrom, cork, splice, fdopen, mmsg, dprintf or ownfds.  Exits
 * 1 if the server's replies are not the expected ones or take longer than
 * 10 s.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int socket_fd;
static const char *scenario;

__attribute__((format(printf, 1, 2), noreturn))
static void fail(const char *format, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "probe_client: %s: error: ", scenario ? scenario : "");
	va_start(ap, format);
	vfprintf(stderr, format, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void send_text(const char *text)
{
	size_t length = strlen(text);

	while (length > 0) {
		ssize_t sent = send(socket_fd, text, length, MSG_NOSIGNAL);

		if (sent < 0 && errno == EINTR)
			continue;
		if (sent < 0)
			fail("send: %s", strerror(errno));
		text += sent;
		length -= (size_t)sent;
	}
}

/* Receives exactly the expected text. */
static void expect(const char *expected)
{
	size_t length = strlen(expected), have = 0;
	char buf[256];

	while (have < length) {
		ssize_t received = recv(socket_fd, buf + have, length - have, 0);

		if (received < 0 && errno == EINTR)
			continue;
		if (received < 0)
			fail("waiting for \"%s\": %s", expected, strerror(errno));
		if (received == 0)
			fail("end of file while waiting for \"%s\" (had %zu bytes)", expected, have);
		have += (size_t)received;
	}
	if (memcmp(buf, expected, length) != 0)
		fail("expected \"%s\", received \"%.*s\"", expected, (int)length, buf);
	printf("client: received \"");
	for (size_t i = 0; i < length; i++)
		fputs(expected[i] == '\n' ? "\\n" : (char[]){ expected[i], 0 }, stdout);
	printf("\"\n");
}

static void expect_end_of_file(void)
{
	char byte;
	ssize_t received;

	do
		received = recv(socket_fd, &byte, 1, 0);
	while (received < 0 && errno == EINTR);
	if (received < 0)
		fail("waiting for end of file: %s", strerror(errno));
	if (received > 0)
		fail("expected end of file, received 0x%02x", (unsigned char)byte);
	printf("client: end of file\n");
}

static void close_with_reset(void)
{
	struct linger linger = { .l_onoff = 1, .l_linger = 0 };

	if (setsockopt(socket_fd, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger)) != 0)
		fail("setsockopt(SO_LINGER): %s", strerror(errno));
	close(socket_fd);
	printf("client: reset\n");
}

static void close_normally(void)
{
	close(socket_fd);
	printf("client: closed\n");
}

static void connect_to(int port, bool ipv6)
{
	struct sockaddr_storage address;
	struct timeval timeout = { .tv_sec = 10 };
	socklen_t length;

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
	if (setsockopt(socket_fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0 ||
	    setsockopt(socket_fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) != 0)
		fail("setsockopt(timeouts): %s", strerror(errno));
	if (connect(socket_fd, (struct sockaddr *)&address, length) != 0)
		fail("connect: %s", strerror(errno));
}

static void usage(void)
{
	fprintf(stderr, "usage: probe_client -p PORT [-6] SCENARIO\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int option, port = 0;
	bool ipv6 = false;

	while ((option = getopt(argc, argv, "p:6")) != -1) {
		if (option == 'p')
			port = atoi(optarg);
		else if (option == '6')
			ipv6 = true;
		else
			usage();
	}
	if (optind != argc - 1 || port <= 0 || port > 65535)
		usage();
	scenario = argv[optind];
	connect_to(port, ipv6);
	send_text(scenario);
	send_text("\n");
	expect("ready\n");
	if (!strcmp(scenario, "reset")) {
		send_text("hello");
		expect("got\n");
		close_with_reset();
	} else if (!strcmp(scenario, "halfclose")) {
		send_text("abc");
		if (shutdown(socket_fd, SHUT_WR) != 0)
			fail("shutdown: %s", strerror(errno));
		expect("abcdef");
		expect_end_of_file();
		close_normally();
	} else if (!strcmp(scenario, "peek")) {
		send_text("abcdef");
		expect("more\n");
		send_text("ghi");
		expect("done\n");
		close_normally();
	} else if (!strcmp(scenario, "zero")) {
		send_text("z");
		expect("ok\n");
		close_normally();
	} else if (!strcmp(scenario, "efault")) {
		send_text("data");
		expect("ok\n");
		close_normally();
	} else if (!strcmp(scenario, "closedpeer")) {
		send_text("x");
		expect("got\n");
		close_normally();
	} else if (!strcmp(scenario, "dup")) {
		expect("still\n");
		send_text("ping");
		expect("again\n");
		expect_end_of_file();
		close_normally();
	} else if (!strcmp(scenario, "sendfile")) {
		expect("head\nbody\ntail\n");
		send_text("ok");
		close_normally();
	} else if (!strcmp(scenario, "cork")) {
		char rounds[101];

		memset(rounds, 'r', 100);
		rounds[100] = 0;
		expect("head\nbody\ntail\n");
		expect(rounds);
		send_text("ok");
		close_normally();
	} else if (!strcmp(scenario, "fdopen")) {
		expect("first second\nthird\nfourth\n");
		send_text("ok\n");
		expect_end_of_file();
		close_normally();
	} else if (!strcmp(scenario, "splice")) {
		send_text("abcdef");
		expect("more\n");
		send_text("ghi");
		expect("hello world\n");
		expect("tail\n");
		send_text("xyz");
		expect("again\n");
		send_text("uvw");
		expect("done\n");
		close_normally();
	} else if (!strcmp(scenario, "dprintf")) {
		char text[101];

		memset(text, 'x', 100);
		text[100] = 0;
		expect("first second 2\nthird\n");
		/* expect takes at most 255 bytes at a time */
		for (int i = 0; i < 15; i++)
			expect(text);
		expect("\n");
		send_text("ok");
		close_normally();
	} else if (!strcmp(scenario, "mmsg")) {
		send_text("abcdefg");
		expect("zero one two\n");
		send_text("hijklm");
		expect("next\n");
		send_text("nop");
		expect("done\n");
		close_normally();
	} else if (!strcmp(scenario, "ownfds")) {
		expect("closed\n");
		send_text("after");
		expect("done\n");
		close_normally();
	} else if (!strcmp(scenario, "closerange") || !strcmp(scenario, "closefrom")) {
		expect("bye\n");
		expect_end_of_file();
		close_normally();
	} else {
		usage();
	}
	return 0;
}
