// SPDX-License-Identifier: MIT
/*
 * Event-loop echo server with non-blocking sockets, in the shapes real
 * event-driven servers take, so the shim's readiness emulation is exercised
 * the way nginx, redis or memcached exercise it:
 *
 *   event_echo [-p PORT] [-6] [-e MODE] [-t THREADS] [-f WORKERS] [-D] [-x]
 *              [-k pipe|eventfd] [-m FAMILY] [-b READ_SIZE]
 *
 *   -e MODE    epoll-lt (default): one receive per event, EPOLL_CTL_MOD
 *              between EPOLLIN and EPOLLOUT; epoll-et: registered once with
 *              EPOLLET, reads and writes drain until EAGAIN; epoll-oneshot:
 *              EPOLLONESHOT, re-armed with EPOLL_CTL_MOD after every event;
 *              poll; select (a descriptor at or above FD_SETSIZE is an error)
 *   -t N       N threads, each with its own event loop on the shared
 *              non-blocking listener (default 1)
 *   -f N       fork N worker processes after listen, each running the
 *              loops (the pre-fork shape of nginx)
 *   -D         one dispatcher thread accepts and hands each connection to
 *              one of the N loop threads through that thread's pipe (the
 *              shape of memcached)
 *   -x         register the listener with EPOLLEXCLUSIVE (epoll-lt, epoll-et)
 *   -k KIND    the kernel descriptor mixed into every loop: a pipe (default)
 *              or an eventfd, written every 10 ms by a helper thread
 *   -m, -b     call family and read size, as for echo_threaded (default:
 *              both rotate with each connection)
 *
 * Accepted sockets are made non-blocking three ways in turn: accept4 with
 * SOCK_NONBLOCK, accept and fcntl(O_NONBLOCK), accept4 with SOCK_CLOEXEC and
 * ioctl(FIONBIO).  When the peer is slow the unsent rest of a reply is kept
 * (at most one read's worth per connection) and the connection waits for
 * writability instead of reading more, so memory stays bounded and TCP
 * flow control reaches a peer that does not read.
 *
 * On SIGTERM the helper thread stops writing, sends each loop a stop marker
 * behind its last tick, and each loop prints
 *   loop N pid=P ticks_written=W ticks_read=R accepted=A bytes=B
 * Since the marker comes after every tick, R must equal W: a readiness
 * report of the kernel descriptor lost or invented under the shim shows.
 * Then `exit ok` (with -f, each worker prints its loops and the parent
 * prints `workers exited=N failed=F`).  Anything unexpected goes to stderr
 * prefixed `event_echo:`, where the tests look for it.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <time.h>

#include "server_common.h"

enum loop_mode { MODE_EPOLL_LT, MODE_EPOLL_ET, MODE_EPOLL_ONESHOT, MODE_POLL, MODE_SELECT };
static const char *const mode_names[] = { "epoll-lt", "epoll-et", "epoll-oneshot", "poll", "select" };

enum ticker_kind { TICKER_PIPE, TICKER_EVENTFD };

#define TICK_INTERVAL_NS   10000000L
#define EVENTFD_STOP       (1ull << 32)
#define MAX_LOOPS          64
#define EVENTS_PER_WAIT    64
#define WAIT_TIMEOUT_MS    1000
#define CONNECTION_MAGIC   0x636f6e6eu
#define MAX_READ_SIZE      (1 << 20)

static struct {
	enum loop_mode mode;
	enum ticker_kind ticker;
	enum io_family family;
	size_t fixed_read_size;
	int threads;
	int workers;
	bool dispatcher;
	bool exclusive;
} options = { .mode = MODE_EPOLL_LT, .family = FAMILY_ROTATE, .threads = 1 };

struct connection {
	unsigned magic;
	int fd;
	struct echo_plan plan;
	unsigned receive_calls, send_calls;
	char *pending;            /* unsent rest of a reply */
	size_t pending_length, pending_offset;
	bool end_of_file;         /* the peer shut its sending side */
	bool maybe_readable;      /* edge-triggered: stopped reading before EAGAIN */
	uint32_t registered;      /* epoll events asked for (level/one-shot) */
	size_t active_index;      /* position in the loop's active list */
	struct connection *next_closed;
};

