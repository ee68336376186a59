// SPDX-License-Identifier: MIT
/*
 * steer_load: the load of the steering benchmark (tools/bench/steer_bench.sh)
 * against tests/servers/steer_workers.  It recreates the dynamic imbalance
 * real servers see: each of C client slots runs sessions one after the
 * other, each session a new connection (so placement keeps happening under
 * load) that sends a few requests, one at a time, and closes.  A session is
 * heavy with probability -f (every request `heavy`, about 40 times the CPU
 * of `light`) and independently hot with probability -o (-m times as many
 * requests).  A light request that lands on a worker busy with heavy ones
 * waits: its latency shows how well connections were placed.
 *
 *   steer_load -p PORT -w WORKERS [-H ADDRESS] [-c SLOTS] [-d SECONDS]
 *              [-W WARMUP_SECONDS] [-r REQUESTS] [-f HEAVY] [-o HOT] [-m HOT_FACTOR]
 *              [--histogram FILE]
 *
 * Prints one line:
 *   sessions=N requests=N rps=R light_p50_us=.. light_p99_us=..
 *   light_p999_us=.. heavy_p50_us=.. spread=X counts=C0,C1,..
 * where counts are the sessions each worker served in the measured time
 * and spread is their max/mean.  With --histogram FILE it first writes the
 * light requests' latencies of the measured time to FILE, for plotting the
 * distribution: a comment line, then "latency_us count" per non-empty
 * bucket (its midpoint), in increasing order; the buckets keep it to a few
 * thousand lines whatever the duration.  Exits 1 when the server misbehaves
 * (a connection refused or reset, a malformed answer, no answer in 10 s)
 * or the file cannot be written, 2 on bad usage.  Connects only to
 * loopback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS 4096
#define MAX_WORKERS 64
#define ANSWER_BYTES 128
/* Log-linear histogram: 64 buckets per power of two of nanoseconds. */
#define SUB_BUCKETS 64
#define HISTOGRAM_BUCKETS (64 * SUB_BUCKETS)
#define STUCK_NS (10ull * 1000000000ull)

struct histogram {
	uint64_t buckets[HISTOGRAM_BUCKETS];
	uint64_t count;
};

struct slot {
	int fd;
	bool connecting;
	bool heavy;
	bool counted_worker;
	int remaining;       /* requests left in the session */
	uint64_t sent_ns;    /* of the request in flight */
	size_t length;
	char answer[ANSWER_BYTES];
};

