// SPDX-License-Identifier: MIT
/*
 * A filter for inetd_echo -c that echoes stdin to stdout through two paths
 * at once: the first half of each chunk with write(2), the second with
 * stdio (fwrite and fflush), which writes through the C library's own
 * write, out of an interposer's sight.  The echo is right only if the two
 * keep their order.  Exits 1 on any failure.
 */
#include <stdio.h>
#include <unistd.h>

static int write_all(const char *data, size_t length)
{
	while (length > 0) {
		ssize_t written = write(STDOUT_FILENO, data, length);

		if (written <= 0)
			return -1;
		data += written;
		length -= (size_t)written;
	}
	return 0;
}

int main(void)
{
	static char buffer[65536];
	ssize_t received;

	while ((received = read(STDIN_FILENO, buffer, sizeof(buffer))) > 0) {
		size_t half = (size_t)received / 2, rest = (size_t)received - half;

		if (write_all(buffer, half) != 0 || fwrite(buffer + half, 1, rest, stdout) != rest ||
		    fflush(stdout) != 0)
			return 1;
	}
	return received < 0;
}
