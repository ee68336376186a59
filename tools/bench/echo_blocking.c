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

static int listen_on(bool ipv6, int port)
{
	int fd = socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		die("setsockopt SO_REUSEADDR");

	struct sockaddr_storage address;
	socklen_t address_length;
	memset(&address, 0, sizeof(address));
	if (ipv6) {
		struct sockaddr_in6 *ipv6_address = (struct sockaddr_in6 *)&address;
		ipv6_address->sin6_family = AF_INET6;
		ipv6_address->sin6_addr = in6addr_loopback;
		ipv6_address->sin6_port = htons((uint16_t)port);
		address_length = sizeof(*ipv6_address);
	} else {
		struct sockaddr_in *ipv4_address = (struct sockaddr_in *)&address;
		ipv4_address->sin_family = AF_INET;
		ipv4_address->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ipv4_address->sin_port = htons((uint16_t)port);
		address_length = sizeof(*ipv4_address);
	}
	if (bind(fd, (struct sockaddr *)&address, address_length) < 0)
		die("bind");
	if (listen(fd, 1024) < 0)
		die("listen");
	return fd;
}

static int bound_port(int fd)
{
	struct sockaddr_storage address;
	socklen_t length = sizeof(address);

	if (getsockname(fd, (struct sockaddr *)&address, &length) < 0)
		die("getsockname");
	if (address.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
	return ntohs(((struct sockaddr_in *)&address)->sin_port);
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

	int listener = listen_on(ipv6, port);
	printf("listening %d\n", bound_port(listener));
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
