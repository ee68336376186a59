// SPDX-License-Identifier: MIT
/*
 * loadgen: closed-loop echo load generator for the ringsteer benchmark.
 *
 * Each connection sends one message, waits for the complete echo, checks that
 * every byte came back unchanged, and only then sends the next one, so the
 * request rate measures the server's round-trip cost rather than how deep the
 * client can queue.  Connections are spread over one or two threads, each
 * driving its share with epoll.  Latency of every request completed in the
 * measured interval goes into a log-linear histogram; the result is one
 * machine-readable line on stdout:
 *
 *   requests=N seconds=S rps=R mean_us=.. p50_us=.. p90_us=.. p99_us=..
 *   p999_us=.. max_us=.. conns=C size=B threads=T
 *
 * With -g ("gated") the measured interval is started and ended under the
 * control of whoever reads our stdout, so that it can start counters on the
 * server exactly around it: after the warm-up every connection goes idle,
 * loadgen prints "ready" and waits for a line on stdin; it then measures for
 * the given duration, lets the requests in flight finish (they are counted),
 * prints the result line and waits for another line (or end of file) on
 * stdin before closing its connections.  The server is therefore idle outside
 * the measured interval.
 *
 * With --histogram FILE it also writes the measured interval's latencies to
 * FILE, before the result line, so that whoever waits for that line finds
 * the file complete: a comment line, then one "latency_us count" line per
 * non-empty histogram bucket (its midpoint, as the percentiles use), in
 * increasing order.  The buckets bound the file to a few thousand lines
 * however long the run, and runs can be merged by adding counts of equal
 * latencies.
 *
 * Exit status: 0 on success, 1 when an echo differs from what was sent, a
 * connection fails or the histogram file cannot be written, 2 on bad usage.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 2
#define MAX_CONNECTIONS 10000
#define MAX_MESSAGE_SIZE (16u << 20)
/* Messages start at a varying offset into a random pattern so consecutive
 * requests on a connection carry different bytes: a server that echoed a stale
 * buffer would be caught. */
#define PATTERN_OFFSETS 251
#define RECEIVE_CHUNK (64u << 10)
#define EVENTS_PER_WAIT 64
/* How long a request may stay unanswered while we wait for in-flight requests
 * to finish before we declare the server hung. */
#define DRAIN_TIMEOUT_NS (10ull * 1000000000ull)

/*
 * Histogram: values in nanoseconds.  Below 2^(SUB_BITS+1) every value has its
 * own bucket; above, each power of two is split into 2^SUB_BITS buckets, so the
 * relative error stays under 1/64 (under half a microsecond at 30 us) over the
 * whole 64-bit range.
 */
#define SUB_BITS 6
#define SUB_COUNT (1u << SUB_BITS)
#define LINEAR_LIMIT (2u * SUB_COUNT)
#define HISTOGRAM_BUCKETS (LINEAR_LIMIT + (64 - (SUB_BITS + 1)) * SUB_COUNT)

struct histogram {
	uint64_t counts[HISTOGRAM_BUCKETS];
	uint64_t total;
	uint64_t max_ns;
	/* Sum in nanoseconds: 2^64 ns is 584 years of accumulated latency. */
	uint64_t sum_ns;
};

enum phase {
	PHASE_WARMUP,  /* requests run, nothing recorded */
	PHASE_MEASURE, /* requests run and are recorded */
	PHASE_DRAIN,   /* no new requests; those in flight are still recorded */
	PHASE_PAUSE,   /* no new requests; those in flight are not recorded */
	PHASE_STOP,    /* threads exit once their connections are idle */
};

struct connection {
	int fd;
	unsigned id;
	uint64_t sequence;
	size_t pattern_offset;
	size_t bytes_sent;
	size_t bytes_received;
	uint64_t start_ns;
	bool in_flight;
	bool waiting_for_writable;
};

struct worker {
	pthread_t thread;
	int epoll_fd;
	int wake_fd;
	struct connection *connections;
	size_t connection_count;
	size_t idle_count; /* touched only by the worker itself */
	struct histogram histogram;
	unsigned char *receive_buffer;
};