struct loop {
	int index;
	int epoll_fd;
	int ticker_read, ticker_write;   /* the same eventfd twice for -k eventfd */
	int handoff_read, handoff_write; /* -D: the dispatcher writes fds here */
	bool has_listener;
	bool stopping;
	atomic_ullong ticks_written;
	unsigned long long ticks_read, accepted, bytes;
	struct connection **active;
	size_t active_count, active_capacity;
	struct connection *closed;       /* freed at the end of the round */
	char *buffer;
	unsigned next_worker;            /* dispatcher: round robin */
	pthread_t thread;
};

/* The epoll data of descriptors that are not connections. */
static char ticker_tag, listener_tag, handoff_tag;

static int listener = -1;
static struct loop loops[MAX_LOOPS];
static int loop_count;
static atomic_uint connection_number;

/* ---- descriptors ------------------------------------------------------- */

static void set_nonblocking_flag(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
		die("fcntl(O_NONBLOCK): %s", strerror(errno));
}

/* One accept in the rotation of ways to get a non-blocking socket; checks
 * that the flags came out as asked.  Returns -1 when nothing is pending. */
static int accept_nonblocking(void)
{
	struct sockaddr_storage peer;
	socklen_t length = sizeof(peer);
	unsigned number = atomic_fetch_add(&connection_number, 1);
	unsigned variant = number % 3;
	int fd, on = 1, flags;

	for (;;) {
		if (variant == 0)
			fd = accept4(listener, (struct sockaddr *)&peer, &length, SOCK_NONBLOCK);
		else if (variant == 1)
			fd = accept(listener, NULL, NULL);
		else
			fd = accept4(listener, (struct sockaddr *)&peer, &length, SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -1;
		die("accept: %s", strerror(errno));
	}
	if (variant == 1)
		set_nonblocking_flag(fd);
	else if (variant == 2 && ioctl(fd, FIONBIO, &on) != 0)
		die("ioctl(FIONBIO): %s", strerror(errno));
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || !(flags & O_NONBLOCK))
		die("accepted socket (variant %u) is not non-blocking", variant);
	flags = fcntl(fd, F_GETFD);
	if (flags < 0 || !!(flags & FD_CLOEXEC) != (variant == 2))
		die("accepted socket (variant %u) has close-on-exec %s", variant,
		    flags & FD_CLOEXEC ? "set" : "clear");
	return fd;
}

/* ---- epoll registration -------------------------------------------------- */

static bool epoll_mode(void)
{
	return options.mode <= MODE_EPOLL_ONESHOT;
}

static uint32_t mode_flags(void)
{
	if (options.mode == MODE_EPOLL_ET)
		return EPOLLET;
	if (options.mode == MODE_EPOLL_ONESHOT)
		return EPOLLONESHOT;
	return 0;
}

static void epoll_register(struct loop *loop, int operation, int fd, uint32_t events, void *tag)
{
	struct epoll_event event = { .events = events, .data.ptr = tag };

	if (epoll_ctl(loop->epoll_fd, operation, fd, &event) != 0)
		die("epoll_ctl(%s, %u): %s", operation == EPOLL_CTL_ADD ? "ADD" : "MOD", events,
		    strerror(errno));
}

/* Level-triggered and one-shot connections wait either to read or, with a
 * reply pending, to write; one-shot ones are re-armed after every event. */
static void update_interest(struct loop *loop, struct connection *connection)
{
	uint32_t wanted;

	if (!epoll_mode() || options.mode == MODE_EPOLL_ET || connection->fd < 0)
		return;
	wanted = (connection->pending_length ? EPOLLOUT : EPOLLIN | EPOLLRDHUP) | mode_flags();
	if (wanted == connection->registered && options.mode != MODE_EPOLL_ONESHOT)
		return;
	epoll_register(loop, EPOLL_CTL_MOD, connection->fd, wanted, connection);
	connection->registered = wanted;
}

/* ---- connections ----------------------------------------------------------- */

