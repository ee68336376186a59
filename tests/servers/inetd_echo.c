// SPDX-License-Identifier: MIT
/*
 * The inetd pattern: accept, fork, and in the child make the connection
 * stdin and stdout and exec a filter (/bin/cat, which echoes); the parent
 * closes its copy and reaps children from a SIGCHLD handler.  This is the
 * case where a preloaded shim must survive fork (fresh state in the child),
 * dup2 onto 0 and 1, close, and exec into a new image that inherits the
 * socket.
 *
 *   inetd_echo [-p PORT] [-6] [-x] [-n] [-c PROGRAM]
 *
 * -x: the forked child echoes by itself instead of exec'ing (fork without
 *     exec: the child keeps running the parent's image and shim state).
 * -n: install the SIGCHLD handler without SA_RESTART, so the blocking
 *     accept is interrupted (EINTR) whenever a child exits.
 * -c: the program to exec instead of /bin/cat.
 *
 * A child that exits with a failure status or on a signal is reported on
 * stderr, which the tests check.  Runs until killed.
 */
#include <sys/wait.h>

#include "server_common.h"

static const char *program = "/bin/cat";

/* Formats without stdio: this runs in a signal handler. */
static void report_child(pid_t pid, int status)
{
	char line[128], digits[24];
	size_t length = 0;
	const char *parts[4];
	int value = WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status);

	parts[0] = "inetd_echo: child ";
	parts[2] = WIFEXITED(status) ? " exited with status " : " killed by signal ";
	for (int part = 0; part < 4; part++) {
		const char *text;
		long number = part == 1 ? (long)pid : value;
		int position = (int)sizeof(digits) - 1;

		if (part == 1 || part == 3) {
			digits[position] = 0;
			do {
				digits[--position] = (char)('0' + number % 10);
				number /= 10;
			} while (number > 0 && position > 0);
			text = digits + position;
		} else {
			text = parts[part];
		}
		for (; *text && length < sizeof(line) - 2; text++)
			line[length++] = *text;
	}
	line[length++] = '\n';
	(void)!write(STDERR_FILENO, line, length);
}

static void on_child_exit(int signal_number)
{
	int saved_errno = errno, status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			report_child(pid, status);
	errno = saved_errno;
}

static void usage(void)
{
	fprintf(stderr, "usage: inetd_echo [-p PORT] [-6] [-x] [-n] [-c PROGRAM]\n");
	exit(2);
}

static void run_child(int listener, int fd, unsigned number, bool exec_program)
{
	close(listener);
	if (!exec_program) {
		echo_connection(fd, plan_for_connection(FAMILY_ROTATE, 0, number));
		/* exit, not _exit: the shim's exit handlers publish the child's
		 * final counters. */
		exit(0);
	}
	if (dup2(fd, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0) {
		fprintf(stderr, "inetd_echo: dup2: %s\n", strerror(errno));
		_exit(126);
	}
	if (fd > STDOUT_FILENO)
		close(fd);
	execl(program, program, (char *)NULL);
	fprintf(stderr, "inetd_echo: exec %s: %s\n", program, strerror(errno));
	_exit(127);
}

int main(int argc, char **argv)
{
	bool ipv6 = false, exec_program = true, restart = true;
	int port = 0, option, listener;
	struct sigaction action;

	server_name = "inetd_echo";
	while ((option = getopt(argc, argv, "p:6xnc:")) != -1) {
		switch (option) {
		case 'p':
			port = parse_port(optarg);
			break;
		case '6':
			ipv6 = true;
			break;
		case 'x':
			exec_program = false;
			break;
		case 'n':
			restart = false;
			break;
		case 'c':
			program = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	ignore_sigpipe();
	memset(&action, 0, sizeof(action));
	action.sa_handler = on_child_exit;
	action.sa_flags = SA_NOCLDSTOP | (restart ? SA_RESTART : 0);
	sigemptyset(&action.sa_mask);
	if (sigaction(SIGCHLD, &action, NULL) != 0)
		die("sigaction(SIGCHLD): %s", strerror(errno));
	listener = open_listener(port, ipv6);
	for (unsigned number = 0;; number++) {
		int fd;
		pid_t child;

		fd = accept_connection(listener, number, restart);
		if (fd < 0) {
			/* Without SA_RESTART an exiting child interrupts accept:
			 * exactly what the kernel does; try again. */
			number--;
			continue;
		}
		child = fork();
		if (child < 0)
			die("fork: %s", strerror(errno));
		if (child == 0)
			run_child(listener, fd, number, exec_program);
		if (close(fd) != 0)
			die("close: %s", strerror(errno));
	}
}
