// SPDX-License-Identifier: MIT
/*
 * echo_epoll: the benchmark's event-loop TCP echo server.  It is written the
 * way redis or a libevent server is: non-blocking sockets, one level-triggered
 * epoll loop per thread, one read per readiness event and a write of what was
 * read, nothing io_uring-aware.  That is the kind of unmodified server the
 * shim's event-loop support has to make cheaper, so run.sh measures it plain
 * and under the shim, next to echo_uring (the same protocol on io_uring).
 *
 * Usage: echo_epoll -p PORT [-6] [-t THREADS]   (PORT 0 lets the kernel choose)
 * With THREADS > 1 every thread runs its own epoll loop on the one shared
 * listener (registered with EPOLLEXCLUSIVE, so a connection wakes one thread).
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
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_listener.h"

#define BUFFER_SIZE (64u << 10)
#define EVENTS_PER_WAIT 256
#define MAX_THREADS 64

/* Bytes read but not yet written back because the peer's window was full. */
struct connection {
	int fd;
	char *pending;
	size_t pending_offset;
	size_t pending_length;
};

static int listener = -1;
static bool shared_listener;

static void die(const char *what)
{
	fprintf(stderr, "echo_epoll: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void close_connection(struct connection *connection)
{
	/* Closing removes the fd from the epoll set: no EPOLL_CTL_DEL needed. */
	close(connection->fd);
	free(connection->pending);
	free(connection);
}

static void accept_all(int epoll_fd)
{
	for (;;) {
		int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EMFILE || errno == ENFILE) {
				/* Out of descriptors: let connections end rather than
				 * spin on the pending one. */
				usleep(10000);
				return;
			}
			die("accept4");
		}
		/* Echoes split over two reads would otherwise wait for delayed
		 * acknowledgements, which would measure TCP timers. */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct connection *connection = calloc(1, sizeof(*connection));
		if (connection == NULL) {
			close(fd);
			continue;
		}
		connection->fd = fd;
		struct epoll_event event = { .events = EPOLLIN, .data.ptr = connection };
		if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0) {
			close_connection(connection);
			continue;
		}
		/* With several loops on one listener, leave the rest of the
		 * backlog to the other threads, as EPOLLEXCLUSIVE intends. */
		if (shared_listener)
			return;
	}
}

/* Writes what it can; returns false when the peer is gone.  What the socket
 * does not take now stays pending, and the connection waits for EPOLLOUT
 * instead of reading more: the echo never buffers without bound. */
static bool write_or_keep(int epoll_fd, struct connection *connection, const char *data, size_t length)
{
	while (length > 0) {
		ssize_t written = write(connection->fd, data, length);
		if (written < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return false;
			break;
		}
		data += written;
		length -= (size_t)written;
	}
	if (length == 0)
		return true;
	if (connection->pending == NULL) {
		connection->pending = malloc(BUFFER_SIZE);
		if (connection->pending == NULL)
			return false;
	}
	/* data points into the caller's buffer or into pending itself. */
	memmove(connection->pending, data, length);
	connection->pending_offset = 0;
	connection->pending_length = length;
	struct epoll_event event = { .events = EPOLLOUT, .data.ptr = connection };
	return epoll_ctl(epoll_fd, EPOLL_CTL_MOD, connection->fd, &event) == 0;
}

static bool flush_pending(int epoll_fd, struct connection *connection)
{
	size_t length = connection->pending_length;
	connection->pending_length = 0;
	if (!write_or_keep(epoll_fd, connection, connection->pending + connection->pending_offset, length))
		return false;
	if (connection->pending_length > 0)
		return true;
	struct epoll_event event = { .events = EPOLLIN, .data.ptr = connection };
	return epoll_ctl(epoll_fd, EPOLL_CTL_MOD, connection->fd, &event) == 0;
}

static void *run_loop(void *unused)
{
	(void)unused;
	char *buffer = malloc(BUFFER_SIZE);
	struct epoll_event *events = calloc(EVENTS_PER_WAIT, sizeof(*events));
	int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (buffer == NULL || events == NULL || epoll_fd < 0)
		die("loop setup");

	struct epoll_event listen_event = { .events = EPOLLIN, .data.ptr = NULL };
	if (shared_listener)
		listen_event.events |= EPOLLEXCLUSIVE;
	if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &listen_event) < 0)
		die("epoll_ctl listener");

	for (;;) {
		int ready = epoll_wait(epoll_fd, events, EVENTS_PER_WAIT, -1);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < ready; i++) {
			struct connection *connection = events[i].data.ptr;
			if (connection == NULL) {
				accept_all(epoll_fd);
				continue;
			}
			if (connection->pending_length > 0) {
				if (!flush_pending(epoll_fd, connection))
					close_connection(connection);
				continue;
			}
			/* One read per event, as level-triggered loops do: what
			 * is left is reported again by the next epoll_wait. */
			ssize_t received = read(connection->fd, buffer, BUFFER_SIZE);
			if (received < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
				continue;
			if (received <= 0 || !write_or_keep(epoll_fd, connection, buffer, (size_t)received))
				close_connection(connection);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int port = -1, threads = 1;
	bool ipv6 = false;
	int option;

	while ((option = getopt(argc, argv, "p:6t:")) != -1) {
		switch (option) {
		case 'p': port = atoi(optarg); break;
		case '6': ipv6 = true; break;
		case 't': threads = atoi(optarg); break;
		default: port = -1; optind = argc; break;
		}
	}
	if (port < 0 || port > 65535 || threads < 1 || threads > MAX_THREADS) {
		fprintf(stderr, "usage: echo_epoll -p PORT [-6] [-t THREADS (1-%d)]\n", MAX_THREADS);
		return 2;
	}
	/* A peer that resets mid-write must end its connection, not the server. */
	signal(SIGPIPE, SIG_IGN);

	listener = bench_listen_on("echo_epoll", ipv6, port, SOCK_NONBLOCK);
	shared_listener = threads > 1;
	/* The main thread runs the last loop itself. */
	for (int i = 1; i < threads; i++) {
		pthread_t thread;
		if (pthread_create(&thread, NULL, run_loop, NULL) != 0)
			die("pthread_create");
	}
	printf("listening %d\n", bench_bound_port("echo_epoll", listener));
	fflush(stdout);
	run_loop(NULL);
	return 0;
}