static void adopt_connection(struct loop *loop, int fd)
{
	struct connection *connection = calloc(1, sizeof(*connection));

	if (!connection)
		die("out of memory for a connection");
	if (options.mode == MODE_SELECT && fd >= FD_SETSIZE)
		die("accepted descriptor %d is not below FD_SETSIZE, select cannot wait for it", fd);
	connection->magic = CONNECTION_MAGIC;
	connection->fd = fd;
	connection->plan = plan_for_connection(options.family, options.fixed_read_size,
					       (unsigned)loop->accepted);
	if (loop->active_count == loop->active_capacity) {
		size_t capacity = loop->active_capacity ? 2 * loop->active_capacity : 64;
		struct connection **grown = realloc(loop->active, capacity * sizeof(*grown));

		if (!grown)
			die("out of memory for the connection list");
		loop->active = grown;
		loop->active_capacity = capacity;
	}
	connection->active_index = loop->active_count;
	loop->active[loop->active_count++] = connection;
	loop->accepted++;
	if (epoll_mode()) {
		if (options.mode == MODE_EPOLL_ET)
			connection->registered = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
		else
			connection->registered = EPOLLIN | EPOLLRDHUP | mode_flags();
		epoll_register(loop, EPOLL_CTL_ADD, fd, connection->registered, connection);
	}
}

static void close_connection(struct loop *loop, struct connection *connection)
{
	struct connection *last = loop->active[--loop->active_count];

	last->active_index = connection->active_index;
	loop->active[connection->active_index] = last;
	if (close(connection->fd) != 0)
		fprintf(stderr, "event_echo: close: %s\n", strerror(errno));
	connection->fd = -1;
	free(connection->pending);
	connection->pending = NULL;
	connection->next_closed = loop->closed;
	loop->closed = connection;
}

static void free_closed(struct loop *loop)
{
	while (loop->closed) {
		struct connection *next = loop->closed->next_closed;

		loop->closed->magic = 0;
		free(loop->closed);
		loop->closed = next;
	}
}

/* A failed call on the connection: the peer going away is normal. */
static void connection_failed(struct loop *loop, struct connection *connection, const char *what)
{
	if (!peer_gone(errno))
		fprintf(stderr, "event_echo: %s %s: %s\n", family_names[connection->plan.family],
			what, strerror(errno));
	close_connection(loop, connection);
}

/* Sends from `data` until done or EAGAIN; returns the bytes sent, or -1
 * after closing the connection on an error. */
static ssize_t send_until_blocked(struct loop *loop, struct connection *connection,
				  const char *data, size_t length)
{
	size_t done = 0;

	while (done < length) {
		ssize_t sent = send_some(connection->plan.family, connection->fd, data + done,
					 length - done, connection->send_calls++);

		if (sent < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			connection_failed(loop, connection, "send");
			return -1;
		}
		if (sent == 0 || (size_t)sent > length - done)
			die("send call returned %zd for %zu bytes", sent, length - done);
		done += (size_t)sent;
	}
	return (ssize_t)done;
}

/* Sends what is pending; true when nothing is left. */
static bool flush_pending(struct loop *loop, struct connection *connection)
{
	ssize_t sent;

	if (!connection->pending_length)
		return true;
	sent = send_until_blocked(loop, connection, connection->pending + connection->pending_offset,
				  connection->pending_length);
	if (sent < 0)
		return false;
	connection->pending_offset += (size_t)sent;
	connection->pending_length -= (size_t)sent;
	if (connection->pending_length)
		return false;
	free(connection->pending);
	connection->pending = NULL;
	connection->pending_offset = 0;
	return true;
}

/* One receive and its echo.  False when the connection should not be read
 * again now (EAGAIN, end of file, a reply pending, or closed). */
