// SPDX-License-Identifier: MIT
/*
 * echo_uring: a TCP echo server written directly on io_uring (liburing 2.3),
 * the benchmark's reference for what io_uring itself can do on this machine.
 * run.sh measures it next to echo_epoll plain and under the shim: the shim
 * carries an unmodified epoll server on io_uring, and this is how cheap an
 * echo gets when the server is written for io_uring in the first place.  It
 * is never run under the shim.
 *
 * One thread, one ring (SINGLE_ISSUER and DEFER_TASKRUN when the kernel has
 * them): a multishot accept on the listener, a multishot recv per connection
 * into a ring of provided buffers, and a send of each received buffer straight
 * from that buffer, one send in flight per connection so the echo stays in
 * order.  A buffer goes back to the ring once its bytes are sent; when the
 * ring runs dry a connection's recv ends with ENOBUFS and is re-armed as soon
 * as buffers come back, so a peer that does not read holds at most the
 * buffers it filled.
 *
 * Usage: echo_uring -p PORT [-6]   (PORT 0 lets the kernel choose)
 * Prints "listening PORT" once listening and runs until killed.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_listener.h"

#define SUBMISSION_ENTRIES 1024
/* A multishot recv posts a completion per received chunk for every
 * connection: the completion queue must never overflow. */
#define COMPLETION_ENTRIES 16384
#define BUFFER_GROUP 0
#define BUFFER_COUNT 4096 /* a power of two, as the buffer ring requires */
#define BUFFER_SIZE 4096

enum operation { OPERATION_ACCEPT, OPERATION_RECV, OPERATION_SEND };

/* A received buffer waiting to be echoed: its bytes from offset on. */
struct segment {
	unsigned short buffer_id;
	unsigned int length;
	unsigned int offset;
};

struct connection {
	bool open;
	bool recv_armed;
	bool send_in_flight;
	bool waiting_for_buffers;
	/* End of file or an error: close once nothing is in flight. */
	bool finishing;
	/* FIFO of received buffers, oldest at head. */
	struct segment *segments;
	unsigned int segment_head, segment_count, segment_capacity;
};

static struct io_uring ring;
static struct io_uring_buf_ring *buffer_ring;
static char *buffers;
static int buffer_mask;
/* Buffers handed back since the ring's tail was last published. */
static int buffers_returned;

static struct connection *connections;
static int connection_capacity;
static int listener;

/* Connections whose recv ended with ENOBUFS, to re-arm when buffers return. */
static int *starved;
static int starved_count;

static void die(const char *what, int error)
{
	fprintf(stderr, "echo_uring: %s: %s\n", what, strerror(error));
	exit(1);
}

static uint64_t pack(enum operation operation, int fd)
{
	return (uint64_t)fd << 2 | (uint64_t)operation;
}

static struct io_uring_sqe *get_sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	while (sqe == NULL) {
		/* Full submission queue: hand it to the kernel and retry. */
		int result = io_uring_submit(&ring);
		if (result < 0 && result != -EINTR && result != -EBUSY)
			die("io_uring_submit", -result);
		sqe = io_uring_get_sqe(&ring);
	}
	return sqe;
}

static void arm_accept(void)
{
	struct io_uring_sqe *sqe = get_sqe();
	io_uring_prep_multishot_accept(sqe, listener, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, pack(OPERATION_ACCEPT, listener));
}

static void arm_recv(int fd)
{
	struct io_uring_sqe *sqe = get_sqe();
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BUFFER_GROUP;
	io_uring_sqe_set_data64(sqe, pack(OPERATION_RECV, fd));
	connections[fd].recv_armed = true;
}

static void submit_send(int fd)
{
	struct connection *connection = &connections[fd];
	struct segment *segment = &connection->segments[connection->segment_head];
	struct io_uring_sqe *sqe = get_sqe();
	io_uring_prep_send(sqe, fd, buffers + (size_t)segment->buffer_id * BUFFER_SIZE + segment->offset,
			   segment->length - segment->offset, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, pack(OPERATION_SEND, fd));
	connection->send_in_flight = true;
}

static void return_buffer(unsigned short buffer_id)
{
	io_uring_buf_ring_add(buffer_ring, buffers + (size_t)buffer_id * BUFFER_SIZE, BUFFER_SIZE, buffer_id,
			      buffer_mask, buffers_returned);
	buffers_returned++;
}