static struct {
	struct sockaddr_storage address;
	socklen_t address_length;
	int workers;
	int slot_count;
	int requests;
	double heavy_fraction, hot_fraction;
	int hot_factor;
	bool measuring;
	uint64_t sessions, light_requests, heavy_requests;
	uint64_t counts[MAX_WORKERS];
	struct histogram light, heavy;
	struct slot slots[MAX_SLOTS];
	int epoll;
	uint64_t random_state;
} load;

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *format, ...)
{
	va_list ap;

	fprintf(stderr, "steer_load: ");
	va_start(ap, format);
	vfprintf(stderr, format, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

/* xorshift64*: reproducible and cheap. */
static double random_unit(void)
{
	load.random_state ^= load.random_state >> 12;
	load.random_state ^= load.random_state << 25;
	load.random_state ^= load.random_state >> 27;
	return (double)((load.random_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static unsigned bucket_of(uint64_t ns)
{
	unsigned power, shift;

	if (ns < SUB_BUCKETS)
		return (unsigned)ns;
	power = 63u - (unsigned)__builtin_clzll(ns); /* >= 6 */
	shift = power - 6;
	return (power - 5) * SUB_BUCKETS + (unsigned)((ns >> shift) - SUB_BUCKETS);
}

static uint64_t bucket_value(unsigned bucket)
{
	unsigned power, sub;

	if (bucket < SUB_BUCKETS)
		return bucket;
	power = bucket / SUB_BUCKETS + 5;
	sub = bucket % SUB_BUCKETS;
	/* the middle of the bucket */
	return ((uint64_t)(SUB_BUCKETS + sub) << (power - 6)) + ((1ull << (power - 6)) >> 1);
}

static void record(struct histogram *histogram, uint64_t ns)
{
	unsigned bucket = bucket_of(ns);

	histogram->buckets[bucket < HISTOGRAM_BUCKETS ? bucket : HISTOGRAM_BUCKETS - 1]++;
	histogram->count++;
}

static double percentile_us(const struct histogram *histogram, double fraction)
{
	uint64_t rank = (uint64_t)ceil(fraction * (double)histogram->count), seen = 0;

	if (!histogram->count)
		return 0;
	if (!rank)
		rank = 1;
	for (unsigned bucket = 0; bucket < HISTOGRAM_BUCKETS; bucket++) {
		seen += histogram->buckets[bucket];
		if (seen >= rank)
			return (double)bucket_value(bucket) / 1000.0;
	}
	return 0;
}

/* The format is described at the top of this file. */
static void write_histogram(const struct histogram *histogram, const char *path)
{
	FILE *file = fopen(path, "w");
	bool failed;

	if (!file)
		die("cannot create %s: %s", path, strerror(errno));
	fprintf(file, "# steer_load light-request latency histogram: latency_us count (%llu requests)\n",
		(unsigned long long)histogram->count);
	for (unsigned bucket = 0; bucket < HISTOGRAM_BUCKETS; bucket++)
		if (histogram->buckets[bucket])
			fprintf(file, "%.3f %llu\n", (double)bucket_value(bucket) / 1000.0,
				(unsigned long long)histogram->buckets[bucket]);
	/* A full disk shows only at the flush: fclose is checked too. */
	failed = ferror(file) != 0;
	if (fclose(file) != 0)
		failed = true;
	if (failed)
		die("cannot write %s: %s", path, strerror(errno));
}

/* ---- sessions -------------------------------------------------------------------- */

static void start_session(struct slot *slot)
{
	struct epoll_event event = { .events = EPOLLOUT, .data.ptr = slot };
	int one = 1;

	slot->fd = socket(load.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (slot->fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(slot->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	slot->heavy = random_unit() < load.heavy_fraction;
	slot->remaining = load.requests * (random_unit() < load.hot_fraction ? load.hot_factor : 1);
	slot->connecting = true;
	slot->counted_worker = false;
	slot->length = 0;
	if (connect(slot->fd, (struct sockaddr *)&load.address, load.address_length) != 0 &&
	    errno != EINPROGRESS)
		die("connect: %s", strerror(errno));
	slot->sent_ns = now_ns();
	if (epoll_ctl(load.epoll, EPOLL_CTL_ADD, slot->fd, &event) != 0)
		die("epoll_ctl: %s", strerror(errno));
}

static void send_request(struct slot *slot)
{
	const char *request = slot->heavy ? "heavy\n" : "light\n";
	struct epoll_event event = { .events = EPOLLIN, .data.ptr = slot };

	/* Before the send: on loopback the server may run and answer before
	 * send returns to us, and a clock read after it would record a few
	 * microseconds for a request that took longer. */
	slot->sent_ns = now_ns();
	if (send(slot->fd, request, strlen(request), MSG_NOSIGNAL) != (ssize_t)strlen(request))
		die("send: %s", strerror(errno));
	if (slot->connecting) {
		slot->connecting = false;
		if (epoll_ctl(load.epoll, EPOLL_CTL_MOD, slot->fd, &event) != 0)
			die("epoll_ctl: %s", strerror(errno));
	}
}

static void answered(struct slot *slot, uint64_t now)
{
	int worker, pid;

	if (sscanf(slot->answer, "worker=%d pid=%d", &worker, &pid) != 2 || worker < 0 ||
	    worker >= load.workers)
		die("unexpected answer '%s'", slot->answer);
	if (load.measuring) {
		if (slot->heavy) {
			record(&load.heavy, now - slot->sent_ns);
			load.heavy_requests++;
		} else {
			record(&load.light, now - slot->sent_ns);
			load.light_requests++;
		}
		if (!slot->counted_worker) {
			load.counts[worker]++;
			load.sessions++;
		}
	}
	slot->counted_worker = true;
	slot->length = 0;
	if (--slot->remaining > 0) {
		send_request(slot);
		return;
	}
	close(slot->fd);
	start_session(slot);
}

static void ready(struct slot *slot, uint32_t events)
{
	if (slot->connecting) {
		int error = 0;
		socklen_t length = sizeof(error);

		getsockopt(slot->fd, SOL_SOCKET, SO_ERROR, &error, &length);
		if (error)
			die("connect: %s", strerror(error));
		send_request(slot);
		return;
	}
	for (;;) {
		ssize_t received = recv(slot->fd, slot->answer + slot->length,
					sizeof(slot->answer) - 1 - slot->length, 0);
		char *end;

		if (received < 0 && errno == EAGAIN)
			return;
		if (received <= 0)
			die("connection %s before its answer", received ? strerror(errno) : "closed");
		slot->length += (size_t)received;
		slot->answer[slot->length] = '\0';
		end = strchr(slot->answer, '\n');
		if (!end) {
			if (slot->length == sizeof(slot->answer) - 1)
				die("answer too long");
			continue;
		}
		*end = '\0';
		answered(slot, now_ns());
		return;
	}
}

/* Runs the slots until the given time. */
static void run_until(uint64_t end)
{
	struct epoll_event events[256];

	for (uint64_t now = now_ns(); now < end; now = now_ns()) {
		int count = epoll_wait(load.epoll, events, 256, 20);

		if (count < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < count; i++)
			ready(events[i].data.ptr, events[i].events);
		for (int i = 0; i < load.slot_count; i++)
			if (now - load.slots[i].sent_ns > STUCK_NS && now > load.slots[i].sent_ns)
				die("a request has had no answer for 10 s");
	}
}

/* ---- main ---------------------------------------------------------------------- */

static double parse(const char *text, double minimum, double maximum, const char *what)
{
	char *end;
	double value = strtod(text, &end);

	if (!*text || *end || value < minimum || value > maximum) {
		fprintf(stderr, "steer_load: bad %s '%s'\n", what, text);
		exit(2);
	}
	return value;
}

static void set_address(const char *host, int port)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)&load.address;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&load.address;

	memset(&load.address, 0, sizeof(load.address));
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1 && ntohl(in4->sin_addr.s_addr) >> 24 == 127) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		load.address_length = sizeof(*in4);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1 && IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		load.address_length = sizeof(*in6);
	} else {
		fprintf(stderr, "steer_load: %s is not a loopback address\n", host);
		exit(2);
	}
}

/* Long options only, so their codes stay clear of the one-letter ones. */
enum { OPTION_HISTOGRAM = 256 };

int main(int argc, char **argv)
{
	static const struct option long_options[] = {
		{ "histogram", required_argument, NULL, OPTION_HISTOGRAM },
		{ NULL, 0, NULL, 0 },
	};
	const char *host = "127.0.0.1", *histogram_path = NULL;
	double seconds = 5, warmup = 1;
	int port = 0, option;
	uint64_t start, most = 0;
	struct rlimit limit;

	load.slot_count = 32;
	load.requests = 4;
	load.heavy_fraction = 0.125;
	load.hot_fraction = 0.125;
	load.hot_factor = 10;
	load.random_state = 0x9e3779b97f4a7c15ull;
	while ((option = getopt_long(argc, argv, "p:w:H:c:d:W:r:f:o:m:", long_options, NULL)) != -1) {
		switch (option) {
		case 'p': port = (int)parse(optarg, 1, 65535, "port"); break;
		case 'w': load.workers = (int)parse(optarg, 1, MAX_WORKERS, "worker count"); break;
		case 'H': host = optarg; break;
		case 'c': load.slot_count = (int)parse(optarg, 1, MAX_SLOTS, "slot count"); break;
		case 'd': seconds = parse(optarg, 0.1, 3600, "duration"); break;
		case 'W': warmup = parse(optarg, 0, 3600, "warm-up"); break;
		case 'r': load.requests = (int)parse(optarg, 1, 1000000, "requests per session"); break;
		case 'f': load.heavy_fraction = parse(optarg, 0, 1, "heavy fraction"); break;
		case 'o': load.hot_fraction = parse(optarg, 0, 1, "hot fraction"); break;
		case 'm': load.hot_factor = (int)parse(optarg, 1, 10000, "hot factor"); break;
		case OPTION_HISTOGRAM: histogram_path = optarg; break;
		default:
			fprintf(stderr, "usage: steer_load -p PORT -w WORKERS [-H ADDRESS] [-c SLOTS] [-d SECONDS]\n"
					"                  [-W WARMUP] [-r REQUESTS] [-f HEAVY] [-o HOT] [-m HOT_FACTOR]\n"
					"                  [--histogram FILE]\n");
			return 2;
		}
	}
	if (!port || !load.workers || optind != argc) {
		fprintf(stderr, "steer_load: -p and -w are required\n");
		return 2;
	}
	set_address(host, port);
	if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
		limit.rlim_cur = limit.rlim_max;
		setrlimit(RLIMIT_NOFILE, &limit);
	}
	signal(SIGPIPE, SIG_IGN);
	load.epoll = epoll_create1(EPOLL_CLOEXEC);
	if (load.epoll < 0)
		die("epoll_create1: %s", strerror(errno));
	for (int i = 0; i < load.slot_count; i++)
		start_session(&load.slots[i]);
	run_until(now_ns() + (uint64_t)(warmup * 1e9));
	load.measuring = true;
	start = now_ns();
	run_until(start + (uint64_t)(seconds * 1e9));
	seconds = (double)(now_ns() - start) / 1e9;
	if (histogram_path)
		write_histogram(&load.light, histogram_path);
	printf("sessions=%llu requests=%llu rps=%.0f light_p50_us=%.1f light_p99_us=%.1f light_p999_us=%.1f heavy_p50_us=%.1f",
	       (unsigned long long)load.sessions,
	       (unsigned long long)(load.light_requests + load.heavy_requests),
	       (double)(load.light_requests + load.heavy_requests) / seconds,
	       percentile_us(&load.light, 0.50), percentile_us(&load.light, 0.99),
	       percentile_us(&load.light, 0.999), percentile_us(&load.heavy, 0.50));
	for (int worker = 0; worker < load.workers; worker++)
		if (load.counts[worker] > most)
			most = load.counts[worker];
	printf(" spread=%.3f counts=", load.sessions ? (double)most * load.workers / (double)load.sessions : 0.0);
	for (int worker = 0; worker < load.workers; worker++)
		printf("%s%llu", worker ? "," : "", (unsigned long long)load.counts[worker]);
	printf("\n");
	return 0;
}