static bool receive_and_echo(struct loop *loop, struct connection *connection)
{
	size_t size = connection->plan.read_size;
	ssize_t received, sent;

	for (;;) {
		received = receive_some(connection->plan.family, connection->fd, loop->buffer, size,
					connection->receive_calls++);
		if (received >= 0 || errno != EINTR)
			break;
	}
	if (received < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			connection->maybe_readable = false;
			return false;
		}
		connection_failed(loop, connection, "receive");
		return false;
	}
	if (received == 0) {
		connection->end_of_file = true;
		connection->maybe_readable = false;
		return false;
	}
	if ((size_t)received > size)
		die("receive call returned %zd for a %zu byte buffer", received, size);
	loop->bytes += (unsigned long long)received;
	sent = send_until_blocked(loop, connection, loop->buffer, (size_t)received);
	if (sent < 0)
		return false;
	if ((size_t)sent < (size_t)received) {
		connection->pending_length = (size_t)received - (size_t)sent;
		connection->pending = malloc(connection->pending_length);
		if (!connection->pending)
			die("out of memory for %zu pending bytes", connection->pending_length);
		memcpy(connection->pending, loop->buffer + sent, connection->pending_length);
		connection->pending_offset = 0;
		connection->maybe_readable = true;
		return false;
	}
	return true;
}

/* Serves one readiness report.  Edge-triggered loops drain both ways until
 * EAGAIN; the others make one receive per report, which must then be
 * reported again while data is left. */
static void serve_connection(struct loop *loop, struct connection *connection, bool readable,
			     bool writable)
{
	bool drain = options.mode == MODE_EPOLL_ET;

	if (connection->pending_length) {
		if (!writable && !drain)
			goto done;
		if (!flush_pending(loop, connection))
			goto done;
		/* A level-triggered loop asks again for readability. */
		if (!drain)
			goto finish;
	}
	if (connection->end_of_file)
		goto finish;
	if (readable || connection->maybe_readable) {
		if (drain) {
			connection->maybe_readable = true;
			while (receive_and_echo(loop, connection))
				;
		} else {
			receive_and_echo(loop, connection);
		}
	}
finish:
	if (connection->fd >= 0 && connection->end_of_file && !connection->pending_length) {
		close_connection(loop, connection);
		return;
	}
done:
	if (connection->fd >= 0)
		update_interest(loop, connection);
}

/* ---- the kernel descriptors of a loop ------------------------------------ */

/* Reads the ticker; returns true if it should be read again now. */
static bool read_ticker(struct loop *loop)
{
	if (options.ticker == TICKER_EVENTFD) {
		uint64_t value;
		ssize_t n = read(loop->ticker_read, &value, sizeof(value));

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return false;
		if (n != sizeof(value))
			die("read(eventfd): %s", n < 0 ? strerror(errno) : "short read");
		if (value >= EVENTFD_STOP) {
			loop->stopping = true;
			value -= EVENTFD_STOP;
		}
		loop->ticks_read += value;
		return !loop->stopping;
	} else {
		char marks[256];
		ssize_t n = read(loop->ticker_read, marks, sizeof(marks));

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return false;
		if (n <= 0)
			die("read(ticker pipe): %s", n < 0 ? strerror(errno) : "end of file");
		for (ssize_t i = 0; i < n; i++) {
			if (marks[i] == 't')
				loop->ticks_read++;
			else if (marks[i] == 's')
				loop->stopping = true;
			else
				die("ticker pipe carried 0x%02x", (unsigned char)marks[i]);
		}
		return !loop->stopping;
	}
}

static void serve_ticker(struct loop *loop)
{
	if (options.mode == MODE_EPOLL_ET) {
		while (read_ticker(loop))
			;
	} else {
		read_ticker(loop);
	}
	if (options.mode == MODE_EPOLL_ONESHOT && !loop->stopping)
		epoll_register(loop, EPOLL_CTL_MOD, loop->ticker_read, EPOLLIN | EPOLLONESHOT,
			       &ticker_tag);
}

/* The dispatcher hands a connection to the next loop thread. */
static void hand_off(struct loop *dispatcher, int fd)
{
	struct loop *worker = &loops[1 + dispatcher->next_worker++ % (unsigned)(loop_count - 1)];

	while (write(worker->handoff_write, &fd, sizeof(fd)) != sizeof(fd)) {
		if (errno != EINTR)
			die("write(hand-off pipe): %s", strerror(errno));
	}
}