static void drop_segments(struct connection *connection)
{
	while (connection->segment_count > 0) {
		return_buffer(connection->segments[connection->segment_head].buffer_id);
		connection->segment_head = (connection->segment_head + 1) % connection->segment_capacity;
		connection->segment_count--;
	}
}

/* Closes the connection when it is finishing and nothing of it is in flight
 * any more: an in-flight request would otherwise outlive the fd number. */
static void close_if_done(int fd)
{
	struct connection *connection = &connections[fd];
	if (!connection->finishing || connection->recv_armed || connection->send_in_flight ||
	    connection->waiting_for_buffers)
		return;
	if (connection->segment_count > 0) {
		/* The peer half-closed: echo what it sent before closing. */
		submit_send(fd);
		return;
	}
	free(connection->segments);
	memset(connection, 0, sizeof(*connection));
	close(fd);
}

/* A send failed: the peer is gone.  Shutting the socket down ends its
 * multishot recv, whose last completion then closes it. */
static void fail_connection(int fd)
{
	struct connection *connection = &connections[fd];
	drop_segments(connection);
	connection->finishing = true;
	if (connection->waiting_for_buffers) {
		connection->waiting_for_buffers = false;
		for (int i = 0; i < starved_count; i++)
			if (starved[i] == fd)
				starved[i] = starved[--starved_count];
	}
	if (connection->recv_armed)
		shutdown(fd, SHUT_RDWR);
	close_if_done(fd);
}

static void handle_accept(struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		arm_accept();
	if (cqe->res < 0) {
		if (cqe->res != -ECONNABORTED && cqe->res != -EINTR && cqe->res != -EMFILE && cqe->res != -ENFILE)
			die("accept", -cqe->res);
		return;
	}
	int fd = cqe->res;
	if (fd >= connection_capacity) {
		int capacity = connection_capacity ? connection_capacity : 1024;
		while (capacity <= fd)
			capacity *= 2;
		struct connection *grown = realloc(connections, (size_t)capacity * sizeof(*grown));
		int *grown_starved = realloc(starved, (size_t)capacity * sizeof(*grown_starved));
		if (grown == NULL || grown_starved == NULL)
			die("realloc", ENOMEM);
		memset(grown + connection_capacity, 0, (size_t)(capacity - connection_capacity) * sizeof(*grown));
		connections = grown;
		starved = grown_starved;
		connection_capacity = capacity;
	}
	/* Echoes split over two reads would otherwise wait for delayed
	 * acknowledgements, which would measure TCP timers. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	connections[fd].open = true;
	arm_recv(fd);
}

static void queue_segment(struct connection *connection, unsigned short buffer_id, unsigned int length)
{
	if (connection->segment_count == connection->segment_capacity) {
		unsigned int capacity = connection->segment_capacity ? connection->segment_capacity * 2 : 4;
		struct segment *grown = malloc(capacity * sizeof(*grown));
		if (grown == NULL)
			die("malloc", ENOMEM);
		/* Unwrap the FIFO into the larger array. */
		for (unsigned int i = 0; i < connection->segment_count; i++)
			grown[i] = connection->segments[(connection->segment_head + i) % connection->segment_capacity];
		free(connection->segments);
		connection->segments = grown;
		connection->segment_head = 0;
		connection->segment_capacity = capacity;
	}
	unsigned int tail = (connection->segment_head + connection->segment_count) % connection->segment_capacity;
	connection->segments[tail] = (struct segment){ .buffer_id = buffer_id, .length = length };
	connection->segment_count++;
}

