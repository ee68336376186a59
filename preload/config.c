// SPDX-License-Identifier: MIT
/*
 * RINGSTEER_* environment variables.
 *
 * Every variable has a default; a value that does not parse, or lies outside
 * its range, is reported in one line naming the variable and the default is
 * kept, so a typo never takes a server down and never silently changes
 * behaviour.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ringsteer.h"
#include "../bpf/steer.h"

RS_HIDDEN struct rs_config rs_config;

void rs_config_defaults(struct rs_config *config)
{
	memset(config, 0, sizeof(*config));
	config->log_level = RS_LOG_WARN;
	config->pin = false;
	config->client = false;
	config->batch = 32;
	config->txq_bytes = 256 * 1024;
	config->rxq_bytes = 16 * 1024;
	config->event_sockets = true;
	config->ring_entries = 256;
	config->flush_us = 1000;
	config->defer_taskrun = true;
	snprintf(config->stats_dir, sizeof(config->stats_dir), "/dev/shm");
	config->stats_keep = false;
}

struct parse_context {
	rs_env_lookup lookup;
	rs_config_report report;
	int bad;
};

static void complain(struct parse_context *context, const char *name, const char *value,
		     const char *expected, const char *default_text)
{
	char line[512];

	snprintf(line, sizeof(line), "%s=\"%.64s\" is not valid (%s); using the default, %s",
		 name, value, expected, default_text);
	context->bad++;
	if (context->report)
		context->report(RS_LOG_ERROR, line);
}

static bool parse_bool(struct parse_context *context, const char *name, bool *out)
{
	const char *value = context->lookup(name);

	if (!value)
		return false;
	if (!strcmp(value, "1") || !strcasecmp(value, "yes") || !strcasecmp(value, "true") ||
	    !strcasecmp(value, "on")) {
		*out = true;
		return true;
	}
	if (!strcmp(value, "0") || !strcasecmp(value, "no") || !strcasecmp(value, "false") ||
	    !strcasecmp(value, "off") || !*value) {
		*out = false;
		return true;
	}
	complain(context, name, value, "expected 0 or 1", *out ? "1" : "0");
	return false;
}

/* Accepts a decimal number with an optional k, m or g suffix (powers of 1024
 * when allow_suffix). */
static bool parse_unsigned(struct parse_context *context, const char *name,
			   unsigned long long minimum, unsigned long long maximum,
			   bool allow_suffix, unsigned long long *out)
{
	const char *value = context->lookup(name);
	char expected[128], default_text[32];
	unsigned long long number, multiplier = 1;
	char *end;

	if (!value)
		return false;
	snprintf(expected, sizeof(expected), "expected a number from %llu to %llu%s",
		 minimum, maximum, allow_suffix ? ", optionally with k, m or g" : "");
	snprintf(default_text, sizeof(default_text), "%llu", *out);
	errno = 0;
	if (*value < '0' || *value > '9')
		goto bad;
	number = strtoull(value, &end, 10);
	if (errno)
		goto bad;
	if (allow_suffix && *end) {
		switch (*end | 0x20) {
		case 'k': multiplier = 1ull << 10; break;
		case 'm': multiplier = 1ull << 20; break;
		case 'g': multiplier = 1ull << 30; break;
		default: goto bad;
		}
		end++;
	}
	if (*end || number > maximum / multiplier)
		goto bad;
	number *= multiplier;
	if (number < minimum || number > maximum)
		goto bad;
	*out = number;
	return true;
bad:
	complain(context, name, value, expected, default_text);
	return false;
}

static void parse_log_level(struct parse_context *context, struct rs_config *config)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	const char *value = context->lookup("RINGSTEER_LOG");

	if (!value)
		return;
	for (int level = 0; level < 4; level++) {
		if (!strcasecmp(value, names[level])) {
			config->log_level = level;
			return;
		}
	}
	complain(context, "RINGSTEER_LOG", value, "expected error, warn, info or debug", "warn");
}

/* A list of cores such as "0-3,6": the order is the order lanes take them. */
static void parse_cpus(struct parse_context *context, struct rs_config *config)
{
	const char *value = context->lookup("RINGSTEER_CPUS");
	int cpus[RS_MAX_CPUS];
	int count = 0;
	const char *cursor;

	if (!value || !*value)
		return;
	cursor = value;
	while (*cursor) {
		char *end;
		long first, last;

		if (*cursor < '0' || *cursor > '9')
			goto bad;
		first = strtol(cursor, &end, 10);
		last = first;
		if (*end == '-') {
			if (end[1] < '0' || end[1] > '9')
				goto bad;
			last = strtol(end + 1, &end, 10);
		}
		if (first < 0 || last < first || last >= RS_MAX_CPUS)
			goto bad;
		for (long cpu = first; cpu <= last; cpu++) {
			if (count == RS_MAX_CPUS)
				goto bad;
			cpus[count++] = (int)cpu;
		}
		if (*end == ',')
			end++;
		else if (*end)
			goto bad;
		cursor = end;
	}
	memcpy(config->cpus, cpus, sizeof(int) * (size_t)count);
	config->cpu_count = count;
	return;
bad:
	complain(context, "RINGSTEER_CPUS", value,
		 "expected a list of cores such as 0-3,6, each below 1024", "all cores");
}