static void serve_listener(struct loop *loop)
{
	/* Level-triggered loops take a few per report and are told again;
	 * edge-triggered ones must take all; one-shot ones take one. */
	int limit = options.mode == MODE_EPOLL_ET ? INT32_MAX
		    : options.mode == MODE_EPOLL_ONESHOT ? 1 : 16;

	for (int taken = 0; taken < limit; taken++) {
		int fd = accept_nonblocking();

		if (fd < 0)
			break;
		if (options.dispatcher)
			hand_off(loop, fd);
		else
			adopt_connection(loop, fd);
	}
	if (options.mode == MODE_EPOLL_ONESHOT)
		epoll_register(loop, EPOLL_CTL_MOD, listener, EPOLLIN | EPOLLONESHOT, &listener_tag);
}

static void serve_handoff(struct loop *loop)
{
	int fds[64];

	for (;;) {
		ssize_t n = read(loop->handoff_read, fds, sizeof(fds));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0 || n % (ssize_t)sizeof(int) != 0)
			die("read(hand-off pipe) returned %zd: %s", n, n < 0 ? strerror(errno) : "");
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(int); i++)
			adopt_connection(loop, fds[i]);
		if (options.mode != MODE_EPOLL_ET)
			break;
	}
	if (options.mode == MODE_EPOLL_ONESHOT)
		epoll_register(loop, EPOLL_CTL_MOD, loop->handoff_read, EPOLLIN | EPOLLONESHOT,
			       &handoff_tag);
}

/* ---- the loops ------------------------------------------------------------- */

static struct connection *checked_connection(void *tag)
{
	struct connection *connection = tag;

	if (connection->magic != CONNECTION_MAGIC)
		die("epoll returned data %p that was never registered", tag);
	return connection;
}

static void run_epoll(struct loop *loop)
{
	struct epoll_event events[EVENTS_PER_WAIT];
	uint32_t flags = mode_flags();
	uint32_t listener_flags = flags | (options.exclusive ? EPOLLEXCLUSIVE : 0);
	sigset_t mask;

	loop->epoll_fd = loop->index % 2 ? epoll_create(16) : epoll_create1(EPOLL_CLOEXEC);
	if (loop->epoll_fd < 0)
		die("epoll_create: %s", strerror(errno));
	pthread_sigmask(SIG_SETMASK, NULL, &mask);
	epoll_register(loop, EPOLL_CTL_ADD, loop->ticker_read, EPOLLIN | flags, &ticker_tag);
	if (loop->has_listener)
		epoll_register(loop, EPOLL_CTL_ADD, listener, EPOLLIN | listener_flags, &listener_tag);
	if (loop->handoff_read >= 0)
		epoll_register(loop, EPOLL_CTL_ADD, loop->handoff_read, EPOLLIN | flags, &handoff_tag);
	while (!loop->stopping) {
		/* The loops take turns at the three ways of waiting. */
		struct timespec timeout = { .tv_sec = WAIT_TIMEOUT_MS / 1000 };
		int count = loop->index % 3 == 0
			    ? epoll_wait(loop->epoll_fd, events, EVENTS_PER_WAIT, WAIT_TIMEOUT_MS)
			    : loop->index % 3 == 1
			    ? epoll_pwait(loop->epoll_fd, events, EVENTS_PER_WAIT, WAIT_TIMEOUT_MS, &mask)
			    : epoll_pwait2(loop->epoll_fd, events, EVENTS_PER_WAIT, &timeout, &mask);

		if (count < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < count; i++) {
			void *tag = events[i].data.ptr;
			uint32_t ready = events[i].events;

			if (tag == &ticker_tag) {
				serve_ticker(loop);
			} else if (tag == &listener_tag) {
				serve_listener(loop);
			} else if (tag == &handoff_tag) {
				serve_handoff(loop);
			} else {
				struct connection *connection = checked_connection(tag);

				if (connection->fd < 0)
					continue;
				serve_connection(loop, connection,
						 ready & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR),
						 ready & (EPOLLOUT | EPOLLHUP | EPOLLERR));
			}
		}
		free_closed(loop);
	}
	close(loop->epoll_fd);
}

/* Descriptors a poll or select round waits for, in a fixed order: the
 * ticker, the listener or the hand-off pipe, then the connections. */
static size_t fixed_descriptors(const struct loop *loop, int *fds)
{
	size_t count = 0;

	fds[count++] = loop->ticker_read;
	if (loop->has_listener)
		fds[count++] = listener;
	if (loop->handoff_read >= 0)
		fds[count++] = loop->handoff_read;
	return count;
}