struct options {
	const char *host;
	int port;
	unsigned connections;
	double duration_seconds;
	double warmup_seconds;
	size_t message_size;
	unsigned threads;
	bool gated;
	const char *histogram_path; /* NULL: no histogram file */
};

static struct options options = {
	.host = "127.0.0.1",
	.port = -1,
	.connections = 1,
	.duration_seconds = 10,
	.warmup_seconds = 1,
	.message_size = 64,
	.threads = 1,
	.gated = false,
};

static unsigned char *pattern;
static _Atomic int current_phase = PHASE_WARMUP;
/* Requests started and not yet completed, over all threads: the controlling
 * thread waits for it to reach zero before a pause or stop is complete. */
static atomic_long requests_in_flight;

static void die(const char *format, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *format, ...)
{
	va_list arguments;

	fflush(stdout);
	fputs("loadgen: ", stderr);
	va_start(arguments, format);
	vfprintf(stderr, format, arguments);
	va_end(arguments);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static unsigned bucket_of(uint64_t value)
{
	if (value < LINEAR_LIMIT)
		return (unsigned)value;
	unsigned top_bit = 63u - (unsigned)__builtin_clzll(value);
	unsigned shift = top_bit - SUB_BITS;
	unsigned mantissa = (unsigned)(value >> shift); /* in [SUB_COUNT, 2 * SUB_COUNT) */
	return LINEAR_LIMIT + (top_bit - (SUB_BITS + 1)) * SUB_COUNT + (mantissa - SUB_COUNT);
}

/* Middle of a bucket's value range: the estimate we report for it. */
static double bucket_midpoint(unsigned bucket)
{
	if (bucket < LINEAR_LIMIT)
		return bucket;
	unsigned index = bucket - LINEAR_LIMIT;
	unsigned top_bit = index / SUB_COUNT + SUB_BITS + 1;
	unsigned shift = top_bit - SUB_BITS;
	uint64_t mantissa = index % SUB_COUNT + SUB_COUNT;
	uint64_t lower = mantissa << shift;
	return (double)lower + (double)((1ull << shift) - 1) / 2.0;
}

static void histogram_record(struct histogram *histogram, uint64_t value_ns)
{
	histogram->counts[bucket_of(value_ns)]++;
	histogram->total++;
	histogram->sum_ns += value_ns;
	if (value_ns > histogram->max_ns)
		histogram->max_ns = value_ns;
}

static void histogram_merge(struct histogram *into, const struct histogram *from)
{
	for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++)
		into->counts[i] += from->counts[i];
	into->total += from->total;
	into->sum_ns += from->sum_ns;
	if (from->max_ns > into->max_ns)
		into->max_ns = from->max_ns;
}

/* Value (in microseconds) below or at which `fraction` of the samples lie. */
static double histogram_percentile_us(const struct histogram *histogram, double fraction)
{
	if (histogram->total == 0)
		return 0;
	uint64_t rank = (uint64_t)(fraction * (double)histogram->total + 0.999999);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++) {
		seen += histogram->counts[i];
		if (seen >= rank) {
			double value = bucket_midpoint(i);
			if (value > (double)histogram->max_ns)
				value = (double)histogram->max_ns;
			return value / 1000.0;
		}
	}
	return (double)histogram->max_ns / 1000.0;
}

/* The format is described at the top of this file. */
static void histogram_write(const struct histogram *histogram, const char *path)
{
	FILE *file = fopen(path, "w");
	if (file == NULL)
		die("cannot create %s: %s", path, strerror(errno));
	fprintf(file, "# loadgen latency histogram: latency_us count (%llu requests)\n",
		(unsigned long long)histogram->total);
	for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++) {
		if (histogram->counts[i] == 0)
			continue;
		double value = bucket_midpoint(i);
		if (value > (double)histogram->max_ns)
			value = (double)histogram->max_ns;
		fprintf(file, "%.3f %llu\n", value / 1000.0, (unsigned long long)histogram->counts[i]);
	}
	/* A full disk shows only at the flush: fclose is checked too. */
	bool failed = ferror(file) != 0;
	if (fclose(file) != 0)
		failed = true;
	if (failed)
		die("cannot write %s: %s", path, strerror(errno));
}

