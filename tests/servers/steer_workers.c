// SPDX-License-Identifier: MIT
/*
 * A server with N workers on one listening socket, written the way servers
 * that know nothing of ringsteer are (nginx, pre-fork servers, one event
 * loop per thread): one listener created before the workers start, plain
 * non-blocking sockets, level-triggered epoll, no SO_REUSEPORT of its own.
 * It tells each client which worker served it, so a test can see where
 * connections were placed.
 *
 *   steer_workers [-p PORT] [-6] (-P N | -T N) [-r] [-W] [-b BACKLOG] [-l SPINS]
 *
 * -P N: N pre-forked worker processes; -T N: N threads, each with its own
 * epoll loop on the shared listener.  -r: the baseline of kernel hashing
 * for the benchmark: each worker gets its own SO_REUSEPORT listener on the
 * port instead of sharing one (what a server configured with reuseport
 * does).  -W: only worker 0 accepts until a `release` command, so that a
 * test can put connections on worker 0 alone.  -l: the CPU work of a light
 * request (spin iterations; heavy is 40 times as much).
 *
 * Protocol, one line per request, one line per answer:
 *   who | light | heavy        -> worker=K pid=P tid=T
 *   stall K MS                 -> stalling K pid=P, then worker K stops
 *                                 returning to its loop for MS ms (it
 *                                 sleeps outside every socket call)
 *   release                    -> released, once every worker accepts
 *   pids                       -> pids P0 P1 ...
 * Runs until SIGTERM; in process mode the parent forwards it to the
 * workers.  A worker killed by a signal is not respawned and is not an
 * error (the tests kill workers on purpose).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "server_common.h"

#define MAX_WORKERS 256
#define LINE_MAX_BYTES 256
#define HEAVY_FACTOR 40
#define EVENTS_PER_WAIT 64
/* How long one worker waits for another to take a command. */
#define HANDOVER_TIMEOUT_MS 10000

/* Shared by every worker, processes included (mapped before fork). */
struct shared {
	_Atomic int pid[MAX_WORKERS];
	_Atomic int tid[MAX_WORKERS];
	_Atomic int started[MAX_WORKERS];
	_Atomic int accepting[MAX_WORKERS];
	_Atomic unsigned stalls_begun[MAX_WORKERS];
};

/* A command handed from the worker that received it to the one it is
 * for, through that worker's pipe (which its loop watches). */
struct command {
	char kind; /* 'S' stall, 'R' release */
	unsigned milliseconds;
};

struct connection {
	int fd;
	size_t length;
	char line[LINE_MAX_BYTES];
};

static struct {
	int workers;
	bool threads;
	bool reuseport;
	bool wait_for_release;
	long light_spins;
	int listeners[MAX_WORKERS]; /* all the same socket unless -r */
	int command_pipes[MAX_WORKERS][2];
	struct shared *shared;
} server;

/* The CPU work of a request; the result is kept so the loop is not
 * optimised away. */
static volatile unsigned long spin_sink;

static void spin(long iterations)
{
	unsigned long value = spin_sink | 1;

	for (long i = 0; i < iterations; i++)
		value = value * 6364136223846793005ul + 1442695040888963407ul;
	spin_sink = value;
}

static void sleep_ms(unsigned milliseconds)
{
	struct timespec rest = { milliseconds / 1000, (long)(milliseconds % 1000) * 1000000L };

	while (nanosleep(&rest, &rest) != 0 && errno == EINTR)
		;
}

static int current_tid(void)
{
	return (int)syscall(SYS_gettid);
}

/* ---- listeners ------------------------------------------------------------ */

static int open_socket(const struct sockaddr_storage *address, socklen_t length, bool reuseport,
		       int backlog)
{
	int fd = socket(address->ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;

	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
		die("setsockopt(SO_REUSEADDR): %s", strerror(errno));
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		die("setsockopt(SO_REUSEPORT): %s", strerror(errno));
	if (bind(fd, (const struct sockaddr *)address, length) != 0)
		die("bind: %s", strerror(errno));
	if (listen(fd, backlog) != 0)
		die("listen: %s", strerror(errno));
	return fd;
}

/* Opens the listener (or, with -r, one per worker on the same port) and
 * returns the port. */
static int open_listeners(int port, bool ipv6, int backlog)
{
	struct sockaddr_storage address;
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
	server.listeners[0] = open_socket(&address, length, server.reuseport, backlog);
	if (getsockname(server.listeners[0], (struct sockaddr *)&address, &length) != 0)
		die("getsockname: %s", strerror(errno));
	for (int worker = 1; worker < server.workers; worker++)
		server.listeners[worker] = server.reuseport
						   ? open_socket(&address, length, true, backlog)
						   : server.listeners[0];
	return ntohs(address.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&address)->sin6_port
						   : ((struct sockaddr_in *)&address)->sin_port);
}

