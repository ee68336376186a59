// SPDX-License-Identifier: MIT
/*
 * Unit tests of a lane's submission batching (preload/lane.c, preload/io.c)
 * with a real io_uring and real loopback TCP connections.
 *
 * The promise under test is the shim's main saving: write() only queues, and
 * the thread's next blocking call carries every queued send and its own
 * operation in one io_uring_enter.  So: writes to one or several sockets
 * enter the ring zero times and put nothing on the wire; the next read(),
 * with its data already there, enters exactly once and the peers then have
 * every byte, in order; RINGSTEER_BATCH dirty sockets force a submit at the
 * write; a writer past RINGSTEER_TXQ_BYTES waits in the ring and the stream
 * still arrives whole and in order, with the FIN after it; and bytes queued
 * by a thread that then blocks outside the shim are sent by the flusher.
 *
 * The test binary links the whole library, so its own read(), write(),
 * close() and shutdown() are the shim's, as in a preloaded process.  The
 * connections are made with the real functions and only the server side is
 * registered with the shim; the client side is plain kernel, read with the
 * real functions.  The lane's counters (rs_lane_get()->stats) tell how many
 * times the ring was entered.  The flusher is held off (RINGSTEER_FLUSH_US
 * set to 10 s) so that it cannot send queued bytes behind a test's back,
 * except in the test that is about the flusher.
 */
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ringsteer.h"

#define WAIT_LIMIT_NS (10 * 1000000000ull)
#define MAX_CONNECTIONS 4

struct connection {
	int server; /* registered with the shim */
	int client; /* plain kernel socket */
};

static struct rs_lane *lane;
static int listener = -1;
static struct sockaddr_in listen_address;
static struct connection connections[MAX_CONNECTIONS];
static int connection_count;
static unsigned saved_batch;

static uint64_t now_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

/* ---- connections ---------------------------------------------------------------- */

/* Connects a client to the listener and registers the accepted side with
 * the shim, as its accept() would.  No cmocka assertion: a forked child
 * uses it too.  Returns 0 or -1. */
