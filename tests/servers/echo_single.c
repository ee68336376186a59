// SPDX-License-Identifier: MIT
/*
 * Single-threaded blocking echo server: serves one connection at a time to
 * completion (accept, echo until end of file, close, next), so later
 * clients wait in the listen backlog while the one thread sits in a
 * blocking receive or send.
 *
 *   echo_single [-p PORT] [-6] [-m MODE] [-b READ_SIZE]
 *
 * MODE and READ_SIZE as for echo_threaded: by default the call family and
 * read size rotate with each connection.  Runs until killed.
 */
#include "server_common.h"

static void usage(void)
{
	fprintf(stderr, "usage: echo_single [-p PORT] [-6] [-m MODE] [-b READ_SIZE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	enum io_family mode = FAMILY_ROTATE;
	size_t fixed_read_size = 0;
	bool ipv6 = false;
	int port = 0, option, listener;

	server_name = "echo_single";
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
	ignore_sigpipe();
	listener = open_listener(port, ipv6);
	for (unsigned number = 0;; number++) {
		int fd = accept_connection(listener, number, true);

		echo_connection(fd, plan_for_connection(mode, fixed_read_size, number));
	}
}
