// SPDX-License-Identifier: MIT
/*
 * The client of the steering tests: opens connections to steer_workers
 * (tests/servers/steer_workers.c), asks each one `who`, and records which
 * worker served it, so a test can check where connections were placed.
 * It runs a script of steps given as arguments, in order:
 *
 *   hold:N          N connections kept open, opened -b at a time (a burst
 *                   of SYNs before any is accepted)
 *   short:N         N connections one after the other, each closed after its
 *                   answer (reconnecting clients); their order is recorded
 *   window:FROM:TO  short connections from FROM ms to TO ms after the last
 *                   `send` answer; only those placed before TO are counted
 *   repeat:N        N source ports, each used for two connections in turn
 *                   (closed with a reset so the 4-tuple is free again):
 *                   counts how often both went to the same worker
 *   send:LINE       LINE on a connection of its own; prints the answer
 *   probe-others:K  connections (not counted, held until it ends) until
 *                   every worker but K has served one: they all accept now
 *   inflight:N      N connections that ask and do not wait for the answer
 *   settle:MS       takes answers until none came for MS ms
 *   kill:K          SIGKILL to worker K (its pid from an earlier answer)
 *   collect:MS      takes the remaining answers, for at most MS ms; those
 *                   still missing count as unanswered
 *   alternate       from here on, connections alternate between -p and -q
 *   pause           prints `paused`, waits for a line on stdin
 *   sleep:MS, close (closes every held connection), report:LABEL
 *
 * report prints, per port that saw connections since the last report:
 *
 *   LABEL port=P connections=N counts=C0,C1,.. max_over_mean=X resets=R
 *   refused=F unanswered=U cyclic=yes|no same=S differ=D pids=P0,P1,..
 *
 * counts are per worker index (0..-w); resets are connections closed or
 * reset before their answer, refused are refused connects (both counted
 * for every step, probes included: no connection may fail); cyclic says the
 * short connections went to the workers in a fixed rotation, each once per
 * round.  Exits 1 on a broken step (unknown worker, malformed answer), 2
 * on bad usage; placements, resets and refusals are for the test to judge.
 * Connects only to loopback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 256
#define MAX_CONNECTIONS 20000
#define MAX_SEQUENCE 100000
#define ANSWER_BYTES 128
#define PROBE_LIMIT 2000

enum state { IDLE, CONNECTING, WAITING, DONE };

struct connection {
	int fd;
	int port_index;
	enum state state;
	int worker;           /* from its answer, -1 before */
	uint64_t connected_ns; /* when the handshake was done: it was placed by then */
	size_t length;
	char answer[ANSWER_BYTES];
};

/* What one port saw since the last report. */
struct tally {
	unsigned counts[MAX_WORKERS];
	unsigned connections, resets, refused, unanswered, same, differ;
	unsigned sequence_length;
	signed char sequence[MAX_SEQUENCE]; /* workers of short connections, in order */
};

static struct {
	struct sockaddr_storage address[2];
	socklen_t address_length;
	int ports;
	int workers;
	int burst;
	int timeout_ms;
	bool alternate;
	int next_port;
	int pids[2][MAX_WORKERS];
	struct connection connections[MAX_CONNECTIONS];
	int count;
	struct tally tallies[2];
	uint64_t last_send_ns;
} client;

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *format, ...)
{
	va_list ap;

	fprintf(stderr, "steer_client: ");
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

static void sleep_ms(long milliseconds)
{
	struct timespec rest = { milliseconds / 1000, (milliseconds % 1000) * 1000000L };

	while (nanosleep(&rest, &rest) != 0 && errno == EINTR)
		;
}

static long number(const char *text, long minimum, long maximum, const char *what)
{
	char *end;
	long value = strtol(text, &end, 10);

	if (!*text || (*end && *end != ':') || value < minimum || value > maximum) {
		fprintf(stderr, "steer_client: bad %s '%s' (expected %ld..%ld)\n", what, text, minimum,
			maximum);
		exit(2);
	}
	return value;
}

static void set_address(int index, const char *host, const char *port_text)
{
	long port = number(port_text, 1, 65535, "port");
	struct sockaddr_in *in4 = (struct sockaddr_in *)&client.address[index];
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&client.address[index];

	memset(&client.address[index], 0, sizeof(client.address[index]));
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		if (ntohl(in4->sin_addr.s_addr) >> 24 != 127)
			die("%s is not a loopback address", host);
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		client.address_length = sizeof(*in4);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			die("%s is not a loopback address", host);
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		client.address_length = sizeof(*in6);
	} else {
		die("bad address '%s'", host);
	}
}