/* ---- one worker ------------------------------------------------------------- */

struct worker {
	int index;
	int epoll;
	int listener;
	bool accepting;
};

static void watch(struct worker *worker, int fd, void *data)
{
	struct epoll_event event = { .events = EPOLLIN, .data.ptr = data };

	if (epoll_ctl(worker->epoll, EPOLL_CTL_ADD, fd, &event) != 0)
		die("epoll_ctl(ADD, %d): %s", fd, strerror(errno));
}

static void start_accepting(struct worker *worker)
{
	if (worker->accepting)
		return;
	/* The listener's own address marks it in the events. */
	watch(worker, worker->listener, &server.listeners[worker->index]);
	worker->accepting = true;
	atomic_store(&server.shared->accepting[worker->index], 1);
}

static void stall(struct worker *worker, unsigned milliseconds)
{
	atomic_fetch_add(&server.shared->stalls_begun[worker->index], 1);
	sleep_ms(milliseconds);
}

/* Waits (bounded) until condition(argument) holds; false on timeout. */
static bool wait_until(bool (*condition)(int), int argument)
{
	for (int waited = 0; waited < HANDOVER_TIMEOUT_MS; waited++) {
		if (condition(argument))
			return true;
		sleep_ms(1);
	}
	return condition(argument);
}

static bool all_accepting(int unused)
{
	for (int worker = 0; worker < server.workers; worker++)
		if (!atomic_load(&server.shared->accepting[worker]))
			return false;
	return true;
}

static void hand_over(int target, struct command command)
{
	if (write(server.command_pipes[target][1], &command, sizeof(command)) != sizeof(command))
		die("write to worker %d's command pipe: %s", target, strerror(errno));
}

static bool send_line(struct connection *connection, const char *text)
{
	size_t length = strlen(text);
	ssize_t sent = send(connection->fd, text, length, MSG_NOSIGNAL);

	if (sent == (ssize_t)length)
		return true;
	/* A tiny answer to a client that reads its answers always fits in
	 * the socket buffer: anything else is a client gone away. */
	if (sent < 0 && !peer_gone(errno) && errno != EAGAIN)
		die("send: %s", strerror(errno));
	return false;
}

/* Answers one request line; false when the connection must close.  A
 * stall of this worker itself comes after its answer, through *stall_ms. */
static bool answer(struct worker *worker, struct connection *connection, const char *line,
		   unsigned *stall_ms)
{
	char reply[128];
	int target, length = 0;
	unsigned milliseconds;

	if (!strcmp(line, "who") || !strcmp(line, "light") || !strcmp(line, "heavy")) {
		spin(!strcmp(line, "heavy") ? server.light_spins * HEAVY_FACTOR :
		     !strcmp(line, "light") ? server.light_spins : 0);
		snprintf(reply, sizeof(reply), "worker=%d pid=%d tid=%d\n", worker->index,
			 (int)getpid(), current_tid());
	} else if (sscanf(line, "stall %d %u", &target, &milliseconds) == 2 && target >= 0 &&
		   target < server.workers) {
		unsigned begun = atomic_load(&server.shared->stalls_begun[target]);

		if (target == worker->index) {
			*stall_ms = milliseconds;
		} else {
			hand_over(target, (struct command){ 'S', milliseconds });
			for (int waited = 0; atomic_load(&server.shared->stalls_begun[target]) == begun;
			     waited++) {
				if (waited >= HANDOVER_TIMEOUT_MS)
					die("worker %d did not start its stall within %d ms", target,
					    HANDOVER_TIMEOUT_MS);
				sleep_ms(1);
			}
		}
		snprintf(reply, sizeof(reply), "stalling %d pid=%d\n", target,
			 atomic_load(&server.shared->pid[target]));
	} else if (!strcmp(line, "release")) {
		for (target = 0; target < server.workers; target++)
			if (target != worker->index)
				hand_over(target, (struct command){ 'R', 0 });
		start_accepting(worker);
		if (!wait_until(all_accepting, 0))
			die("workers did not start accepting within %d ms", HANDOVER_TIMEOUT_MS);
		snprintf(reply, sizeof(reply), "released\n");
	} else if (!strcmp(line, "pids")) {
		length = snprintf(reply, sizeof(reply), "pids");
		for (target = 0; target < server.workers && length < (int)sizeof(reply) - 16; target++)
			length += snprintf(reply + length, sizeof(reply) - (size_t)length, " %d",
					   atomic_load(&server.shared->pid[target]));
		snprintf(reply + length, sizeof(reply) - (size_t)length, "\n");
	} else {
		snprintf(reply, sizeof(reply), "error unknown request\n");
	}
	return send_line(connection, reply);
}