static void set_writable_interest(struct worker *worker, struct connection *connection, bool wanted)
{
	if (connection->waiting_for_writable == wanted)
		return;
	struct epoll_event event = {
		.events = EPOLLIN | (wanted ? EPOLLOUT : 0),
		.data.ptr = connection,
	};
	if (epoll_ctl(worker->epoll_fd, EPOLL_CTL_MOD, connection->fd, &event) < 0)
		die("epoll_ctl: %s", strerror(errno));
	connection->waiting_for_writable = wanted;
}

static void send_pending(struct worker *worker, struct connection *connection)
{
	while (connection->bytes_sent < options.message_size) {
		const unsigned char *from = pattern + connection->pattern_offset + connection->bytes_sent;
		ssize_t sent = send(connection->fd, from, options.message_size - connection->bytes_sent,
				    MSG_NOSIGNAL);
		if (sent < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				set_writable_interest(worker, connection, true);
				return;
			}
			die("connection %u: send: %s", connection->id, strerror(errno));
		}
		connection->bytes_sent += (size_t)sent;
	}
	set_writable_interest(worker, connection, false);
}

/* Sends the next message on a connection already counted as in flight. */
static void begin_request(struct worker *worker, struct connection *connection)
{
	connection->pattern_offset =
		(size_t)((connection->id * 131u + connection->sequence * 37u) % PATTERN_OFFSETS);
	connection->bytes_sent = 0;
	connection->bytes_received = 0;
	connection->in_flight = true;
	connection->start_ns = now_ns();
	send_pending(worker, connection);
}

static bool phase_starts_requests(int phase)
{
	return phase == PHASE_WARMUP || phase == PHASE_MEASURE;
}

/*
 * Counting the request before looking at the phase (both sequentially
 * consistent) closes the race with the controller, which stores the phase
 * before reading the count: either we see the new phase and back off, or the
 * controller sees our request and waits for it.
 */
static void start_idle_connection(struct worker *worker, struct connection *connection)
{
	atomic_fetch_add(&requests_in_flight, 1);
	if (!phase_starts_requests(atomic_load(&current_phase))) {
		atomic_fetch_sub(&requests_in_flight, 1);
		return;
	}
	worker->idle_count--;
	begin_request(worker, connection);
}

static void complete_request(struct worker *worker, struct connection *connection)
{
	uint64_t finished_ns = now_ns();
	/* Read while this request still counts as in flight: see above. */
	int phase = atomic_load(&current_phase);

	if (phase == PHASE_MEASURE || phase == PHASE_DRAIN)
		histogram_record(&worker->histogram, finished_ns - connection->start_ns);
	connection->in_flight = false;
	connection->sequence++;
	if (phase_starts_requests(phase)) {
		begin_request(worker, connection);
		return;
	}
	worker->idle_count++;
	/* Release: the controller reads our histogram once the count is zero. */
	atomic_fetch_sub_explicit(&requests_in_flight, 1, memory_order_release);
}

/*
 * One recv per readiness event: level-triggered epoll reports the socket again
 * if more is waiting, and a second recv that only returns EAGAIN would add a
 * system call per request to the client's cost.
 */
static void receive_echo(struct worker *worker, struct connection *connection)
{
	ssize_t received = recv(connection->fd, worker->receive_buffer, RECEIVE_CHUNK, 0);

	if (received < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		die("connection %u: recv: %s", connection->id, strerror(errno));
	}
	if (received == 0)
		die("connection %u: server closed the connection (request %llu, %zu of %zu bytes echoed)",
		    connection->id, (unsigned long long)connection->sequence,
		    connection->bytes_received, options.message_size);
	if (!connection->in_flight ||
	    connection->bytes_received + (size_t)received > connection->bytes_sent)
		die("connection %u: server sent %zd bytes that were never sent to it (request %llu)",
		    connection->id, received, (unsigned long long)connection->sequence);
	const unsigned char *expected = pattern + connection->pattern_offset + connection->bytes_received;
	if (memcmp(worker->receive_buffer, expected, (size_t)received) != 0) {
		size_t offset = 0;
		while (worker->receive_buffer[offset] == expected[offset])
			offset++;
		die("connection %u: echoed byte %zu of request %llu differs (sent 0x%02x, got 0x%02x)",
		    connection->id, connection->bytes_received + offset,
		    (unsigned long long)connection->sequence, expected[offset],
		    worker->receive_buffer[offset]);
	}
	connection->bytes_received += (size_t)received;
	if (connection->bytes_received == options.message_size)
		complete_request(worker, connection);
}