static int port_number(int index)
{
	const struct sockaddr_storage *address = &client.address[index];

	return ntohs(address->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)address)->sin6_port
						    : ((const struct sockaddr_in *)address)->sin_port);
}

static int next_port_index(void)
{
	int index = client.next_port;

	if (client.alternate && client.ports == 2)
		client.next_port ^= 1;
	return index;
}

/* ---- one connection ------------------------------------------------------------- */

/* Starts a non-blocking connect; source_port 0: any. */
static struct connection *start_connection(int port_index, int source_port)
{
	struct connection *connection;
	int fd, one = 1;

	if (client.count >= MAX_CONNECTIONS)
		die("more than %d connections at once", MAX_CONNECTIONS);
	fd = socket(client.address[port_index].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	connection = &client.connections[client.count++];
	memset(connection, 0, sizeof(*connection));
	connection->fd = fd;
	connection->port_index = port_index;
	connection->state = CONNECTING;
	connection->worker = -1;
	if (source_port) {
		struct sockaddr_storage local = client.address[port_index];

		if (local.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&local)->sin6_port = htons((uint16_t)source_port);
		else
			((struct sockaddr_in *)&local)->sin_port = htons((uint16_t)source_port);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&local, client.address_length) != 0) {
			close(fd);
			client.count--;
			return NULL;
		}
	}
	if (connect(fd, (struct sockaddr *)&client.address[port_index], client.address_length) != 0 &&
	    errno != EINPROGRESS) {
		if (errno != ECONNREFUSED)
			die("connect: %s", strerror(errno));
		client.tallies[port_index].refused++;
		close(fd);
		connection->fd = -1;
		connection->state = DONE;
	}
	return connection;
}

/* The worker named in an answer, -1 if the connection failed. */
static int record_answer(struct connection *connection, bool tallied)
{
	int worker, pid, tid;

	if (sscanf(connection->answer, "worker=%d pid=%d tid=%d", &worker, &pid, &tid) != 3 ||
	    worker < 0 || worker >= client.workers)
		die("unexpected answer '%s' (with -w %d)", connection->answer, client.workers);
	client.pids[connection->port_index][worker] = pid;
	connection->worker = worker;
	if (tallied) {
		client.tallies[connection->port_index].counts[worker]++;
		client.tallies[connection->port_index].connections++;
	}
	return worker;
}

/* A failure counts whatever the step: no connection may fail. */
static void failed(struct connection *connection, bool refused)
{
	if (refused)
		client.tallies[connection->port_index].refused++;
	else
		client.tallies[connection->port_index].resets++;
	close(connection->fd);
	connection->fd = -1;
	connection->state = DONE;
}