static void serve_fixed(struct loop *loop, int fd)
{
	if (fd == loop->ticker_read)
		serve_ticker(loop);
	else if (fd == listener)
		serve_listener(loop);
	else
		serve_handoff(loop);
}

static void run_poll(struct loop *loop)
{
	struct pollfd *pollfds = NULL;
	struct connection **round = NULL;
	size_t capacity = 0;
	sigset_t mask;

	pthread_sigmask(SIG_SETMASK, NULL, &mask);
	while (!loop->stopping) {
		int fixed[3];
		size_t fixed_count = fixed_descriptors(loop, fixed), count;
		int ready;

		count = fixed_count + loop->active_count;
		if (count > capacity) {
			capacity = 2 * count;
			pollfds = realloc(pollfds, capacity * sizeof(*pollfds));
			round = realloc(round, capacity * sizeof(*round));
			if (!pollfds || !round)
				die("out of memory for %zu poll entries", capacity);
		}
		for (size_t i = 0; i < fixed_count; i++)
			pollfds[i] = (struct pollfd){ .fd = fixed[i], .events = POLLIN };
		for (size_t i = 0; i < loop->active_count; i++) {
			struct connection *connection = loop->active[i];

			round[i] = connection;
			pollfds[fixed_count + i] = (struct pollfd){
				.fd = connection->fd,
				.events = connection->pending_length ? POLLOUT : POLLIN | POLLRDHUP,
			};
		}
		if (loop->index % 2) {
			struct timespec timeout = { .tv_sec = WAIT_TIMEOUT_MS / 1000 };

			ready = ppoll(pollfds, (nfds_t)count, &timeout, &mask);
		} else {
			ready = poll(pollfds, (nfds_t)count, WAIT_TIMEOUT_MS);
		}
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		for (size_t i = 0; i < count && ready > 0; i++) {
			short revents = pollfds[i].revents;

			if (!revents)
				continue;
			ready--;
			if (revents & POLLNVAL)
				die("poll reported POLLNVAL for descriptor %d", pollfds[i].fd);
			if (i < fixed_count) {
				serve_fixed(loop, pollfds[i].fd);
			} else if (round[i - fixed_count]->fd >= 0) {
				serve_connection(loop, round[i - fixed_count],
						 revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR),
						 revents & (POLLOUT | POLLHUP | POLLERR));
			}
		}
		if (ready != 0)
			die("poll returned more ready descriptors than it marked");
		free_closed(loop);
	}
	free(pollfds);
	free(round);
}

static void run_select(struct loop *loop)
{
	struct connection **round = NULL;
	size_t capacity = 0;
	sigset_t mask;

	pthread_sigmask(SIG_SETMASK, NULL, &mask);
	while (!loop->stopping) {
		int fixed[3], highest = -1, ready;
		size_t fixed_count = fixed_descriptors(loop, fixed), count = loop->active_count;
		fd_set readable, writable;

		if (count > capacity) {
			capacity = 2 * count;
			round = realloc(round, capacity * sizeof(*round));
			if (!round)
				die("out of memory for %zu select entries", capacity);
		}
		FD_ZERO(&readable);
		FD_ZERO(&writable);
		for (size_t i = 0; i < fixed_count; i++) {
			if (fixed[i] >= FD_SETSIZE)
				die("descriptor %d is not below FD_SETSIZE", fixed[i]);
			FD_SET(fixed[i], &readable);
			if (fixed[i] > highest)
				highest = fixed[i];
		}
		for (size_t i = 0; i < count; i++) {
			struct connection *connection = loop->active[i];

			round[i] = connection;
			FD_SET(connection->fd, connection->pending_length ? &writable : &readable);
			if (connection->fd > highest)
				highest = connection->fd;
		}
		if (loop->index % 2) {
			struct timespec timeout = { .tv_sec = WAIT_TIMEOUT_MS / 1000 };

			ready = pselect(highest + 1, &readable, &writable, NULL, &timeout, &mask);
		} else {
			struct timeval timeout = { .tv_sec = WAIT_TIMEOUT_MS / 1000 };

			ready = select(highest + 1, &readable, &writable, NULL, &timeout);
		}
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			die("select: %s", strerror(errno));
		}
		for (size_t i = 0; i < fixed_count; i++)
			if (FD_ISSET(fixed[i], &readable)) {
				ready--;
				serve_fixed(loop, fixed[i]);
			}
		for (size_t i = 0; i < count; i++) {
			struct connection *connection = round[i];
			int fd = connection->fd;
			bool can_read, can_write;

			if (fd < 0) /* closed this round: its bits were counted already */
				continue;
			can_read = FD_ISSET(fd, &readable);
			can_write = FD_ISSET(fd, &writable);
			if (!can_read && !can_write)
				continue;
			ready -= can_read + can_write;
			serve_connection(loop, connection, can_read, can_write);
		}
		if (ready != 0)
			die("select returned %d more ready descriptors than it marked", ready);
		free_closed(loop);
	}
	free(round);
}

