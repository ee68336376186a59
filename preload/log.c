// SPDX-License-Identifier: MIT
/*
 * One-line diagnostics on stderr.
 *
 * The line is formatted on the stack and written with one real write(), so
 * lines from several threads never interleave and logging never allocates,
 * never recurses into the shim and never changes errno.
 */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "ringsteer.h"

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void rs_log(int level, const char *format, ...)
{
	int saved_errno = errno;
	char line[1024];
	va_list ap;
	int length;

	if (level > rs_config.log_level)
		return;
	length = snprintf(line, sizeof(line), "ringsteer[%d]: %s: ", (int)getpid(),
			  level_names[level]);
	va_start(ap, format);
	length += vsnprintf(line + length, sizeof(line) - (size_t)length, format, ap);
	va_end(ap);
	if (length > (int)sizeof(line) - 2)
		length = (int)sizeof(line) - 2;
	line[length++] = '\n';
	if (REAL(write))
		(void)!REAL(write)(STDERR_FILENO, line, (size_t)length);
	errno = saved_errno;
}