int rs_config_load(struct rs_config *config, rs_env_lookup lookup, rs_config_report report)
{
	struct parse_context context = { .lookup = lookup, .report = report };
	unsigned long long number;
	const char *value;

	rs_config_defaults(config);
	parse_bool(&context, "RINGSTEER_DISABLE", &config->disable);
	parse_log_level(&context, config);
	parse_cpus(&context, config);
	parse_bool(&context, "RINGSTEER_PIN", &config->pin);
	parse_bool(&context, "RINGSTEER_CLIENT", &config->client);
	number = config->batch;
	if (parse_unsigned(&context, "RINGSTEER_BATCH", 1, 4096, false, &number))
		config->batch = (unsigned)number;
	number = config->txq_bytes;
	if (parse_unsigned(&context, "RINGSTEER_TXQ_BYTES", 4096, 1ull << 30, true, &number))
		config->txq_bytes = (size_t)number;
	number = config->rxq_bytes;
	if (parse_unsigned(&context, "RINGSTEER_RXQ_BYTES", 1024, 16ull << 20, true, &number))
		config->rxq_bytes = (size_t)number;
	parse_bool(&context, "RINGSTEER_EVENT_SOCKETS", &config->event_sockets);
	number = config->listeners;
	if (parse_unsigned(&context, "RINGSTEER_LISTENERS", 1, RS_STEER_MAX_SLOTS, false, &number))
		config->listeners = (unsigned)number;
	number = config->ring_entries;
	if (parse_unsigned(&context, "RINGSTEER_RING_ENTRIES", 8, 32768, false, &number)) {
		if (number & (number - 1)) {
			char text[32];

			snprintf(text, sizeof(text), "%llu", number);
			complain(&context, "RINGSTEER_RING_ENTRIES", text, "expected a power of two",
				 "256");
		} else {
			config->ring_entries = (unsigned)number;
		}
	}
	number = config->flush_us;
	if (parse_unsigned(&context, "RINGSTEER_FLUSH_US", 50, 1000000, false, &number))
		config->flush_us = (unsigned)number;
	parse_bool(&context, "RINGSTEER_DEFER_TASKRUN", &config->defer_taskrun);
	value = lookup("RINGSTEER_STATS_DIR");
	if (value && *value) {
		if (value[0] != '/' || strlen(value) >= sizeof(config->stats_dir))
			complain(&context, "RINGSTEER_STATS_DIR", value,
				 "expected an absolute path shorter than 256 bytes", "/dev/shm");
		else
			snprintf(config->stats_dir, sizeof(config->stats_dir), "%s", value);
	}
	parse_bool(&context, "RINGSTEER_STATS_KEEP", &config->stats_keep);
	return context.bad;
}

void rs_config_describe(const struct rs_config *config, char *buf, size_t size)
{
	struct rs_config defaults;
	size_t used = 0;

	rs_config_defaults(&defaults);
	buf[0] = 0;
#define DESCRIBE(...) do { \
		int n = snprintf(buf + used, size - used, "%s", used ? ", " : ""); \
		if (n > 0 && (size_t)n < size - used) used += (size_t)n; \
		n = snprintf(buf + used, size - used, __VA_ARGS__); \
		if (n > 0 && (size_t)n < size - used) used += (size_t)n; \
	} while (0)
	if (config->log_level != defaults.log_level)
		DESCRIBE("log=%s", (const char *[]){ "error", "warn", "info", "debug" }[config->log_level]);
	if (config->cpu_count)
		DESCRIBE("cpus=%d listed", config->cpu_count);
	if (config->pin)
		DESCRIBE("pin=1");
	if (config->client)
		DESCRIBE("client=1");
	if (config->batch != defaults.batch)
		DESCRIBE("batch=%u", config->batch);
	if (config->txq_bytes != defaults.txq_bytes)
		DESCRIBE("txq_bytes=%zu", config->txq_bytes);
	if (config->rxq_bytes != defaults.rxq_bytes)
		DESCRIBE("rxq_bytes=%zu", config->rxq_bytes);
	if (config->listeners != defaults.listeners)
		DESCRIBE("listeners=%u", config->listeners);
	if (config->event_sockets != defaults.event_sockets)
		DESCRIBE("event_sockets=%d", config->event_sockets);
	if (config->ring_entries != defaults.ring_entries)
		DESCRIBE("ring_entries=%u", config->ring_entries);
	if (config->flush_us != defaults.flush_us)
		DESCRIBE("flush_us=%u", config->flush_us);
	if (config->defer_taskrun != defaults.defer_taskrun)
		DESCRIBE("defer_taskrun=%d", config->defer_taskrun);
	if (strcmp(config->stats_dir, defaults.stats_dir))
		DESCRIBE("stats_dir=%s", config->stats_dir);
	if (config->stats_keep)
		DESCRIBE("stats_keep=1");
#undef DESCRIBE
	if (!used)
		snprintf(buf, size, "all defaults");
}
