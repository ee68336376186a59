// SPDX-License-Identifier: MIT
/*
 * Poll herd: four threads poll one shared non-blocking listener, each with a
 * pipe of its own and idle accepted sockets (so that, under the shim, poll
 * goes through the ring), while a client connects and closes as fast as it
 * can and a ticker writes to every pipe every 100 us.  Every connection
 * wakes every poller and only one accepts it; a poll that returns for its
 * pipe in the same moment has to take back its listener poll while that
 * poll's wake-up is being handled, a wake-up that turns out to be
 * spurious.  Every poll call must return within a second of its 50 ms
 * timeout.
 *
 *   poll_herd [SECONDS]   (default 4)
 *
 * Prints how many polls, accepts and ticks each thread saw; exits 1 if a
 * poll call hung (a watchdog reports it) or a call failed.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "server_common.h"

#define POLLERS 4
/* Idle connections per poller: a longer look at the answers widens the
 * moment in which a wake-up can come. */
#define IDLE 48
#define POLL_TIMEOUT_MS 50
#define HUNG_NS 1000000000ll

static int listener;
static struct sockaddr_in listener_address;
static int pipes[POLLERS][2];
static _Atomic bool stop;
static _Atomic long long poll_started_ns[POLLERS];
static int idle_sockets[POLLERS][IDLE];
static _Atomic int finished;

struct counts {
	long polls, accepts, ticks;
};
static struct counts counts[POLLERS];

static long long now_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec * 1000000000ll + now.tv_nsec;
}

static int accept_one(bool wait)
{
	for (;;) {
		int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0 || !wait || (errno != EAGAIN && errno != EINTR))
			return fd;
		poll(&(struct pollfd){ .fd = listener, .events = POLLIN }, 1, 100);
	}
}

static void *poller(void *argument)
{
	int index = (int)(intptr_t)argument;
	struct counts *mine = &counts[index];
	struct pollfd fds[2 + IDLE];
	char buf[256];

	while (!atomic_load(&stop)) {
		int ready;

		fds[0] = (struct pollfd){ .fd = pipes[index][0], .events = POLLIN };
		fds[1] = (struct pollfd){ .fd = listener, .events = POLLIN };
		for (int i = 0; i < IDLE; i++)
			fds[2 + i] = (struct pollfd){ .fd = idle_sockets[index][i], .events = POLLIN };
		atomic_store(&poll_started_ns[index], now_ns());
		ready = poll(fds, 2 + IDLE, POLL_TIMEOUT_MS);
		atomic_store(&poll_started_ns[index], 0);
		if (ready < 0 && errno != EINTR)
			die("poller %d: poll: %s", index, strerror(errno));
		mine->polls++;
		if (ready > 0 && (fds[0].revents & POLLIN) && read(pipes[index][0], buf, sizeof(buf)) > 0)
			mine->ticks++;
		if (ready > 0 && (fds[1].revents & POLLIN)) {
			int fd = accept_one(false);

			if (fd >= 0) {
				mine->accepts++;
				close(fd);
			} else if (errno != EAGAIN) {
				die("poller %d: accept4: %s", index, strerror(errno));
			}
		}
		for (int i = 0; i < IDLE && ready > 0; i++) {
			if (fds[2 + i].revents)
				die("poller %d: an idle connection reported 0x%x", index,
				    fds[2 + i].revents);
		}
	}
	for (int i = 0; i < IDLE; i++)
		close(idle_sockets[index][i]);
	atomic_fetch_add(&finished, 1);
	return NULL;
}

static void *client(void *argument)
{
	(void)argument;
	while (!atomic_load(&stop)) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0 || connect(fd, (struct sockaddr *)&listener_address, sizeof(listener_address)))
			die("client: %s", strerror(errno));
		close(fd);
	}
	return NULL;
}

static void *ticker(void *argument)
{
	struct timespec interval = { .tv_nsec = 100000 };

	(void)argument;
	while (!atomic_load(&stop)) {
		for (int i = 0; i < POLLERS; i++) {
			if (write(pipes[i][1], "t", 1) < 0 && errno != EAGAIN)
				die("ticker: %s", strerror(errno));
		}
		nanosleep(&interval, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t pollers[POLLERS], client_thread, ticker_thread;
	socklen_t length = sizeof(listener_address);
	int seconds = argc > 1 ? atoi(argv[1]) : 4, idle_clients[POLLERS][IDLE];
	long long end;

	server_name = "poll_herd";
	listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	listener_address.sin_family = AF_INET;
	listener_address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (listener < 0 || bind(listener, (struct sockaddr *)&listener_address, sizeof(listener_address)) ||
	    getsockname(listener, (struct sockaddr *)&listener_address, &length) || listen(listener, 512))
		die("listener: %s", strerror(errno));
	for (int i = 0; i < POLLERS; i++) {
		if (pipe2(pipes[i], O_CLOEXEC | O_NONBLOCK))
			die("pipe2: %s", strerror(errno));
		/* Each poller's idle connections, accepted before any poll. */
		for (int j = 0; j < IDLE; j++) {
			idle_clients[i][j] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (idle_clients[i][j] < 0 ||
			    connect(idle_clients[i][j], (struct sockaddr *)&listener_address,
				    sizeof(listener_address)))
				die("idle client: %s", strerror(errno));
			idle_sockets[i][j] = accept_one(true);
			if (idle_sockets[i][j] < 0)
				die("accept: %s", strerror(errno));
		}
	}
	for (int i = 0; i < POLLERS; i++) {
		if (pthread_create(&pollers[i], NULL, poller, (void *)(intptr_t)i))
			die("pthread_create");
	}
	if (pthread_create(&client_thread, NULL, client, NULL) ||
	    pthread_create(&ticker_thread, NULL, ticker, NULL))
		die("pthread_create");
	end = now_ns() + seconds * 1000000000ll;
	/* The watchdog runs until every poller has seen the stop. */
	while (atomic_load(&finished) < POLLERS) {
		usleep(10000);
		if (now_ns() >= end)
			atomic_store(&stop, true);
		for (int i = 0; i < POLLERS; i++) {
			long long started = atomic_load(&poll_started_ns[i]);

			if (started && now_ns() - started > HUNG_NS + POLL_TIMEOUT_MS * 1000000ll) {
				printf("poller %d: a poll call has not returned for %lld ms (timeout %d ms)\n",
				       i, (now_ns() - started) / 1000000, POLL_TIMEOUT_MS);
				fflush(stdout);
				_exit(1);
			}
		}
	}
	pthread_join(client_thread, NULL);
	pthread_join(ticker_thread, NULL);
	for (int i = 0; i < POLLERS; i++) {
		pthread_join(pollers[i], NULL);
		printf("poller %d: polls=%ld accepts=%ld ticks=%ld\n", i, counts[i].polls,
		       counts[i].accepts, counts[i].ticks);
		for (int j = 0; j < IDLE; j++)
			close(idle_clients[i][j]);
	}
	return 0;
}