static void close_connection(struct connection *connection)
{
	close(connection->fd);
	free(connection);
}

/* Reads what the client sent and answers every complete line. */
static void serve(struct worker *worker, struct connection *connection)
{
	unsigned stall_ms = 0;
	ssize_t received;

	received = read(connection->fd, connection->line + connection->length,
			sizeof(connection->line) - 1 - connection->length);
	if (received <= 0) {
		if (received < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (received < 0 && !peer_gone(errno))
			die("read: %s", strerror(errno));
		close_connection(connection);
		return;
	}
	connection->length += (size_t)received;
	for (;;) {
		char *end = memchr(connection->line, '\n', connection->length);
		size_t used;

		if (!end)
			break;
		*end = '\0';
		if (end > connection->line && end[-1] == '\r')
			end[-1] = '\0';
		if (!answer(worker, connection, connection->line, &stall_ms)) {
			close_connection(connection);
			return;
		}
		used = (size_t)(end - connection->line) + 1;
		memmove(connection->line, end + 1, connection->length - used);
		connection->length -= used;
		if (stall_ms) {
			stall(worker, stall_ms);
			stall_ms = 0;
		}
	}
	if (connection->length == sizeof(connection->line) - 1) {
		send_line(connection, "error line too long\n");
		close_connection(connection);
	}
}

static void accept_one(struct worker *worker)
{
	struct connection *connection;
	int fd = accept4(worker->listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0) {
		/* Another worker took it, or it went away before we came. */
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
			return;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			sleep_ms(10);
			return;
		}
		die("accept4: %s", strerror(errno));
	}
	connection = calloc(1, sizeof(*connection));
	if (!connection)
		die("out of memory");
	connection->fd = fd;
	watch(worker, fd, connection);
}

static void take_commands(struct worker *worker)
{
	struct command command;

	while (read(server.command_pipes[worker->index][0], &command, sizeof(command)) ==
	       sizeof(command)) {
		if (command.kind == 'S')
			stall(worker, command.milliseconds);
		else if (command.kind == 'R')
			start_accepting(worker);
	}
}

static void run_worker(int index)
{
	struct worker worker = { .index = index, .listener = server.listeners[index] };
	struct epoll_event events[EVENTS_PER_WAIT];

	atomic_store(&server.shared->pid[index], (int)getpid());
	atomic_store(&server.shared->tid[index], current_tid());
	worker.epoll = epoll_create1(EPOLL_CLOEXEC);
	if (worker.epoll < 0)
		die("epoll_create1: %s", strerror(errno));
	watch(&worker, server.command_pipes[index][0], server.command_pipes[index]);
	if (!server.wait_for_release || index == 0)
		start_accepting(&worker);
	atomic_store(&server.shared->started[index], 1);
	for (;;) {
		int count = epoll_wait(worker.epoll, events, EVENTS_PER_WAIT, -1);

		if (count < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < count; i++) {
			void *data = events[i].data.ptr;

			if (data == &server.listeners[index])
				accept_one(&worker);
			else if (data == server.command_pipes[index])
				take_commands(&worker);
			else
				serve(&worker, data);
		}
	}
}

/* ---- workers as processes or threads ------------------------------------------ */

