// SPDX-License-Identifier: MIT
/*
 * Writes to a connection, then execs (or _exits) with it still open: a
 * forked child reads the client's line, answers "got LINE" with write(2)
 * (bytes the shim queues), and execs /bin/sh to write "after" on the same
 * descriptor.  On the kernel both lines arrive, in that order; a shim must
 * send what it queued before the new image replaces the one that held it.
 *
 *   exec_after_write [-p PORT]
 *
 * Connection N execs with the Nth of execl, execlp, execle, execv, execvp,
 * execvpe, execve, fexecve and execveat, in turn; the tenth tries a program
 * that does not exist first, answers "exec failed: ERRNO" with write(2) and
 * execs with execl after all; the eleventh and twelfth end with _exit and
 * _Exit instead (no exit handlers, no "after"); the thirteenth and
 * fourteenth start the shell with posix_spawn and posix_spawnp, wait for
 * it and exit.  A child that fails is reported on stderr, which the test
 * checks.  Runs until killed.
 */
#include <spawn.h>
#include <sys/wait.h>

#include "server_common.h"

#define EXEC_WAYS 14

extern char **environ;

static void on_child_exit(int signal_number)
{
	int saved_errno = errno, status;
	pid_t pid;

	(void)signal_number;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			static const char line[] = "exec_after_write: a child failed\n";

			(void)!write(STDERR_FILENO, line, sizeof(line) - 1);
		}
	}
	errno = saved_errno;
}

static void exec_shell(unsigned way, int fd)
{
	char script[64], *arguments[4];
	int shell;

	snprintf(script, sizeof(script), "echo after >&%d", fd);
	arguments[0] = "sh";
	arguments[1] = "-c";
	arguments[2] = script;
	arguments[3] = NULL;
	switch (way) {
	case 0: execl("/bin/sh", "sh", "-c", script, (char *)NULL); break;
	case 1: execlp("sh", "sh", "-c", script, (char *)NULL); break;
	case 2: execle("/bin/sh", "sh", "-c", script, (char *)NULL, environ); break;
	case 3: execv("/bin/sh", arguments); break;
	case 4: execvp("sh", arguments); break;
	case 5: execvpe("sh", arguments, environ); break;
	case 6: execve("/bin/sh", arguments, environ); break;
	case 7:
		shell = open("/bin/sh", O_RDONLY | O_CLOEXEC);
		if (shell >= 0)
			fexecve(shell, arguments, environ);
		break;
	case 8: execveat(AT_FDCWD, "/bin/sh", arguments, environ, 0); break;
	case 10: _exit(0);
	case 11: _Exit(0);
	case 12:
	case 13: {
		/* The spawned shell writes; this process ends after it. */
		pid_t pid;
		int status, error = way == 12 ?
			posix_spawn(&pid, "/bin/sh", NULL, NULL, arguments, environ) :
			posix_spawnp(&pid, "sh", NULL, NULL, arguments, environ);

		if (error) {
			errno = error;
			break;
		}
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
			_exit(1);
		exit(0);
	}
	default: {
		char failure[64];

		execl("/nonexistent/program", "program", (char *)NULL);
		snprintf(failure, sizeof(failure), "exec failed: %s\n", strerrorname_np(errno));
		if (write(fd, failure, strlen(failure)) != (ssize_t)strlen(failure))
			_exit(1);
		execl("/bin/sh", "sh", "-c", script, (char *)NULL);
		break;
	}
	}
	fprintf(stderr, "exec_after_write: exec way %u: %s\n", way, strerror(errno));
	_exit(127);
}

static void run_child(int listener, int fd, unsigned number)
{
	char line[128];
	size_t length = 0;
	char answer[160];

	close(listener);
	/* The parent's reaper would take the spawned shell's status. */
	signal(SIGCHLD, SIG_DFL);
	/* One line, a byte at a time, so nothing after it is taken. */
	while (length < sizeof(line) - 1) {
		ssize_t got = read(fd, line + length, 1);

		if (got <= 0)
			_exit(1);
		if (line[length++] == '\n')
			break;
	}
	line[length] = 0;
	snprintf(answer, sizeof(answer), "got %s", line);
	if (write(fd, answer, strlen(answer)) != (ssize_t)strlen(answer))
		_exit(1);
	exec_shell(number % EXEC_WAYS, fd);
}

int main(int argc, char **argv)
{
	struct sigaction action;
	int port = 0, option, listener;

	server_name = "exec_after_write";
	while ((option = getopt(argc, argv, "p:")) != -1) {
		if (option == 'p')
			port = parse_port(optarg);
		else
			die("usage: exec_after_write [-p PORT]");
	}
	ignore_sigpipe();
	memset(&action, 0, sizeof(action));
	action.sa_handler = on_child_exit;
	action.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	sigemptyset(&action.sa_mask);
	if (sigaction(SIGCHLD, &action, NULL) != 0)
		die("sigaction(SIGCHLD): %s", strerror(errno));
	listener = open_listener(port, false);
	for (unsigned number = 0;; number++) {
		int fd = accept(listener, NULL, NULL);
		pid_t child;

		if (fd < 0) {
			if (errno == EINTR) {
				number--;
				continue;
			}
			die("accept: %s", strerror(errno));
		}
		child = fork();
		if (child < 0)
			die("fork: %s", strerror(errno));
		if (child == 0)
			run_child(listener, fd, number);
		close(fd);
	}
}
