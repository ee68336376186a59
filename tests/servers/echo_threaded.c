// SPDX-License-Identifier: MIT
/*
 * Blocking thread-per-connection echo server, the classic shape the shim
 * must carry unchanged: a blocking listener accepts in a loop and each
 * connection gets a detached thread that receives and echoes until end of
 * file, then closes.
 *
 *   echo_threaded [-p PORT] [-6] [-m MODE] [-b READ_SIZE]
 *
 * MODE picks the call family (read, recv, recvfrom, recvmsg, readv, chk);
 * the default, rotate, changes family and read size with each connection
 * so one run covers every interposed receive and send call.  -b fixes the
 * read size instead of rotating it.  Runs until killed.
 */
#include <pthread.h>

#include "server_common.h"

struct connection {
	int fd;
	struct echo_plan plan;
};

static void *connection_thread(void *argument)
{
	struct connection *connection = argument;

	echo_connection(connection->fd, connection->plan);
	free(connection);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: echo_threaded [-p PORT] [-6] [-m MODE] [-b READ_SIZE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	enum io_family mode = FAMILY_ROTATE;
	size_t fixed_read_size = 0;
	bool ipv6 = false;
	int port = 0, option, listener;
	pthread_attr_t attributes;

	server_name = "echo_threaded";
	while ((option = getopt(argc, argv, "p:6m:b:")) != -1) {
		switch (option) {
		case 'p':
			port = parse_port(optarg);
			break;
		case '6':
			ipv6 = true;
			break;
		case 'm':
			mode = parse_family(optarg);
			break;
		case 'b':
			fixed_read_size = (size_t)parse_number(optarg, 1, 1 << 24, "read size");
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	raise_fd_limit();
	ignore_sigpipe();
	listener = open_listener(port, ipv6);

	/* Hundreds of connection threads: keep their reserved stacks modest
	 * (generous enough for sanitizer builds). */
	pthread_attr_init(&attributes);
	pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attributes, 1 << 20);
	for (unsigned number = 0;; number++) {
		struct connection *connection = malloc(sizeof(*connection));
		pthread_t thread;
		int error, attempts = 0;

		if (!connection)
			die("out of memory");
		connection->fd = accept_connection(listener, number, true);
		connection->plan = plan_for_connection(mode, fixed_read_size, number);
		/* Thread limits are transient while connections finish; give
		 * them a few seconds before calling it a failure. */
		while ((error = pthread_create(&thread, &attributes, connection_thread, connection))
		       == EAGAIN && ++attempts < 500)
			usleep(10000);
		if (error)
			die("pthread_create: %s", strerror(error));
	}
}