static void *worker_thread(void *argument)
{
	run_worker((int)(intptr_t)argument);
	return NULL;
}

static volatile sig_atomic_t terminating;

static void on_terminate(int signal_number)
{
	terminating = 1;
}

static void handle_terminate(void)
{
	struct sigaction action;

	memset(&action, 0, sizeof(action));
	action.sa_handler = on_terminate;
	sigemptyset(&action.sa_mask);
	sigaction(SIGTERM, &action, NULL);
	sigaction(SIGINT, &action, NULL);
}

static bool all_started(int unused)
{
	for (int worker = 0; worker < server.workers; worker++)
		if (!atomic_load(&server.shared->started[worker]))
			return false;
	return true;
}

/* The parent of pre-forked workers: forwards SIGTERM, reaps, never
 * respawns. */
static void supervise(const pid_t *children)
{
	int alive = server.workers, status;

	while (alive > 0) {
		pid_t pid = waitpid(-1, &status, 0);

		if (pid < 0) {
			if (errno != EINTR)
				break;
			if (terminating)
				for (int worker = 0; worker < server.workers; worker++)
					kill(children[worker], SIGTERM);
			continue;
		}
		alive--;
		if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && !terminating)
			fprintf(stderr, "steer_workers: worker pid %d exited with status %d\n", (int)pid,
				WEXITSTATUS(status));
	}
	exit(0);
}

static void usage(void)
{
	fprintf(stderr, "usage: steer_workers [-p PORT] [-6] (-P N | -T N) [-r] [-W] [-b BACKLOG] [-l SPINS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int port = 0, backlog = SOMAXCONN, option;
	bool ipv6 = false;
	pid_t children[MAX_WORKERS];

	server_name = "steer_workers";
	server.light_spins = 20000;
	while ((option = getopt(argc, argv, "p:6P:T:rWb:l:")) != -1) {
		switch (option) {
		case 'p':
			port = parse_port(optarg);
			break;
		case '6':
			ipv6 = true;
			break;
		case 'P':
		case 'T':
			server.workers = (int)parse_number(optarg, 1, MAX_WORKERS, "worker count");
			server.threads = option == 'T';
			break;
		case 'r':
			server.reuseport = true;
			break;
		case 'W':
			server.wait_for_release = true;
			break;
		case 'b':
			backlog = (int)parse_number(optarg, 1, 65535, "backlog");
			break;
		case 'l':
			server.light_spins = parse_number(optarg, 0, 1000000000, "spin count");
			break;
		default:
			usage();
		}
	}
	if (optind != argc || !server.workers)
		usage();
	raise_fd_limit();
	ignore_sigpipe();
	server.shared = mmap(NULL, sizeof(*server.shared), PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (server.shared == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	for (int worker = 0; worker < server.workers; worker++)
		if (pipe2(server.command_pipes[worker], O_NONBLOCK | O_CLOEXEC) != 0)
			die("pipe2: %s", strerror(errno));
	port = open_listeners(port, ipv6, backlog);
	handle_terminate();

	for (int worker = 0; worker < server.workers; worker++) {
		if (server.threads) {
			pthread_t thread;

			if (pthread_create(&thread, NULL, worker_thread, (void *)(intptr_t)worker) != 0)
				die("pthread_create failed");
			continue;
		}
		children[worker] = fork();
		if (children[worker] < 0)
			die("fork: %s", strerror(errno));
		if (children[worker] == 0) {
			signal(SIGTERM, SIG_DFL);
			signal(SIGINT, SIG_DFL);
			/* With -r a worker's listener must vanish with it, as a
			 * reuseport server's does: nobody else holds it. */
			if (server.reuseport)
				for (int other = 0; other < server.workers; other++)
					if (other != worker)
						close(server.listeners[other]);
			run_worker(worker);
		}
	}
	if (!wait_until(all_started, 0))
		die("workers did not start within %d ms", HANDOVER_TIMEOUT_MS);
	if (!server.threads && server.reuseport)
		for (int worker = 0; worker < server.workers; worker++)
			close(server.listeners[worker]);
	printf("listening %d\n", port);
	fflush(stdout);
	if (!server.threads)
		supervise(children);
	while (!terminating)
		pause();
	return 0;
}