/* One step of a connection whose fd is ready; the worker once answered. */
static int advance(struct connection *connection, short revents, bool tallied)
{
	if (connection->state == CONNECTING) {
		int error = 0;
		socklen_t length = sizeof(error);

		getsockopt(connection->fd, SOL_SOCKET, SO_ERROR, &error, &length);
		if (error) {
			if (error != ECONNREFUSED && error != ECONNRESET)
				die("connect: %s", strerror(error));
			failed(connection, error == ECONNREFUSED);
			return -1;
		}
		if (send(connection->fd, "who\n", 4, MSG_NOSIGNAL) != 4) {
			failed(connection, false);
			return -1;
		}
		connection->state = WAITING;
		connection->connected_ns = now_ns();
		return -1;
	}
	if (connection->state == WAITING && (revents & (POLLIN | POLLHUP | POLLERR))) {
		ssize_t received = recv(connection->fd, connection->answer + connection->length,
					sizeof(connection->answer) - 1 - connection->length, 0);
		char *end;

		if (received <= 0) {
			if (received < 0 && errno == EAGAIN)
				return -1;
			failed(connection, false);
			return -1;
		}
		connection->length += (size_t)received;
		connection->answer[connection->length] = '\0';
		end = strchr(connection->answer, '\n');
		if (!end) {
			if (connection->length == sizeof(connection->answer) - 1)
				die("answer too long");
			return -1;
		}
		*end = '\0';
		connection->state = DONE;
		return record_answer(connection, tallied);
	}
	return -1;
}

/* Drives connections[first..] until none is in progress, or no progress
 * for idle_ms (0: no such limit), or total_ms in all.  Returns how many
 * are still in progress. */
