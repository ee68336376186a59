// SPDX-License-Identifier: MIT
/*
 * echo_blocking: the benchmark's own blocking, thread-per-connection TCP echo
 * server.  It is the kind of unmodified server ringsteer targets: plain
 * accept/read/write on blocking sockets, nothing io_uring-aware.  run.sh uses
 * tests/servers/echo_threaded when it has been built and falls back to this
 * one, so the benchmark does not depend on the test suite.
 *
 * Usage: echo_blocking -p PORT [-6]   (PORT 0 lets the kernel choose)
 * Prints "listening PORT" once listening and runs until killed.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_listener.h"

#define BUFFER_SIZE (64u << 10)

static void die(const char *what)
{
	fprintf(stderr, "echo_blocking: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Writes all of it, as an echo server must; false when the peer is gone. */
static bool write_all(int fd, const char *data, size_t length)
{
	while (length > 0) {
		ssize_t written = write(fd, data, length);
		if (written < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		data += written;
		length -= (size_t)written;
	}
	return true;
}

static void *serve_connection(void *argument)
{
	int fd = (int)(intptr_t)argument;
	char *buffer = malloc(BUFFER_SIZE);

	if (buffer == NULL) {
		close(fd);
		return NULL;
	}
	for (;;) {
		ssize_t received = read(fd, buffer, BUFFER_SIZE);
		if (received < 0 && errno == EINTR)
			continue;
		if (received <= 0 || !write_all(fd, buffer, (size_t)received))
			break;
	}
	free(buffer);
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	int port = -1;
	bool ipv6 = false;
	int option;

	while ((option = getopt(argc, argv, "p:6")) != -1) {
		switch (option) {
		case 'p': port = atoi(optarg); break;
		case '6': ipv6 = true; break;
		default: port = -1; optind = argc; break;
		}
	}
	if (port < 0 || port > 65535) {
		fprintf(stderr, "usage: echo_blocking -p PORT [-6]\n");
		return 2;
	}
	/* A peer that resets mid-write must end its thread, not the server. */
	signal(SIGPIPE, SIG_IGN);

	int listener = bench_listen_on("echo_blocking", ipv6, port, 0);
	printf("listening %d\n", bench_bound_port("echo_blocking", listener));
	fflush(stdout);

	pthread_attr_t attributes;
	pthread_attr_init(&attributes);
	pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attributes, 256u << 10);
	for (;;) {
		int connection = accept(listener, NULL, NULL);
		if (connection < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE) {
				/* Out of descriptors: wait for connections to end
				 * instead of spinning on the pending one. */
				usleep(10000);
				continue;
			}
			die("accept");
		}
		/* Echoes of a message split over two reads would otherwise wait for
		 * delayed acknowledgements, which would measure TCP timers. */
		int one = 1;
		setsockopt(connection, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		pthread_t thread;
		if (pthread_create(&thread, &attributes, serve_connection, (void *)(intptr_t)connection) != 0)
			close(connection);
	}
}