static void handle_recv(int fd, struct io_uring_cqe *cqe)
{
	struct connection *connection = &connections[fd];
	bool more = cqe->flags & IORING_CQE_F_MORE;

	if (cqe->res > 0) {
		unsigned short buffer_id = (unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		if (connection->finishing) {
			/* The send side failed: nobody will read the echo. */
			return_buffer(buffer_id);
		} else {
			queue_segment(connection, buffer_id, (unsigned int)cqe->res);
			if (!connection->send_in_flight)
				submit_send(fd);
		}
		if (!more && !connection->finishing)
			arm_recv(fd);
		else if (!more)
			connection->recv_armed = false;
		close_if_done(fd);
		return;
	}
	/* Every other completion ends the multishot recv. */
	connection->recv_armed = false;
	if (cqe->res == -ENOBUFS && !connection->finishing) {
		connection->waiting_for_buffers = true;
		starved[starved_count++] = fd;
		return;
	}
	/* End of file or a receive error. */
	connection->finishing = true;
	close_if_done(fd);
}

static void handle_send(int fd, struct io_uring_cqe *cqe)
{
	struct connection *connection = &connections[fd];
	connection->send_in_flight = false;
	if (cqe->res < 0) {
		fail_connection(fd);
		return;
	}
	struct segment *segment = &connection->segments[connection->segment_head];
	segment->offset += (unsigned int)cqe->res;
	if (segment->offset >= segment->length) {
		return_buffer(segment->buffer_id);
		connection->segment_head = (connection->segment_head + 1) % connection->segment_capacity;
		connection->segment_count--;
	}
	/* A short send resends the rest; otherwise the next buffer goes. */
	if (connection->segment_count > 0)
		submit_send(fd);
	else
		close_if_done(fd);
}

static void handle_completion(struct io_uring_cqe *cqe)
{
	uint64_t data = io_uring_cqe_get_data64(cqe);
	int fd = (int)(data >> 2);
	switch ((enum operation)(data & 3)) {
	case OPERATION_ACCEPT: handle_accept(cqe); break;
	case OPERATION_RECV: handle_recv(fd, cqe); break;
	case OPERATION_SEND: handle_send(fd, cqe); break;
	}
}

/* Publishes the returned buffers in one store, then re-arms the connections
 * that had run out of them. */
static void publish_returned_buffers(void)
{
	if (buffers_returned == 0)
		return;
	io_uring_buf_ring_advance(buffer_ring, buffers_returned);
	buffers_returned = 0;
	while (starved_count > 0) {
		int fd = starved[--starved_count];
		connections[fd].waiting_for_buffers = false;
		arm_recv(fd);
	}
}

static void setup_ring(void)
{
	/* Newest flags first; older kernels refuse unknown ones with EINVAL. */
	static const unsigned int flag_choices[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int result = -EINVAL;
	for (size_t i = 0; i < sizeof(flag_choices) / sizeof(flag_choices[0]) && result == -EINVAL; i++) {
		struct io_uring_params params;
		memset(&params, 0, sizeof(params));
		params.flags = flag_choices[i] | IORING_SETUP_CQSIZE;
		params.cq_entries = COMPLETION_ENTRIES;
		result = io_uring_queue_init_params(SUBMISSION_ENTRIES, &ring, &params);
		if (result == 0 && i > 0)
			fprintf(stderr, "echo_uring: running without SINGLE_ISSUER|DEFER_TASKRUN\n");
	}
	if (result < 0)
		die("io_uring_queue_init_params", -result);

	/* liburing 2.3 has no io_uring_setup_buf_ring: map the ring ourselves. */
	size_t ring_bytes = BUFFER_COUNT * sizeof(struct io_uring_buf);
	buffer_ring = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buffer_ring == MAP_FAILED)
		die("mmap", errno);
	struct io_uring_buf_reg registration;
	memset(&registration, 0, sizeof(registration));
	registration.ring_addr = (uint64_t)(uintptr_t)buffer_ring;
	registration.ring_entries = BUFFER_COUNT;
	registration.bgid = BUFFER_GROUP;
	result = io_uring_register_buf_ring(&ring, &registration, 0);
	if (result < 0)
		die("io_uring_register_buf_ring", -result);
	io_uring_buf_ring_init(buffer_ring);

	buffers = malloc((size_t)BUFFER_COUNT * BUFFER_SIZE);
	if (buffers == NULL)
		die("malloc", ENOMEM);
	buffer_mask = io_uring_buf_ring_mask(BUFFER_COUNT);
	for (int id = 0; id < BUFFER_COUNT; id++)
		return_buffer((unsigned short)id);
	publish_returned_buffers();
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
		fprintf(stderr, "usage: echo_uring -p PORT [-6]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	listener = bench_listen_on("echo_uring", ipv6, port, 0);
	/* The ring is created on the thread that drives it, as DEFER_TASKRUN
	 * requires. */
	setup_ring();
	arm_accept();
	printf("listening %d\n", bench_bound_port("echo_uring", listener));
	fflush(stdout);

	for (;;) {
		int result = io_uring_submit_and_wait(&ring, 1);
		if (result < 0 && result != -EINTR && result != -EBUSY)
			die("io_uring_submit_and_wait", -result);
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe) {
			handle_completion(cqe);
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
		publish_returned_buffers();
	}
}