static void handle_wake(struct worker *worker)
{
	uint64_t value;

	if (read(worker->wake_fd, &value, sizeof(value)) < 0 && errno != EAGAIN)
		die("eventfd read: %s", strerror(errno));
	for (size_t i = 0; i < worker->connection_count; i++)
		if (!worker->connections[i].in_flight)
			start_idle_connection(worker, &worker->connections[i]);
}

static void *worker_main(void *argument)
{
	struct worker *worker = argument;
	struct epoll_event events[EVENTS_PER_WAIT];

	for (;;) {
		if (atomic_load_explicit(&current_phase, memory_order_acquire) == PHASE_STOP &&
		    worker->idle_count == worker->connection_count)
			return NULL;
		/* The timeout only bounds how long a stop can go unnoticed; the
		 * controller wakes us through the eventfd. */
		int ready = epoll_wait(worker->epoll_fd, events, EVENTS_PER_WAIT, 1000);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < ready; i++) {
			struct connection *connection = events[i].data.ptr;
			if (connection == NULL) {
				handle_wake(worker);
				continue;
			}
			if (events[i].events & EPOLLOUT)
				send_pending(worker, connection);
			if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				receive_echo(worker, connection);
		}
	}
}

static void wake_workers(struct worker *workers)
{
	uint64_t one = 1;

	for (unsigned i = 0; i < options.threads; i++)
		if (write(workers[i].wake_fd, &one, sizeof(one)) < 0)
			die("eventfd write: %s", strerror(errno));
}

static void sleep_seconds(double seconds)
{
	struct timespec duration = {
		.tv_sec = (time_t)seconds,
		.tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9),
	};
	while (nanosleep(&duration, &duration) < 0 && errno == EINTR)
		;
}

/* Waits, bounded, until no request is in flight. */
static void wait_until_idle(void)
{
	uint64_t deadline = now_ns() + DRAIN_TIMEOUT_NS;

	while (atomic_load(&requests_in_flight) != 0) {
		if (now_ns() > deadline)
			die("%ld requests still unanswered after %llu s", atomic_load(&requests_in_flight),
			    DRAIN_TIMEOUT_NS / 1000000000ull);
		sleep_seconds(0.0002);
	}
}

/* Waits for one line on stdin; end of file counts as a line. */
static bool wait_for_line(void)
{
	char line[64];

	return fgets(line, sizeof(line), stdin) != NULL;
}

static int connect_one(const struct sockaddr_storage *address, socklen_t address_length, unsigned id)
{
	int fd = socket(address->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (connect(fd, (const struct sockaddr *)address, address_length) < 0)
		die("connection %u: connect to %s port %d: %s", id, options.host, options.port,
		    strerror(errno));
	/* Without it a message split over two writes would wait for a delayed
	 * acknowledgement and the latency would measure TCP timers. */
	int one = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		die("setsockopt TCP_NODELAY: %s", strerror(errno));
	int nonblocking = 1;
	if (ioctl(fd, FIONBIO, &nonblocking) < 0)
		die("ioctl FIONBIO: %s", strerror(errno));
	return fd;
}

/* Only loopback: this tool must never load another machine. */
static socklen_t resolve_loopback(struct sockaddr_storage *address)
{
	memset(address, 0, sizeof(*address));
	struct sockaddr_in *ipv4 = (struct sockaddr_in *)address;
	struct sockaddr_in6 *ipv6 = (struct sockaddr_in6 *)address;

	if (inet_pton(AF_INET, options.host, &ipv4->sin_addr) == 1) {
		if ((ntohl(ipv4->sin_addr.s_addr) >> 24) != 127)
			die("%s is not a loopback address (127.0.0.0/8 or ::1 only)", options.host);
		ipv4->sin_family = AF_INET;
		ipv4->sin_port = htons((uint16_t)options.port);
		return sizeof(*ipv4);
	}
	if (inet_pton(AF_INET6, options.host, &ipv6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&ipv6->sin6_addr))
			die("%s is not a loopback address (127.0.0.0/8 or ::1 only)", options.host);
		ipv6->sin6_family = AF_INET6;
		ipv6->sin6_port = htons((uint16_t)options.port);
		return sizeof(*ipv6);
	}
	die("cannot parse address %s", options.host);
}