static int connect_pair(struct connection *connection)
{
	struct rs_socket *socket;
	int one = 1;

	connection->server = -1;
	connection->client = REAL(socket)(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connection->client < 0)
		return -1;
	if (REAL(connect)(connection->client, (struct sockaddr *)&listen_address,
			  sizeof(listen_address)) < 0)
		goto fail;
	connection->server = REAL(accept4)(listener, NULL, NULL, SOCK_CLOEXEC);
	if (connection->server < 0)
		goto fail;
	/* Small writes must not wait for Nagle: only the shim decides here
	 * when bytes leave. */
	REAL(setsockopt)(connection->server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	REAL(setsockopt)(connection->client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	socket = rs_socket_new(connection->server, RS_SOCKET_CONNECTED);
	if (!socket)
		goto fail;
	rs_fd_install(connection->server, socket);
	return 0;
fail:
	REAL(close)(connection->client);
	if (connection->server >= 0)
		REAL(close)(connection->server);
	return -1;
}

static struct connection *open_connection(void)
{
	struct connection *connection;
	struct rs_socket *socket;

	assert_true(connection_count < MAX_CONNECTIONS);
	connection = &connections[connection_count];
	if (connect_pair(connection) < 0)
		fail_msg("cannot set up a loopback connection: %s", strerror(errno));
	connection_count++;
	socket = rs_fd_get(connection->server);
	assert_non_null(socket);
	rs_socket_unref(socket);
	return connection;
}

/* Receives up to length bytes on a plain socket, for at most 10 s; returns
 * how many came. */
static size_t client_receive(int fd, void *buffer, size_t length)
{
	uint64_t deadline = now_ns() + WAIT_LIMIT_NS;
	size_t received = 0;

	while (received < length && now_ns() < deadline) {
		struct pollfd readable = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (REAL(poll)(&readable, 1, 100) <= 0)
			continue;
		n = REAL(recv)(fd, (char *)buffer + received, length - received, MSG_DONTWAIT);
		if (n > 0)
			received += (size_t)n;
		else if (n == 0 || (errno != EAGAIN && errno != EINTR))
			break;
	}
	return received;
}

static void assert_client_receives(const struct connection *connection, const char *expected,
				   size_t length)
{
	char *buffer = malloc(length + 1);
	size_t received;

	assert_non_null(buffer);
	received = client_receive(connection->client, buffer, length);
	if (received != length)
		fail_msg("the peer of fd %d received %zu of %zu bytes", connection->server, received,
			 length);
	assert_memory_equal(buffer, expected, length);
	free(buffer);
}

/* True if nothing has reached the client: the shim has not sent. */
static bool client_has_nothing(const struct connection *connection)
{
	char byte;

	return REAL(recv)(connection->client, &byte, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/* The client sends, and the test waits until the server side can read it,
 * so that the shim's read finds its data already there. */
static void client_send_and_wait(const struct connection *connection, const char *text)
{
	struct pollfd readable = { .fd = connection->server, .events = POLLIN };

	assert_int_equal(REAL(send)(connection->client, text, strlen(text), MSG_NOSIGNAL),
			 (ssize_t)strlen(text));
	assert_int_equal(REAL(poll)(&readable, 1, 10000), 1);
}

static void write_all(const struct connection *connection, const char *text)
{
	ssize_t n = write(connection->server, text, strlen(text));

	if (n != (ssize_t)strlen(text))
		fail_msg("write(%d) of %zu bytes returned %zd (%s)", connection->server,
			 strlen(text), n, n < 0 ? strerror(errno) : "short");
}

/* ---- counters ---------------------------------------------------------------- */

struct counters {
	uint64_t ring_enters;
	uint64_t ring_ops;
	uint64_t kernel_ops;
	uint64_t bytes_received;
	uint64_t bytes_sent;
	uint64_t send_queue_waits;
};

static struct counters counters_now(void)
{
	const struct rs_lane_stats *stats = lane->stats;

	return (struct counters){
		.ring_enters = stats->ring_enters,
		.ring_ops = stats->ring_ops,
		.kernel_ops = stats->kernel_ops,
		.bytes_received = stats->bytes_received,
		.bytes_sent = stats->bytes_sent,
		.send_queue_waits = stats->send_queue_waits,
	};
}

static void assert_enters_since(const struct counters *before, uint64_t expected,
				const char *when)
{
	uint64_t enters = lane->stats->ring_enters - before->ring_enters;

	if (enters != expected)
		fail_msg("%s: %llu ring enters, expected %llu", when, (unsigned long long)enters,
			 (unsigned long long)expected);
}

/* ---- setup ------------------------------------------------------------------------- */

static int group_setup(void **state)
{
	struct io_uring probe;
	socklen_t length = sizeof(listen_address);
	int ret;

	/* A lane that loses track of an operation hangs its thread: end the
	 * whole program, loudly, long before any test could need this long. */
	alarm(240);
	rs_init();
	if (!rs_active) {
		print_message("the shim did not start (is RINGSTEER_DISABLE set?)\n");
		return -1;
	}
	/* The only reason to skip: this kernel (or its seccomp policy, or
	 * kernel.io_uring_disabled) refuses io_uring altogether. */
	ret = io_uring_queue_init(8, &probe, 0);
	if (ret == -ENOSYS || ret == -EPERM) {
		printf("SKIP: io_uring is not available here (io_uring_queue_init: %s); the lane tests need it\n",
		       strerror(-ret));
		fflush(stdout);
		exit(77);
	}
	if (ret < 0) {
		print_message("io_uring_queue_init failed: %s\n", strerror(-ret));
		return -1;
	}
	io_uring_queue_exit(&probe);

	/* Hold the flusher off: it must not send what a test has queued.  Set
	 * before the first lane exists, since the flusher starts with it. */
	rs_config.flush_us = 10 * 1000 * 1000;
	lane = rs_lane_get();
	if (!lane) {
		print_message("rs_lane_get returned no lane although io_uring works\n");
		return -1;
	}

	listener = REAL(socket)(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&listen_address, 0, sizeof(listen_address));
	listen_address.sin_family = AF_INET;
	listen_address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (listener < 0 ||
	    REAL(bind)(listener, (struct sockaddr *)&listen_address, sizeof(listen_address)) < 0 ||
	    REAL(listen)(listener, 64) < 0 ||
	    getsockname(listener, (struct sockaddr *)&listen_address, &length) < 0) {
		print_message("cannot listen on 127.0.0.1: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	if (listener >= 0)
		REAL(close)(listener);
	return 0;
}

static int setup(void **state)
{
	connection_count = 0;
	saved_batch = rs_config.batch;
	return 0;
}

/* Closes what the test opened, through the shim's close() for the server
 * side, even after a failed assertion. */
static int teardown(void **state)
{
	int failures = 0;

	rs_config.batch = saved_batch;
	for (int i = 0; i < connection_count; i++) {
		if (close(connections[i].server) < 0) {
			print_message("close(%d) failed: %s\n", connections[i].server,
				      strerror(errno));
			failures++;
		}
		REAL(close)(connections[i].client);
	}
	connection_count = 0;
	return failures ? -1 : 0;
}

/* ---- batching -------------------------------------------------------------------- */

static void test_writes_wait_for_the_next_read(void **state)
{
	static const char *const pieces[] = { "first;", "second;", "third;", "fourth;", "last." };
	struct connection *connection = open_connection();
	struct counters before, after;
	char expected[64] = "", buffer[16];
	ssize_t n;

	client_send_and_wait(connection, "ping");
	before = counters_now();
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		write_all(connection, pieces[i]);
		strcat(expected, pieces[i]);
		assert_enters_since(&before, 0, "after a write");
	}
	assert_int_equal(lane->stats->ring_ops, before.ring_ops);
	/* Marked dirty once, however many writes. */
	assert_int_equal(lane->dirty_count, 1);
	assert_true(client_has_nothing(connection));

	n = read(connection->server, buffer, sizeof(buffer));
	assert_int_equal(n, 4);
	assert_memory_equal(buffer, "ping", 4);
	assert_enters_since(&before, 1, "read with its data there, after queued writes");
	after = counters_now();
	assert_int_equal(after.kernel_ops, before.kernel_ops);
	assert_int_equal(after.bytes_received - before.bytes_received, 4);
	assert_client_receives(connection, expected, strlen(expected));
}

static void test_writes_to_several_sockets_share_one_enter(void **state)
{
	struct connection *all[3];
	char expected[3][128] = { "", "", "" };
	struct counters before, after;
	char buffer[16];

	for (int i = 0; i < 3; i++)
		all[i] = open_connection();
	client_send_and_wait(all[1], "request");
	before = counters_now();
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < 3; i++) {
			char piece[32];

			snprintf(piece, sizeof(piece), "socket %d round %d;", i, round);
			write_all(all[i], piece);
			strcat(expected[i], piece);
			assert_enters_since(&before, 0, "after writes to several sockets");
		}
	}
	assert_int_equal(lane->dirty_count, 3);
	for (int i = 0; i < 3; i++)
		assert_true(client_has_nothing(all[i]));

	/* A read on one of them carries every socket's sends. */
	assert_int_equal(read(all[1]->server, buffer, sizeof(buffer)), 7);
	assert_memory_equal(buffer, "request", 7);
	assert_enters_since(&before, 1, "read after writes to three sockets");
	after = counters_now();
	/* Three sends and the receive, all through the ring. */
	assert_true(after.ring_ops - before.ring_ops >= 4);
	assert_int_equal(after.kernel_ops, before.kernel_ops);
	for (int i = 0; i < 3; i++)
		assert_client_receives(all[i], expected[i], strlen(expected[i]));
}

static void test_batch_limit_forces_submit(void **state)
{
	struct connection *all[4];
	struct counters before;
	char buffer[8];

	rs_config.batch = 3;
	for (int i = 0; i < 4; i++)
		all[i] = open_connection();
	client_send_and_wait(all[3], "go");
	before = counters_now();

	write_all(all[0], "zero-a;");
	write_all(all[0], "zero-b;");
	write_all(all[1], "one;");
	assert_enters_since(&before, 0, "two dirty sockets, batch 3");
	assert_true(client_has_nothing(all[0]));
	assert_true(client_has_nothing(all[1]));

	/* The third dirty socket submits all three at once, at the write. */
	write_all(all[2], "two;");
	assert_enters_since(&before, 1, "the third dirty socket, batch 3");
	assert_int_equal(lane->dirty_count, 0);
	/* No read from the server: the submit alone puts them on the wire. */
	assert_client_receives(all[0], "zero-a;zero-b;", 14);
	assert_client_receives(all[1], "one;", 4);
	assert_client_receives(all[2], "two;", 4);

	/* The count starts again. */
	write_all(all[3], "three;");
	assert_enters_since(&before, 1, "one dirty socket after the batch");
	assert_true(client_has_nothing(all[3]));
	assert_int_equal(read(all[3]->server, buffer, sizeof(buffer)), 2);
	assert_enters_since(&before, 2, "read after the batch");
	assert_client_receives(all[3], "three;", 6);
}

static void test_batch_of_one_submits_every_write(void **state)
{
	struct connection *first = open_connection();
	struct connection *second = open_connection();
	struct counters before;
	char buffer[8];

	rs_config.batch = 1;
	before = counters_now();
	write_all(first, "alpha");
	assert_enters_since(&before, 1, "a write with batch 1");
	assert_client_receives(first, "alpha", 5);
	write_all(second, "beta");
	assert_enters_since(&before, 2, "a second write with batch 1");
	assert_client_receives(second, "beta", 4);

	/* The completions are reaped with the next read, which still costs
	 * one enter. */
	client_send_and_wait(first, "ok");
	before = counters_now();
	assert_int_equal(read(first->server, buffer, sizeof(buffer)), 2);
	assert_enters_since(&before, 1, "read after batch-1 writes");
}

/* The steady state of a blocking server: read a request, write the answer,
 * read the next request.  Each read carries the previous answer's send and
 * costs one enter, for more cycles than the completion queue has entries,
 * so that any operation counted in flight but never completed would show. */
#define CYCLES 3000

static void test_request_response_one_enter_each(void **state)
{
	struct connection *connection = open_connection();
	struct counters before, after;
	int wrong_answers = 0;

	before = counters_now();
	for (int cycle = 0; cycle < CYCLES; cycle++) {
		char request[32], answer[96], received[64];
		ssize_t length;

		snprintf(request, sizeof(request), "request %d", cycle);
		client_send_and_wait(connection, request);
		length = read(connection->server, received, sizeof(received) - 1);
		if (length != (ssize_t)strlen(request))
			fail_msg("cycle %d: read returned %zd", cycle, length);
		received[length] = 0;
		snprintf(answer, sizeof(answer), "answer to %s", received);
		write_all(connection, answer);
		/* The answer queued now leaves with the next read; check the
		 * one before it, which that read should have sent. */
		if (cycle > 0) {
			char previous[64];
			size_t expected;

			snprintf(previous, sizeof(previous), "answer to request %d", cycle - 1);
			expected = strlen(previous);
			if (client_receive(connection->client, received, expected) != expected ||
			    memcmp(received, previous, expected))
				wrong_answers++;
		}
	}
	after = counters_now();
	assert_int_equal(wrong_answers, 0);
	if (after.ring_enters - before.ring_enters != CYCLES)
		fail_msg("%d request/answer cycles took %llu ring enters, expected one each", CYCLES,
			 (unsigned long long)(after.ring_enters - before.ring_enters));
	assert_int_equal(after.kernel_ops, before.kernel_ops);
}

/* ---- fd reuse ----------------------------------------------------------------------- */

/* A socket closed behind the shim's back (a raw close system call; glibc's
 * closefrom also closes without calling close_range through the PLT) while
 * it has queued bytes, and its fd number reused by a new connection: the
 * old connection's bytes must never go out on the new one.  Installing the
 * new socket drops the table's reference to the stale one; its queued bytes
 * must not survive elsewhere (the lane's dirty list) and leave under the fd
 * number. */
static void test_stale_queue_not_sent_on_reused_fd(void **state)
{
	static const char stale_bytes[] = "bytes of the old connection";
	struct connection *old_connection = open_connection();
	struct connection *new_connection;
	char buffer[8];
	int number = old_connection->server;

	write_all(old_connection, stale_bytes);
	assert_int_equal(syscall(SYS_close, number), 0);
	/* Teardown must not close the number twice: it is the new socket's. */
	REAL(close)(old_connection->client);
	connection_count--;

	new_connection = open_connection();
	if (new_connection->server != number) {
		/* Make the reuse happen: the kernel gives the lowest free
		 * number, but a test must not depend on it. */
		struct rs_socket *moved = rs_fd_remove(new_connection->server);

		assert_non_null(moved);
		assert_int_equal(REAL(dup3)(new_connection->server, number, O_CLOEXEC), number);
		REAL(close)(new_connection->server);
		new_connection->server = number;
		moved->fd = number;
		rs_fd_install(number, moved);
	}
	client_send_and_wait(new_connection, "hello");
	assert_int_equal(read(number, buffer, sizeof(buffer)), 5);
	write_all(new_connection, "fresh");
	client_send_and_wait(new_connection, "again");
	assert_int_equal(read(number, buffer, sizeof(buffer)), 5);

	/* The new peer gets exactly what was written to the new socket. */
	{
		char received[sizeof(stale_bytes) + 8] = "";
		size_t length = client_receive(new_connection->client, received, 5);

		if (length != 5 || memcmp(received, "fresh", 5))
			fail_msg("the new connection's peer received \"%.*s\" instead of \"fresh\"",
				 (int)length, received);
		assert_true(client_has_nothing(new_connection));
	}
}

/* ---- order under pressure ---------------------------------------------------- */

#define STREAM_BYTES (8u << 20)

static unsigned char stream_byte(size_t position)
{
	return (unsigned char)((position * 167 + (position >> 10) * 13 + 5) & 0xff);
}

struct stream_reader {
	int fd;
	size_t received;
	size_t first_bad; /* SIZE_MAX: every byte right */
	bool end_of_file;
	bool timed_out;
};

/* Reads the client side until the FIN, checking every byte's position in
 * the stream; then answers with one byte so the server's read() returns.
 * Bounded in time: if the stream stalls, it resets the connection, which
 * makes a writer blocked in the shim return. */
static void *read_stream(void *argument)
{
	struct stream_reader *reader = argument;
	uint64_t deadline = now_ns() + 6 * WAIT_LIMIT_NS;
	static unsigned char buffer[65536];

	reader->first_bad = SIZE_MAX;
	while (now_ns() < deadline) {
		struct pollfd readable = { .fd = reader->fd, .events = POLLIN };
		ssize_t n;

		if (REAL(poll)(&readable, 1, 100) <= 0)
			continue;
		n = REAL(recv)(reader->fd, buffer, sizeof(buffer), MSG_DONTWAIT);
		if (n == 0) {
			reader->end_of_file = true;
			break;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			break;
		}
		for (ssize_t i = 0; i < n && reader->first_bad == SIZE_MAX; i++) {
			if (buffer[i] != stream_byte(reader->received + (size_t)i))
				reader->first_bad = reader->received + (size_t)i;
		}
		reader->received += (size_t)n;
	}
	if (reader->end_of_file) {
		REAL(send)(reader->fd, "k", 1, MSG_NOSIGNAL);
	} else {
		struct sockaddr unspecified = { .sa_family = AF_UNSPEC };

		reader->timed_out = true;
		REAL(connect)(reader->fd, &unspecified, sizeof(unspecified));
	}
	return NULL;
}

static uint64_t random_state = 0x1a2e5eedull;

static uint64_t next_random(void)
{
	random_state ^= random_state >> 12;
	random_state ^= random_state << 25;
	random_state ^= random_state >> 27;
	return random_state * 2685821657736338717ull;
}

static void test_stream_in_order_past_the_queue_cap(void **state)
{
	struct connection *connection = open_connection();
	struct stream_reader reader = { .fd = connection->client };
	unsigned char *stream = malloc(STREAM_BYTES);
	struct counters before, after;
	pthread_t thread;
	size_t written = 0;
	int pieces = 0;
	char answer = 0;
	ssize_t answered;

	assert_non_null(stream);
	for (size_t i = 0; i < STREAM_BYTES; i++)
		stream[i] = stream_byte(i);
	before = counters_now();
	assert_int_equal(pthread_create(&thread, NULL, read_stream, &reader), 0);
	while (written < STREAM_BYTES) {
		/* Mostly small writes, some larger than the queue cap. */
		size_t length = next_random() % 8 ? 1 + next_random() % 20000
						   : 1 + next_random() % (2 * rs_config.txq_bytes);
		ssize_t n;

		if (length > STREAM_BYTES - written)
			length = STREAM_BYTES - written;
		n = write(connection->server, stream + written, length);
		if (n != (ssize_t)length) {
			print_message("write %d of %zu bytes at %zu returned %zd (%s)\n", pieces,
				      length, written, n, n < 0 ? strerror(errno) : "short");
			break;
		}
		written += length;
		pieces++;
	}
	/* The FIN must follow the queued bytes. */
	assert_int_equal(shutdown(connection->server, SHUT_WR), 0);
	/* A blocking read keeps the lane going until the reader answers. */
	answered = read(connection->server, &answer, 1);
	assert_int_equal(pthread_join(thread, NULL), 0);
	free(stream);

	assert_int_equal(written, STREAM_BYTES);
	assert_false(reader.timed_out);
	if (reader.first_bad != SIZE_MAX)
		fail_msg("byte %zu of the stream arrived wrong", reader.first_bad);
	assert_int_equal(reader.received, STREAM_BYTES);
	assert_true(reader.end_of_file);
	assert_int_equal(answered, 1);
	assert_int_equal(answer, 'k');
	after = counters_now();
	print_message("%d writes, %llu ring enters, %llu waits on a full queue\n", pieces,
		      (unsigned long long)(after.ring_enters - before.ring_enters),
		      (unsigned long long)(after.send_queue_waits - before.send_queue_waits));
	/* More was written than the queue holds, and nothing read meanwhile:
	 * the writer must have waited. */
	assert_true(after.send_queue_waits > before.send_queue_waits);
	assert_int_equal(after.bytes_sent - before.bytes_sent, STREAM_BYTES);
	assert_int_equal(after.kernel_ops, before.kernel_ops);
}

/* ---- the flusher ----------------------------------------------------------------- */

/* In a child with its own lane and a flusher deadline of 1 ms: bytes
 * queued by a thread that then blocks outside the shim still leave.
 * Returns an exit status; 0 is success. */
static int flusher_child(void)
{
	static const char message[] = "sent by the flusher";
	struct connection connection;
	struct rs_lane *child_lane;
	char buffer[sizeof(message)];
	uint64_t enters;

	rs_config.flush_us = 1000;
	child_lane = rs_lane_get();
	if (!child_lane || child_lane == lane) {
		fprintf(stderr, "child: no fresh lane\n");
		return 10;
	}
	if (connect_pair(&connection) < 0) {
		fprintf(stderr, "child: no connection: %s\n", strerror(errno));
		return 11;
	}
	enters = child_lane->stats->ring_enters;
	if (write(connection.server, message, sizeof(message)) != (ssize_t)sizeof(message)) {
		fprintf(stderr, "child: write failed: %s\n", strerror(errno));
		return 12;
	}
	/* Only real functions from here: the thread is away from the shim. */
	if (client_receive(connection.client, buffer, sizeof(buffer)) != sizeof(message)) {
		fprintf(stderr, "child: the queued bytes never left\n");
		return 13;
	}
	if (memcmp(buffer, message, sizeof(message))) {
		fprintf(stderr, "child: the bytes arrived wrong\n");
		return 14;
	}
	/* The flusher sends through the kernel; only the owner enters. */
	if (child_lane->stats->ring_enters != enters) {
		fprintf(stderr, "child: the ring was entered while its owner was away\n");
		return 15;
	}
	close(connection.server);
	REAL(close)(connection.client);
	return 0;
}

static void test_flusher_sends_for_a_thread_away(void **state)
{
	uint64_t deadline = now_ns() + 3 * WAIT_LIMIT_NS;
	int status = 0;
	pid_t child, done = 0;

	fflush(stdout);
	fflush(stderr);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		int code = flusher_child();

		/* _exit: nothing of the parent's (cmocka, stdio) may run
		 * twice; the child's counters file is removed by hand. */
		rs_stats_exit();
		_exit(code);
	}
	while (done == 0 && now_ns() < deadline) {
		struct timespec pause = { .tv_sec = 0, .tv_nsec = 10000000 };

		done = waitpid(child, &status, WNOHANG);
		if (done == 0)
			nanosleep(&pause, NULL);
	}
	if (done == 0) {
		kill(child, SIGKILL);
		waitpid(child, &status, 0);
		fail_msg("the child did not finish in %llu s",
			 (unsigned long long)(3 * WAIT_LIMIT_NS / 1000000000ull));
	}
	assert_int_equal(done, child);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the child failed (status 0x%x): see its message above", status);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_writes_wait_for_the_next_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writes_to_several_sockets_share_one_enter,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_limit_forces_submit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_of_one_submits_every_write, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_request_response_one_enter_each, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stale_queue_not_sent_on_reused_fd, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stream_in_order_past_the_queue_cap, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_flusher_sends_for_a_thread_away, setup,
						teardown),
	};

	return cmocka_run_group_tests_name("lane", tests, group_setup, group_teardown);
}