static void *loop_thread(void *argument)
{
	struct loop *loop = argument;

	loop->buffer = malloc(MAX_READ_SIZE);
	if (!loop->buffer)
		die("out of memory for the read buffer");
	if (epoll_mode())
		run_epoll(loop);
	else if (options.mode == MODE_POLL)
		run_poll(loop);
	else
		run_select(loop);
	/* Every tick written before the stop marker must have been seen. */
	printf("loop %d pid=%d ticks_written=%llu ticks_read=%llu accepted=%llu bytes=%llu\n", loop->index, (int)getpid(),
	       (unsigned long long)atomic_load(&loop->ticks_written), loop->ticks_read,
	       loop->accepted, loop->bytes);
	fflush(stdout);
	free(loop->buffer);
	return NULL;
}

/* ---- one server process ------------------------------------------------------- */

static void make_ticker(struct loop *loop)
{
	if (options.ticker == TICKER_EVENTFD) {
		loop->ticker_read = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (loop->ticker_read < 0)
			die("eventfd: %s", strerror(errno));
		loop->ticker_write = loop->ticker_read;
	} else {
		int ends[2];

		if (pipe2(ends, O_CLOEXEC) != 0)
			die("pipe2: %s", strerror(errno));
		set_nonblocking_flag(ends[0]);
		loop->ticker_read = ends[0];
		loop->ticker_write = ends[1];
	}
}

static void write_ticker(struct loop *loop, bool stop)
{
	if (options.ticker == TICKER_EVENTFD) {
		uint64_t value = stop ? EVENTFD_STOP : 1;

		while (write(loop->ticker_write, &value, sizeof(value)) != sizeof(value))
			if (errno != EINTR)
				die("write(eventfd): %s", strerror(errno));
	} else {
		char mark = stop ? 's' : 't';

		while (write(loop->ticker_write, &mark, 1) != 1)
			if (errno != EINTR)
				die("write(ticker pipe): %s", strerror(errno));
	}
	if (!stop)
		atomic_fetch_add(&loop->ticks_written, 1);
}

/* Runs the loops of this process; the calling thread is the helper that
 * writes the ticks and waits for SIGTERM (blocked in every thread). */
static void run_process(void)
{
	sigset_t stop_signals;
	struct timespec interval = { .tv_nsec = TICK_INTERVAL_NS };

	loop_count = options.threads + (options.dispatcher ? 1 : 0);
	for (int i = 0; i < loop_count; i++) {
		struct loop *loop = &loops[i];

		loop->index = i;
		loop->handoff_read = loop->handoff_write = -1;
		loop->has_listener = !options.dispatcher || i == 0;
		make_ticker(loop);
		if (options.dispatcher && i > 0) {
			int ends[2];

			if (pipe2(ends, O_CLOEXEC) != 0)
				die("pipe2: %s", strerror(errno));
			set_nonblocking_flag(ends[0]);
			loop->handoff_read = ends[0];
			loop->handoff_write = ends[1];
		}
	}
	for (int i = 0; i < loop_count; i++)
		if (pthread_create(&loops[i].thread, NULL, loop_thread, &loops[i]) != 0)
			die("pthread_create failed");
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	for (;;) {
		int signal_number = sigtimedwait(&stop_signals, NULL, &interval);

		if (signal_number == SIGTERM || signal_number == SIGINT)
			break;
		if (signal_number < 0 && errno != EAGAIN && errno != EINTR)
			die("sigtimedwait: %s", strerror(errno));
		for (int i = 0; i < loop_count; i++)
			write_ticker(&loops[i], false);
	}
	for (int i = 0; i < loop_count; i++)
		write_ticker(&loops[i], true);
	for (int i = 0; i < loop_count; i++)
		pthread_join(loops[i].thread, NULL);
	printf("exit ok\n");
	fflush(stdout);
}

