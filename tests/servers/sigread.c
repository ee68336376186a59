// SPDX-License-Identifier: MIT
/*
 * A server whose only thread sits in a blocking receive when a signal
 * arrives.  With the handler installed without SA_RESTART the receive must
 * fail with EINTR: the server then writes "EINTR\n" to the client and
 * receives again.  With -r (SA_RESTART) the receive must simply go on and
 * return the data that comes later.  Everything else is echoed.
 *
 *   sigread [-p PORT] [-6] [-r] [-m MODE]
 *
 * After an interrupted receive the server switches to its other buffer and
 * checks, once the next receive has returned, that nothing was written into
 * the interrupted one (it was filled with a canary): an operation left in
 * flight by the interrupted call would land there, and the server then
 * writes "STALE\n".  Each time the count of handled signals changes the
 * server prints `signals N` on stdout.  MODE picks the call family, rotating
 * per connection by default.  One connection at a time; runs until killed.
 */
#include "server_common.h"

#define BUFFER_SIZE 4096
#define CANARY      0xa5

static volatile sig_atomic_t signals_caught;

static void on_signal(int signal_number)
{
	signals_caught++;
}

static bool holds_canary(const unsigned char *buffer)
{
	for (size_t i = 0; i < BUFFER_SIZE; i++)
		if (buffer[i] != CANARY)
			return false;
	return true;
}

static void serve(int fd, enum io_family family)
{
	static unsigned char buffers[2][BUFFER_SIZE];
	static sig_atomic_t signals_reported;
	unsigned receive_calls = 0, send_calls = 0;
	int current = 0, interrupted = -1;

	for (;;) {
		ssize_t received;

		memset(buffers[current], CANARY, BUFFER_SIZE);
		received = receive_some(family, fd, (char *)buffers[current], BUFFER_SIZE,
					receive_calls++);
		if (signals_caught != signals_reported) {
			signals_reported = signals_caught;
			printf("signals %d\n", (int)signals_reported);
			fflush(stdout);
		}
		if (interrupted >= 0) {
			if (!holds_canary(buffers[interrupted]) &&
			    send_all(family, fd, "STALE\n", 6, &send_calls) != 0)
				break;
			interrupted = -1;
		}
		if (received < 0 && errno == EINTR) {
			if (send_all(family, fd, "EINTR\n", 6, &send_calls) != 0)
				break;
			interrupted = current;
			current ^= 1;
			continue;
		}
		if (received < 0) {
			if (!peer_gone(errno))
				fprintf(stderr, "sigread: receive: %s\n", strerror(errno));
			break;
		}
		if (received == 0)
			break;
		if (send_all(family, fd, (char *)buffers[current], (size_t)received, &send_calls) != 0)
			break;
	}
	if (close(fd) != 0)
		fprintf(stderr, "sigread: close: %s\n", strerror(errno));
}

static void usage(void)
{
	fprintf(stderr, "usage: sigread [-p PORT] [-6] [-r] [-m MODE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	enum io_family mode = FAMILY_ROTATE;
	bool ipv6 = false, restart = false;
	int port = 0, option, listener;
	struct sigaction action;

	server_name = "sigread";
	while ((option = getopt(argc, argv, "p:6rm:")) != -1) {
		switch (option) {
		case 'p':
			port = parse_port(optarg);
			break;
		case '6':
			ipv6 = true;
			break;
		case 'r':
			restart = true;
			break;
		case 'm':
			mode = parse_family(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	ignore_sigpipe();
	memset(&action, 0, sizeof(action));
	action.sa_handler = on_signal;
	action.sa_flags = restart ? SA_RESTART : 0;
	sigemptyset(&action.sa_mask);
	if (sigaction(SIGUSR1, &action, NULL) != 0)
		die("sigaction(SIGUSR1): %s", strerror(errno));
	listener = open_listener(port, ipv6);
	for (unsigned number = 0;; number++) {
		int fd = accept_connection(listener, number, true);

		serve(fd, plan_for_connection(mode, BUFFER_SIZE, number).family);
	}
}