static int drive(int first, int idle_ms, int total_ms, bool tallied)
{
	static struct pollfd fds[MAX_CONNECTIONS];
	static int owners[MAX_CONNECTIONS];
	uint64_t start = now_ns(), last_progress = start;

	for (;;) {
		int count = 0, ready;
		uint64_t now = now_ns();

		for (int i = first; i < client.count; i++) {
			struct connection *connection = &client.connections[i];

			if (connection->state != CONNECTING && connection->state != WAITING)
				continue;
			fds[count].fd = connection->fd;
			fds[count].events = connection->state == CONNECTING ? POLLOUT : POLLIN;
			owners[count++] = i;
		}
		if (!count)
			return 0;
		if ((idle_ms && now - last_progress >= (uint64_t)idle_ms * 1000000ull) ||
		    now - start >= (uint64_t)total_ms * 1000000ull)
			return count;
		ready = poll(fds, (nfds_t)count, 50);
		if (ready < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		for (int i = 0; ready > 0 && i < count; i++) {
			if (!fds[i].revents)
				continue;
			advance(&client.connections[owners[i]], fds[i].revents, tallied);
			last_progress = now_ns();
		}
	}
}

/* Marks what is still in progress from first on as unanswered. */
static void give_up(int first)
{
	for (int i = first; i < client.count; i++) {
		struct connection *connection = &client.connections[i];

		if (connection->state != CONNECTING && connection->state != WAITING)
			continue;
		client.tallies[connection->port_index].unanswered++;
		close(connection->fd);
		connection->fd = -1;
		connection->state = DONE;
	}
}

/* Closes what is still in progress from first on, counting nothing. */
static void give_up_untallied(int first)
{
	for (int i = first; i < client.count; i++) {
		struct connection *connection = &client.connections[i];

		if (connection->state == CONNECTING || connection->state == WAITING) {
			close(connection->fd);
			connection->fd = -1;
			connection->state = DONE;
		}
	}
}

/* Forgets connections from first on (closing them), with a reset if asked:
 * a reset leaves no TIME_WAIT behind, so the 4-tuple can be used again. */
static void drop_from(int first, bool reset)
{
	for (int i = first; i < client.count; i++) {
		if (client.connections[i].fd < 0)
			continue;
		if (reset) {
			struct linger linger = { .l_onoff = 1, .l_linger = 0 };

			setsockopt(client.connections[i].fd, SOL_SOCKET, SO_LINGER, &linger,
				   sizeof(linger));
		}
		close(client.connections[i].fd);
	}
	client.count = first;
}

/* One connection, answered or failed, then closed; its worker, -1 if it
 * failed, -2 if the source port was taken. */
static int short_connection(int port_index, int source_port, bool tallied, bool reset)
{
	int first = client.count, worker;
	struct connection *connection = start_connection(port_index, source_port);

	if (!connection)
		return -2;
	drive(first, 0, client.timeout_ms, tallied);
	give_up(first);
	worker = connection->worker;
	drop_from(first, reset);
	return worker;
}

static void sequence_add(int port_index, int worker)
{
	struct tally *tally = &client.tallies[port_index];

	if (tally->sequence_length < MAX_SEQUENCE)
		tally->sequence[tally->sequence_length++] = (signed char)worker;
}

/* ---- steps ------------------------------------------------------------------------ */

static void step_hold(long connections)
{
	while (connections > 0) {
		int first = client.count, batch = connections < client.burst ? (int)connections : client.burst;

		for (int i = 0; i < batch; i++)
			start_connection(next_port_index(), 0);
		drive(first, 0, client.timeout_ms, true);
		give_up(first);
		connections -= batch;
	}
}

static void step_short(long connections)
{
	for (long i = 0; i < connections; i++) {
		int port_index = next_port_index();

		sequence_add(port_index, short_connection(port_index, 0, true, false));
	}
}

static void step_window(long from_ms, long to_ms)
{
	uint64_t from = client.last_send_ns + (uint64_t)from_ms * 1000000ull;
	uint64_t to = client.last_send_ns + (uint64_t)to_ms * 1000000ull;

	if (!client.last_send_ns)
		die("window: no send step before it");
	while (now_ns() < from)
		sleep_ms(1);
	while (now_ns() < to) {
		int port_index = next_port_index(), first = client.count;
		struct connection *connection = start_connection(port_index, 0);

		/* Not tallied by drive: only a connection placed (its handshake
		 * done) inside the window counts, whenever its answer came. */
		drive(first, 0, client.timeout_ms, false);
		if (connection->connected_ns && connection->connected_ns < to) {
			struct tally *tally = &client.tallies[port_index];

			if (connection->worker >= 0) {
				tally->counts[connection->worker]++;
				tally->connections++;
			} else if (connection->state != DONE) {
				tally->unanswered++;
			}
		}
		give_up_untallied(first);
		drop_from(first, false);
	}
}

static void step_repeat(long ports, int base)
{
	int port_index = next_port_index();
	struct tally *tally = &client.tallies[port_index];

	for (int source = base; ports > 0 && source < 65536; source++) {
		int first = short_connection(port_index, source, true, true), second;

		if (first == -2)
			continue; /* the port is in use here: take the next */
		second = short_connection(port_index, source, true, true);
		if (first >= 0 && second >= 0) {
			if (first == second)
				tally->same++;
			else
				tally->differ++;
		}
		ports--;
	}
}

/* A line on a connection of its own, to the first port; the answer is
 * printed, and a stall's answer tells the stalled worker's pid. */
static void step_send(const char *line)
{
	int fd = socket(client.address[0].ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), worker, pid;
	char answer[ANSWER_BYTES], request[ANSWER_BYTES];
	size_t length = 0;
	struct pollfd ready;

	if (fd < 0 || connect(fd, (struct sockaddr *)&client.address[0], client.address_length) != 0)
		die("send: cannot connect: %s", strerror(errno));
	snprintf(request, sizeof(request), "%s\n", line);
	if (send(fd, request, strlen(request), MSG_NOSIGNAL) != (ssize_t)strlen(request))
		die("send: %s", strerror(errno));
	for (;;) {
		ssize_t received;

		ready.fd = fd;
		ready.events = POLLIN;
		if (poll(&ready, 1, client.timeout_ms) != 1)
			die("send: no answer to '%s' within %d ms", line, client.timeout_ms);
		received = recv(fd, answer + length, sizeof(answer) - 1 - length, 0);
		if (received <= 0)
			die("send: connection closed before the answer to '%s'", line);
		length += (size_t)received;
		answer[length] = '\0';
		if (strchr(answer, '\n') || length == sizeof(answer) - 1)
			break;
	}
	client.last_send_ns = now_ns();
	*strchrnul(answer, '\n') = '\0';
	close(fd);
	if (!strncmp(answer, "error", 5))
		die("send: '%s' answered '%s'", line, answer);
	if (sscanf(answer, "stalling %d pid=%d", &worker, &pid) == 2 && worker >= 0 &&
	    worker < MAX_WORKERS)
		client.pids[0][worker] = pid;
	printf("send: %s -> %s\n", line, answer);
}

/* Held connections (not counted) until every worker but `except` has
 * served one, then closed: by then each of them accepts.  Held, so that
 * a load-aware policy moves on to the next worker. */
static void step_probe_others(long except)
{
	bool served[MAX_WORKERS] = { false };
	int first = client.count, missing = client.workers - 1;

	for (int tries = 1; tries <= PROBE_LIMIT; tries++) {
		int start = client.count, worker;

		start_connection(next_port_index(), 0);
		drive(start, 0, client.timeout_ms, false);
		give_up_untallied(start);
		worker = client.connections[start].worker;
		if (worker >= 0 && worker != except && !served[worker]) {
			served[worker] = true;
			missing--;
		}
		if (!missing) {
			printf("probe: every worker but %ld served within %d connections\n", except, tries);
			drop_from(first, false);
			return;
		}
	}
	die("probe: %d of the workers other than %ld served none of %d connections", missing, except,
	    PROBE_LIMIT);
}

static void step_kill(long worker)
{
	int pid = client.pids[0][worker], waiting = 0;

	if (pid <= 0)
		die("kill: the pid of worker %ld is not known (no answer from it, no stall)", worker);
	for (int i = 0; i < client.count; i++)
		waiting += client.connections[i].state == WAITING;
	if (kill(pid, SIGKILL) != 0)
		die("kill %d: %s", pid, strerror(errno));
	printf("killed worker %ld pid %d with %d connections unanswered\n", worker, pid, waiting);
}

static bool cyclic(const struct tally *tally)
{
	int workers = client.workers;

	if (tally->sequence_length < (unsigned)workers)
		return false;
	for (unsigned i = 0; i < tally->sequence_length; i++) {
		if (tally->sequence[i] < 0)
			return false;
		if (i >= (unsigned)workers && tally->sequence[i] != tally->sequence[i - workers])
			return false;
		for (unsigned j = i < (unsigned)workers ? 0 : i; j < i; j++)
			if (tally->sequence[j] == tally->sequence[i])
				return false;
	}
	return true;
}

static void step_report(const char *label)
{
	for (int index = 0; index < client.ports; index++) {
		struct tally *tally = &client.tallies[index];
		unsigned most = 0;
		double mean = (double)tally->connections / client.workers;

		if (index > 0 && !tally->connections && !tally->resets && !tally->refused &&
		    !tally->unanswered && !tally->same && !tally->differ)
			continue;
		printf("%s port=%d connections=%u counts=", label, port_number(index), tally->connections);
		for (int worker = 0; worker < client.workers; worker++) {
			printf("%s%u", worker ? "," : "", tally->counts[worker]);
			if (tally->counts[worker] > most)
				most = tally->counts[worker];
		}
		printf(" max_over_mean=%.3f resets=%u refused=%u unanswered=%u cyclic=%s same=%u differ=%u pids=",
		       mean > 0 ? most / mean : 0.0, tally->resets, tally->refused, tally->unanswered,
		       cyclic(tally) ? "yes" : "no", tally->same, tally->differ);
		for (int worker = 0; worker < client.workers; worker++)
			printf("%s%d", worker ? "," : "", client.pids[index][worker]);
		printf("\n");
		memset(tally, 0, sizeof(*tally));
	}
	fflush(stdout);
}

static void usage(void)
{
	fprintf(stderr, "usage: steer_client -p PORT [-q PORT2] [-H ADDRESS] -w WORKERS [-b BURST] [-t TIMEOUT_MS]\n"
			"                    [-s SOURCE_PORT_BASE] STEP...\n");
	exit(2);
}

/* What follows "NAME:" in a step, or NULL if the step is not NAME. */
static const char *argument_of(const char *step, const char *name)
{
	size_t length = strlen(name);

	if (strncmp(step, name, length) || step[length] != ':')
		return NULL;
	return step + length + 1;
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1", *ports[2] = { NULL, NULL }, *value;
	int option, source_base = 21000, inflight_first = 0;
	struct rlimit limit;

	client.burst = 50;
	client.timeout_ms = 20000;
	while ((option = getopt(argc, argv, "p:q:H:w:b:t:s:")) != -1) {
		switch (option) {
		case 'p': ports[0] = optarg; break;
		case 'q': ports[1] = optarg; break;
		case 'H': host = optarg; break;
		case 'w': client.workers = (int)number(optarg, 1, MAX_WORKERS, "worker count"); break;
		case 'b': client.burst = (int)number(optarg, 1, MAX_CONNECTIONS, "burst"); break;
		case 't': client.timeout_ms = (int)number(optarg, 1, 600000, "timeout"); break;
		case 's': source_base = (int)number(optarg, 1024, 65000, "source port"); break;
		default: usage();
		}
	}
	if (!ports[0] || !client.workers || optind == argc)
		usage();
	set_address(0, host, ports[0]);
	client.ports = 1;
	if (ports[1]) {
		set_address(1, host, ports[1]);
		client.ports = 2;
	}
	if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
		limit.rlim_cur = limit.rlim_max;
		setrlimit(RLIMIT_NOFILE, &limit);
	}
	signal(SIGPIPE, SIG_IGN);
	for (int i = optind; i < argc; i++) {
		const char *step = argv[i];

		if ((value = argument_of(step, "hold"))) {
			step_hold(number(value, 1, MAX_CONNECTIONS, "connection count"));
		} else if ((value = argument_of(step, "short"))) {
			step_short(number(value, 1, MAX_SEQUENCE, "connection count"));
		} else if ((value = argument_of(step, "window"))) {
			const char *to = strchr(value, ':');

			if (!to)
				usage();
			step_window(number(value, 0, 600000, "window start"),
				    number(to + 1, 0, 600000, "window end"));
		} else if ((value = argument_of(step, "repeat"))) {
			step_repeat(number(value, 1, 20000, "source port count"), source_base);
		} else if ((value = argument_of(step, "send"))) {
			step_send(value);
		} else if ((value = argument_of(step, "probe-others"))) {
			step_probe_others(number(value, 0, client.workers - 1, "worker"));
		} else if ((value = argument_of(step, "inflight"))) {
			long count = number(value, 1, MAX_CONNECTIONS, "connection count");

			inflight_first = client.count;
			for (long n = 0; n < count; n++)
				start_connection(next_port_index(), 0);
		} else if ((value = argument_of(step, "settle"))) {
			drive(inflight_first, (int)number(value, 1, 600000, "milliseconds"), client.timeout_ms, true);
		} else if ((value = argument_of(step, "kill"))) {
			step_kill(number(value, 0, client.workers - 1, "worker"));
		} else if ((value = argument_of(step, "collect"))) {
			drive(inflight_first, 0, (int)number(value, 1, 600000, "milliseconds"), true);
			give_up(inflight_first);
		} else if ((value = argument_of(step, "sleep"))) {
			sleep_ms(number(value, 0, 600000, "milliseconds"));
		} else if ((value = argument_of(step, "report"))) {
			step_report(value);
		} else if (!strcmp(step, "alternate")) {
			client.alternate = true;
		} else if (!strcmp(step, "close")) {
			drop_from(0, false);
		} else if (!strcmp(step, "pause")) {
			char line[16];

			printf("paused\n");
			fflush(stdout);
			if (!fgets(line, sizeof(line), stdin))
				clearerr(stdin);
		} else {
			fprintf(stderr, "steer_client: unknown step '%s'\n", step);
			usage();
		}
		fflush(stdout);
	}
	drop_from(0, false);
	return 0;
}