static void usage(FILE *to)
{
	fprintf(to,
		"usage: loadgen -p PORT [-H ADDRESS] [-c CONNECTIONS] [-d SECONDS] [-s MESSAGE_SIZE]\n"
		"               [-w WARMUP_SECONDS] [-t THREADS] [-g] [--histogram FILE]\n"
		"  -H  loopback address of the echo server (default 127.0.0.1; ::1 for IPv6)\n"
		"  -c  concurrent connections, each one request in flight (default 1)\n"
		"  -d  measured seconds (default 10)\n"
		"  -s  bytes per message (default 64)\n"
		"  -w  warm-up seconds before measuring (default 1)\n"
		"  -t  client threads, 1 or 2 (default 1)\n"
		"  -g  gated: print \"ready\" after the warm-up and wait for a line on stdin\n"
		"      before measuring; after the result line wait for another before closing\n"
		"  --histogram FILE  write the measured latencies as \"latency_us count\" lines\n");
}

static double parse_number(const char *text, const char *what, double minimum, double maximum)
{
	char *end;
	errno = 0;
	double value = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || value < minimum || value > maximum) {
		fprintf(stderr, "loadgen: bad %s '%s' (expected %g..%g)\n", what, text, minimum, maximum);
		exit(2);
	}
	return value;
}

/* Long options only, so their codes stay clear of the one-letter ones. */
enum { OPTION_HISTOGRAM = 256 };