/* The pre-fork parent: forwards SIGTERM to its workers and reports how
 * they ended. */
static void run_workers(void)
{
	pid_t children[MAX_LOOPS];
	sigset_t stop_signals;
	int signal_number, failed = 0;

	for (int i = 0; i < options.workers; i++) {
		children[i] = fork();
		if (children[i] < 0)
			die("fork: %s", strerror(errno));
		if (children[i] == 0) {
			run_process();
			/* exit, not _exit: the shim publishes the child's
			 * final counters from its exit handlers. */
			exit(0);
		}
	}
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	while (sigwait(&stop_signals, &signal_number) != 0)
		;
	for (int i = 0; i < options.workers; i++)
		kill(children[i], SIGTERM);
	for (int i = 0; i < options.workers; i++) {
		int status;

		while (waitpid(children[i], &status, 0) < 0)
			if (errno != EINTR)
				die("waitpid: %s", strerror(errno));
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "event_echo: worker %d ended with status %#x\n",
				(int)children[i], status);
			failed++;
		}
	}
	printf("workers exited=%d failed=%d\n", options.workers, failed);
	fflush(stdout);
}

__attribute__((noreturn))
static void usage(void)
{
	fprintf(stderr,
		"usage: event_echo [-p PORT] [-6] [-e epoll-lt|epoll-et|epoll-oneshot|poll|select]\n"
		"                  [-t THREADS] [-f WORKERS] [-D] [-x] [-k pipe|eventfd]\n"
		"                  [-m FAMILY] [-b READ_SIZE]\n");
	exit(2);
}

static enum loop_mode parse_mode(const char *text)
{
	for (int mode = MODE_EPOLL_LT; mode <= MODE_SELECT; mode++)
		if (!strcmp(text, mode_names[mode]))
			return (enum loop_mode)mode;
	usage();
}

int main(int argc, char **argv)
{
	bool ipv6 = false;
	int port = 0, option;
	sigset_t stop_signals;

	server_name = "event_echo";
	while ((option = getopt(argc, argv, "p:6e:t:f:Dxk:m:b:")) != -1) {
		switch (option) {
		case 'p':
			port = parse_port(optarg);
			break;
		case '6':
			ipv6 = true;
			break;
		case 'e':
			options.mode = parse_mode(optarg);
			break;
		case 't':
			options.threads = (int)parse_number(optarg, 1, MAX_LOOPS - 1, "thread count");
			break;
		case 'f':
			options.workers = (int)parse_number(optarg, 1, MAX_LOOPS, "worker count");
			break;
		case 'D':
			options.dispatcher = true;
			break;
		case 'x':
			options.exclusive = true;
			break;
		case 'k':
			if (!strcmp(optarg, "pipe"))
				options.ticker = TICKER_PIPE;
			else if (!strcmp(optarg, "eventfd"))
				options.ticker = TICKER_EVENTFD;
			else
				usage();
			break;
		case 'm':
			options.family = parse_family(optarg);
			break;
		case 'b':
			options.fixed_read_size = (size_t)parse_number(optarg, 1, MAX_READ_SIZE, "read size");
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (options.exclusive && options.mode != MODE_EPOLL_LT && options.mode != MODE_EPOLL_ET)
		die("-x needs epoll-lt or epoll-et (EPOLLEXCLUSIVE does not combine with EPOLLONESHOT)");
	ignore_sigpipe();
	raise_fd_limit();
	/* Only the helper thread takes SIGTERM, with sigtimedwait. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	listener = open_listener(port, ipv6);
	set_nonblocking_flag(listener);
	if (options.workers)
		run_workers();
	else
		run_process();
	return 0;
}
