/* SPDX-License-Identifier: MIT */
/*
 * What the call-by-call probes (errno_probe, connect_probe) print: one line
 * per call, `scenario: step = result`, with the errno name on failure, so
 * that a transcript on the plain kernel and one under the shim can be
 * compared line for line.
 */
#ifndef RINGSTEER_TESTS_PROBE_H
#define RINGSTEER_TESTS_PROBE_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The scenario running, the first word of every line. */
static const char *scenario;

static void record(const char *step, long result, int error)
{
	if (result < 0)
		printf("%s: %s = -1 %s\n", scenario, step, strerrorname_np(error));
	else
		printf("%s: %s = %ld\n", scenario, step, result);
	fflush(stdout);
}

/* Runs a call, restarting it on EINTR, and records its result. */
#define STEP(description, call) ({                         \
	long step_result_;                                 \
	do {                                               \
		step_result_ = (long)(call);               \
	} while (step_result_ < 0 && errno == EINTR);      \
	record(description, step_result_, errno);          \
	step_result_;                                      \
})

#endif