static void parse_options(int argc, char **argv)
{
	static const struct option long_options[] = {
		{ "histogram", required_argument, NULL, OPTION_HISTOGRAM },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int option;

	while ((option = getopt_long(argc, argv, "p:H:c:d:s:w:t:gh", long_options, NULL)) != -1) {
		switch (option) {
		case 'p': options.port = (int)parse_number(optarg, "port", 1, 65535); break;
		case 'H': options.host = optarg; break;
		case 'c': options.connections = (unsigned)parse_number(optarg, "connection count", 1, MAX_CONNECTIONS); break;
		case 'd': options.duration_seconds = parse_number(optarg, "duration", 0.01, 86400); break;
		case 'w': options.warmup_seconds = parse_number(optarg, "warm-up", 0, 86400); break;
		case 's': options.message_size = (size_t)parse_number(optarg, "message size", 1, MAX_MESSAGE_SIZE); break;
		case 't': options.threads = (unsigned)parse_number(optarg, "thread count", 1, MAX_THREADS); break;
		case 'g': options.gated = true; break;
		case OPTION_HISTOGRAM: options.histogram_path = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (options.port < 0 || optind != argc) {
		usage(stderr);
		exit(2);
	}
	if (options.threads > options.connections)
		options.threads = options.connections;
}

static void fill_pattern(void)
{
	size_t length = options.message_size + PATTERN_OFFSETS;
	pattern = malloc(length);
	if (pattern == NULL)
		die("out of memory");
	/* xorshift64: any varied bytes do; they need not be unpredictable. */
	uint64_t state = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
	for (size_t i = 0; i < length; i++) {
		state ^= state << 13;
		state ^= state >> 7;
		state ^= state << 17;
		pattern[i] = (unsigned char)(state >> 32);
	}
}

static void setup_workers(struct worker *workers, struct connection *connections)
{
	struct sockaddr_storage address;
	socklen_t address_length = resolve_loopback(&address);

	for (unsigned t = 0; t < options.threads; t++) {
		struct worker *worker = &workers[t];
		worker->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
		worker->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		worker->receive_buffer = malloc(RECEIVE_CHUNK);
		if (worker->epoll_fd < 0 || worker->wake_fd < 0 || worker->receive_buffer == NULL)
			die("worker setup: %s", strerror(errno));
		struct epoll_event wake_event = { .events = EPOLLIN, .data.ptr = NULL };
		if (epoll_ctl(worker->epoll_fd, EPOLL_CTL_ADD, worker->wake_fd, &wake_event) < 0)
			die("epoll_ctl: %s", strerror(errno));
	}
	/* Contiguous slices, one per thread. */
	unsigned next = 0;
	for (unsigned t = 0; t < options.threads; t++) {
		struct worker *worker = &workers[t];
		unsigned share = options.connections / options.threads +
				 (t < options.connections % options.threads ? 1 : 0);
		worker->connections = &connections[next];
		worker->connection_count = share;
		worker->idle_count = share;
		for (unsigned i = 0; i < share; i++, next++) {
			struct connection *connection = &connections[next];
			connection->id = next;
			connection->fd = connect_one(&address, address_length, next);
			struct epoll_event event = { .events = EPOLLIN, .data.ptr = connection };
			if (epoll_ctl(worker->epoll_fd, EPOLL_CTL_ADD, connection->fd, &event) < 0)
				die("epoll_ctl: %s", strerror(errno));
		}
	}
}

static void print_result(struct worker *workers, uint64_t start_ns, uint64_t end_ns)
{
	struct histogram *total = calloc(1, sizeof(*total));
	if (total == NULL)
		die("out of memory");
	for (unsigned t = 0; t < options.threads; t++)
		histogram_merge(total, &workers[t].histogram);
	if (options.histogram_path != NULL)
		histogram_write(total, options.histogram_path);
	double seconds = (double)(end_ns - start_ns) / 1e9;
	printf("requests=%llu seconds=%.3f rps=%.0f mean_us=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f "
	       "p999_us=%.1f max_us=%.1f conns=%u size=%zu threads=%u\n",
	       (unsigned long long)total->total, seconds, (double)total->total / seconds,
	       total->total ? (double)total->sum_ns / (double)total->total / 1000.0 : 0.0,
	       histogram_percentile_us(total, 0.50), histogram_percentile_us(total, 0.90),
	       histogram_percentile_us(total, 0.99), histogram_percentile_us(total, 0.999),
	       (double)total->max_ns / 1000.0, options.connections, options.message_size,
	       options.threads);
	fflush(stdout);
	free(total);
}

int main(int argc, char **argv)
{
	parse_options(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	fill_pattern();

	struct worker *workers = calloc(options.threads, sizeof(*workers));
	struct connection *connections = calloc(options.connections, sizeof(*connections));
	if (workers == NULL || connections == NULL)
		die("out of memory");
	setup_workers(workers, connections);

	atomic_store(&current_phase, PHASE_WARMUP);
	for (unsigned t = 0; t < options.threads; t++) {
		int error = pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]);
		if (error != 0)
			die("pthread_create: %s", strerror(error));
	}
	wake_workers(workers);
	sleep_seconds(options.warmup_seconds);

	if (options.gated) {
		atomic_store(&current_phase, PHASE_PAUSE);
		wait_until_idle();
		printf("ready\n");
		fflush(stdout);
		if (!wait_for_line())
			die("stdin closed before the measurement started");
	}
	uint64_t start_ns = now_ns();
	atomic_store(&current_phase, PHASE_MEASURE);
	wake_workers(workers);
	sleep_seconds(options.duration_seconds);
	atomic_store(&current_phase, PHASE_DRAIN);
	wait_until_idle();
	uint64_t end_ns = now_ns();

	/* Workers are idle now, so their histograms are stable. */
	print_result(workers, start_ns, end_ns);
	if (options.gated)
		wait_for_line();

	atomic_store(&current_phase, PHASE_STOP);
	wake_workers(workers);
	for (unsigned t = 0; t < options.threads; t++)
		pthread_join(workers[t].thread, NULL);
	for (unsigned i = 0; i < options.connections; i++)
		close(connections[i].fd);
	return 0;
}
