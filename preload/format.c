// SPDX-License-Identifier: MIT
/*
 * dprintf and vdprintf, and their fortified forms: the C library formats
 * and writes through its own internal write, which no interposer sees, so
 * on a socket the shim carries the text would pass bytes write(2) had
 * queued.  Here the text is formatted in the shim and written with the
 * shim's write, after them.  Other descriptors take the C library's call.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "ringsteer.h"

int __vsnprintf_chk(char *buffer, size_t size, int flag, size_t buffer_size,
		    const char *format, va_list ap);

/* flag < 0: plain vsnprintf; else the fortified one's flag. */
static int format_into(char *buffer, size_t size, int flag, const char *format, va_list ap)
{
	if (flag < 0)
		return vsnprintf(buffer, size, format, ap);
	return __vsnprintf_chk(buffer, size, flag, size, format, ap);
}

/* Formats, then writes all of it as the C library's vdprintf does: the
 * length on success, the first failure (EINTR included) otherwise. */
static long format_and_write(int fd, int flag, const char *format, va_list ap)
{
	char stack[1024], *text = stack;
	size_t done = 0;
	long result = 0;
	va_list copy;
	int length;

	va_copy(copy, ap);
	length = format_into(stack, sizeof(stack), flag, format, copy);
	va_end(copy);
	if (length < 0)
		return -errno;
	if ((size_t)length >= sizeof(stack)) {
		text = malloc((size_t)length + 1);
		if (!text)
			return -ENOMEM;
		format_into(text, (size_t)length + 1, flag, format, ap);
	}
	while (done < (size_t)length) {
		result = rs_write(fd, text + done, (size_t)length - done);
		if (result < 0)
			break;
		done += (size_t)result;
	}
	if (text != stack)
		free(text);
	return result < 0 ? result : length;
}

static bool carried(int fd)
{
	struct rs_socket *socket = rs_fd_get(fd);

	if (!socket)
		return false;
	rs_socket_unref(socket);
	return true;
}

long rs_vdprintf(int fd, const char *format, va_list ap)
{
	if (likely(!carried(fd)))
		return rs_kernel_result(REAL(vdprintf)(fd, format, ap));
	return format_and_write(fd, -1, format, ap);
}

long rs___vdprintf_chk(int fd, int flag, const char *format, va_list ap)
{
	if (likely(!carried(fd)))
		return rs_kernel_result(REAL(__vdprintf_chk)(fd, flag, format, ap));
	return format_and_write(fd, flag, format, ap);
}
