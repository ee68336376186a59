// SPDX-License-Identifier: MIT
/*
 * Unit tests of the RINGSTEER_* configuration parser (preload/config.c).
 *
 * rs_config_load takes its environment through a lookup function and reports
 * bad values through a report function, so the tests feed it a table of
 * name/value pairs and capture every report line.  The rule under test: a
 * valid value is applied, a bad one yields exactly one report line naming the
 * variable and leaves that setting at its default, and an unset variable is
 * silent.  rs_config_describe, which makes the start-up line, must list the
 * non-default settings only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ringsteer.h"

/* ---- the fake environment and the captured reports ------------------------ */

#define MAX_VARIABLES 16
#define MAX_REPORTS   16

struct variable {
	const char *name;
	const char *value;
};

static struct variable environment[MAX_VARIABLES];
static bool looked_up[MAX_VARIABLES];
static size_t environment_count;

static struct {
	int count;
	int levels[MAX_REPORTS];
	char lines[MAX_REPORTS][600];
} reports;

static const char *fake_lookup(const char *name)
{
	for (size_t i = 0; i < environment_count; i++) {
		if (!strcmp(environment[i].name, name)) {
			looked_up[i] = true;
			return environment[i].value;
		}
	}
	return NULL;
}

static void capture_report(int level, const char *line)
{
	if (reports.count < MAX_REPORTS) {
		reports.levels[reports.count] = level;
		snprintf(reports.lines[reports.count], sizeof(reports.lines[0]), "%s", line);
	}
	reports.count++;
}

/* Loads a configuration from the given variables; returns the parser's count
 * of bad values.  Every variable given must have been looked up, so a typo in
 * a test's variable name cannot make a test pass vacuously. */
static int load(const struct variable *variables, size_t count, struct rs_config *config)
{
	int bad;

	assert_true(count <= MAX_VARIABLES);
	memset(&reports, 0, sizeof(reports));
	memset(looked_up, 0, sizeof(looked_up));
	if (count)
		memcpy(environment, variables, count * sizeof(*variables));
	environment_count = count;
	/* Garbage first: load must not depend on what the caller left there. */
	memset(config, 0xa5, sizeof(*config));
	bad = rs_config_load(config, fake_lookup, capture_report);
	for (size_t i = 0; i < count; i++) {
		if (!looked_up[i])
			fail_msg("%s was never looked up", variables[i].name);
	}
	return bad;
}

static int load_one(const char *name, const char *value, struct rs_config *config)
{
	struct variable variable = { name, value };

	return load(&variable, 1, config);
}

static void assert_config_equal(const struct rs_config *actual, const struct rs_config *expected)
{
	assert_int_equal(actual->disable, expected->disable);
	assert_int_equal(actual->log_level, expected->log_level);
	assert_int_equal(actual->cpu_count, expected->cpu_count);
	assert_true(actual->cpu_count >= 0 && actual->cpu_count <= RS_MAX_CPUS);
	assert_memory_equal(actual->cpus, expected->cpus, sizeof(int) * (size_t)actual->cpu_count);
	assert_int_equal(actual->pin, expected->pin);
	assert_int_equal(actual->client, expected->client);
	assert_int_equal(actual->batch, expected->batch);
	assert_int_equal(actual->txq_bytes, expected->txq_bytes);
	assert_int_equal(actual->ring_entries, expected->ring_entries);
	assert_int_equal(actual->flush_us, expected->flush_us);
	assert_int_equal(actual->defer_taskrun, expected->defer_taskrun);
	assert_string_equal(actual->stats_dir, expected->stats_dir);
	assert_int_equal(actual->stats_keep, expected->stats_keep);
	assert_int_equal(actual->rxq_bytes, expected->rxq_bytes);
	assert_int_equal(actual->event_sockets, expected->event_sockets);
	assert_int_equal(actual->listeners, expected->listeners);
}

static void assert_no_reports(void)
{
	if (reports.count)
		fail_msg("unexpected report: %s", reports.lines[0]);
}

/* ---- defaults -------------------------------------------------------------- */

static void test_defaults_without_environment(void **state)
{
	struct rs_config config, defaults;

	assert_int_equal(load(NULL, 0, &config), 0);
	assert_no_reports();
	rs_config_defaults(&defaults);
	assert_config_equal(&config, &defaults);

	assert_false(config.disable);
	assert_int_equal(config.log_level, RS_LOG_WARN);
	assert_int_equal(config.cpu_count, 0);
	assert_false(config.pin);
	assert_false(config.client);
	assert_int_equal(config.batch, 32);
	assert_int_equal(config.txq_bytes, 256 * 1024);
	assert_int_equal(config.ring_entries, 256);
	assert_int_equal(config.flush_us, 1000);
	assert_true(config.defer_taskrun);
	assert_string_equal(config.stats_dir, "/dev/shm");
	assert_false(config.stats_keep);
	assert_int_equal(config.rxq_bytes, 16 * 1024);
	assert_true(config.event_sockets);
	assert_int_equal(config.listeners, 0);
}

static void test_unrelated_variables_ignored(void **state)
{
	static const struct variable variables[] = {
		{ "RINGSTEER_NO_SUCH_SETTING", "1" },
		{ "PATH", "/usr/bin" },
	};
	struct rs_config config, defaults;

	memset(&reports, 0, sizeof(reports));
	memcpy(environment, variables, sizeof(variables));
	environment_count = 2;
	assert_int_equal(rs_config_load(&config, fake_lookup, capture_report), 0);
	assert_no_reports();
	rs_config_defaults(&defaults);
	assert_config_equal(&config, &defaults);
}

/* ---- valid values ------------------------------------------------------------ */

struct boolean_setting {
	const char *name;
	size_t offset;
};

static const struct boolean_setting boolean_settings[] = {
	{ "RINGSTEER_DISABLE", offsetof(struct rs_config, disable) },
	{ "RINGSTEER_PIN", offsetof(struct rs_config, pin) },
	{ "RINGSTEER_CLIENT", offsetof(struct rs_config, client) },
	{ "RINGSTEER_DEFER_TASKRUN", offsetof(struct rs_config, defer_taskrun) },
	{ "RINGSTEER_STATS_KEEP", offsetof(struct rs_config, stats_keep) },
	{ "RINGSTEER_EVENT_SOCKETS", offsetof(struct rs_config, event_sockets) },
};

static bool boolean_field(const struct rs_config *config, size_t offset)
{
	return *(const bool *)((const char *)config + offset);
}

static void test_booleans_valid(void **state)
{
	static const char *const true_values[] = { "1", "yes", "true", "on", "YES", "True", "ON" };
	static const char *const false_values[] = { "0", "no", "false", "off", "NO", "Off", "" };
	struct rs_config config, expected;

	for (size_t s = 0; s < sizeof(boolean_settings) / sizeof(boolean_settings[0]); s++) {
		const struct boolean_setting *setting = &boolean_settings[s];

		for (size_t v = 0; v < sizeof(true_values) / sizeof(true_values[0]); v++) {
			assert_int_equal(load_one(setting->name, true_values[v], &config), 0);
			assert_no_reports();
			if (!boolean_field(&config, setting->offset))
				fail_msg("%s=%s did not turn the setting on", setting->name,
					 true_values[v]);
			/* Nothing else changed. */
			rs_config_defaults(&expected);
			*(bool *)((char *)&expected + setting->offset) = true;
			assert_config_equal(&config, &expected);
		}
		for (size_t v = 0; v < sizeof(false_values) / sizeof(false_values[0]); v++) {
			assert_int_equal(load_one(setting->name, false_values[v], &config), 0);
			assert_no_reports();
			rs_config_defaults(&expected);
			*(bool *)((char *)&expected + setting->offset) = false;
			assert_config_equal(&config, &expected);
		}
	}
}

static void test_log_levels_valid(void **state)
{
	static const struct {
		const char *value;
		int level;
	} cases[] = {
		{ "error", RS_LOG_ERROR }, { "warn", RS_LOG_WARN }, { "info", RS_LOG_INFO },
		{ "debug", RS_LOG_DEBUG }, { "DEBUG", RS_LOG_DEBUG }, { "Info", RS_LOG_INFO },
	};
	struct rs_config config;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(load_one("RINGSTEER_LOG", cases[i].value, &config), 0);
		assert_no_reports();
		assert_int_equal(config.log_level, cases[i].level);
	}
}

static void assert_cpus(const char *value, const int *expected, int expected_count)
{
	struct rs_config config;

	assert_int_equal(load_one("RINGSTEER_CPUS", value, &config), 0);
	assert_no_reports();
	assert_int_equal(config.cpu_count, expected_count);
	assert_memory_equal(config.cpus, expected, sizeof(int) * (size_t)expected_count);
}

static void test_cpus_valid(void **state)
{
	static int all[RS_MAX_CPUS];

	assert_cpus("0-3,6", (const int[]){ 0, 1, 2, 3, 6 }, 5);
	assert_cpus("5", (const int[]){ 5 }, 1);
	/* The order given is the order lanes take the cores. */
	assert_cpus("7,2,4-5", (const int[]){ 7, 2, 4, 5 }, 4);
	assert_cpus("3-3", (const int[]){ 3 }, 1);
	assert_cpus("1023", (const int[]){ 1023 }, 1);
	for (int cpu = 0; cpu < RS_MAX_CPUS; cpu++)
		all[cpu] = cpu;
	assert_cpus("0-1023", all, RS_MAX_CPUS);
}

struct number_case {
	const char *name;
	const char *value;
	unsigned long long expected;
};

static unsigned long long numeric_field(const struct rs_config *config, const char *name)
{
	if (!strcmp(name, "RINGSTEER_BATCH"))
		return config->batch;
	if (!strcmp(name, "RINGSTEER_TXQ_BYTES"))
		return config->txq_bytes;
	if (!strcmp(name, "RINGSTEER_RING_ENTRIES"))
		return config->ring_entries;
	if (!strcmp(name, "RINGSTEER_FLUSH_US"))
		return config->flush_us;
	if (!strcmp(name, "RINGSTEER_RXQ_BYTES"))
		return config->rxq_bytes;
	if (!strcmp(name, "RINGSTEER_LISTENERS"))
		return config->listeners;
	fail_msg("no numeric setting %s", name);
	return 0;
}

static void test_numbers_valid(void **state)
{
	static const struct number_case cases[] = {
		{ "RINGSTEER_BATCH", "1", 1 },
		{ "RINGSTEER_BATCH", "64", 64 },
		{ "RINGSTEER_BATCH", "4096", 4096 },
		{ "RINGSTEER_BATCH", "007", 7 },
		{ "RINGSTEER_TXQ_BYTES", "4096", 4096 },
		{ "RINGSTEER_TXQ_BYTES", "4k", 4096 },
		{ "RINGSTEER_TXQ_BYTES", "64K", 64 * 1024 },
		{ "RINGSTEER_TXQ_BYTES", "2m", 2 * 1024 * 1024 },
		{ "RINGSTEER_TXQ_BYTES", "3M", 3 * 1024 * 1024 },
		{ "RINGSTEER_TXQ_BYTES", "1g", 1ull << 30 },
		{ "RINGSTEER_TXQ_BYTES", "1G", 1ull << 30 },
		{ "RINGSTEER_TXQ_BYTES", "1073741824", 1ull << 30 },
		{ "RINGSTEER_RING_ENTRIES", "8", 8 },
		{ "RINGSTEER_RING_ENTRIES", "1024", 1024 },
		{ "RINGSTEER_RING_ENTRIES", "32768", 32768 },
		{ "RINGSTEER_FLUSH_US", "50", 50 },
		{ "RINGSTEER_FLUSH_US", "250", 250 },
		{ "RINGSTEER_FLUSH_US", "1000000", 1000000 },
		{ "RINGSTEER_RXQ_BYTES", "1k", 1024 },
		{ "RINGSTEER_RXQ_BYTES", "64k", 64 * 1024 },
		{ "RINGSTEER_RXQ_BYTES", "16m", 16ull << 20 },
		{ "RINGSTEER_LISTENERS", "1", 1 },
		{ "RINGSTEER_LISTENERS", "256", 256 },
	};
	struct rs_config config;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int bad = load_one(cases[i].name, cases[i].value, &config);

		if (bad || reports.count)
			fail_msg("%s=%s rejected: %s", cases[i].name, cases[i].value,
				 reports.count ? reports.lines[0] : "(no report)");
		if (numeric_field(&config, cases[i].name) != cases[i].expected)
			fail_msg("%s=%s gave %llu, expected %llu", cases[i].name, cases[i].value,
				 numeric_field(&config, cases[i].name), cases[i].expected);
	}
}

static void test_stats_dir_valid(void **state)
{
	char longest[256];
	struct rs_config config;

	assert_int_equal(load_one("RINGSTEER_STATS_DIR", "/tmp/ringsteer-stats", &config), 0);
	assert_no_reports();
	assert_string_equal(config.stats_dir, "/tmp/ringsteer-stats");

	/* 255 bytes plus the terminator fill the field exactly. */
	memset(longest, 'd', sizeof(longest) - 1);
	longest[0] = '/';
	longest[sizeof(longest) - 1] = 0;
	assert_int_equal(load_one("RINGSTEER_STATS_DIR", longest, &config), 0);
	assert_no_reports();
	assert_string_equal(config.stats_dir, longest);

	/* Empty means unset. */
	assert_int_equal(load_one("RINGSTEER_STATS_DIR", "", &config), 0);
	assert_no_reports();
	assert_string_equal(config.stats_dir, "/dev/shm");
}

static void test_every_variable_at_once(void **state)
{
	static const struct variable variables[] = {
		{ "RINGSTEER_DISABLE", "1" },
		{ "RINGSTEER_LOG", "debug" },
		{ "RINGSTEER_CPUS", "0-3,6" },
		{ "RINGSTEER_PIN", "1" },
		{ "RINGSTEER_CLIENT", "yes" },
		{ "RINGSTEER_BATCH", "8" },
		{ "RINGSTEER_TXQ_BYTES", "1m" },
		{ "RINGSTEER_RING_ENTRIES", "512" },
		{ "RINGSTEER_FLUSH_US", "200" },
		{ "RINGSTEER_DEFER_TASKRUN", "off" },
		{ "RINGSTEER_STATS_DIR", "/run/ringsteer" },
		{ "RINGSTEER_STATS_KEEP", "true" },
		{ "RINGSTEER_RXQ_BYTES", "32k" },
		{ "RINGSTEER_EVENT_SOCKETS", "0" },
		{ "RINGSTEER_LISTENERS", "8" },
	};
	struct rs_config config;

	assert_int_equal(load(variables, sizeof(variables) / sizeof(variables[0]), &config), 0);
	assert_no_reports();
	assert_true(config.disable);
	assert_int_equal(config.log_level, RS_LOG_DEBUG);
	assert_int_equal(config.cpu_count, 5);
	assert_memory_equal(config.cpus, ((const int[]){ 0, 1, 2, 3, 6 }), 5 * sizeof(int));
	assert_true(config.pin);
	assert_true(config.client);
	assert_int_equal(config.batch, 8);
	assert_int_equal(config.txq_bytes, 1024 * 1024);
	assert_int_equal(config.ring_entries, 512);
	assert_int_equal(config.flush_us, 200);
	assert_false(config.defer_taskrun);
	assert_string_equal(config.stats_dir, "/run/ringsteer");
	assert_true(config.stats_keep);
	assert_int_equal(config.rxq_bytes, 32 * 1024);
	assert_false(config.event_sockets);
	assert_int_equal(config.listeners, 8);
}

/* ---- bad values ---------------------------------------------------------------- */

/* One bad value: one report, at error level, naming the variable and quoting
 * the value; the configuration stays exactly the defaults. */
static void assert_rejected(const char *name, const char *value)
{
	struct rs_config config, defaults;
	int bad = load_one(name, value, &config);

	if (bad != 1 || reports.count != 1)
		fail_msg("%s=\"%s\": %d bad, %d report lines (expected 1 and 1)%s%s", name, value,
			 bad, reports.count, reports.count ? ": " : "",
			 reports.count ? reports.lines[0] : "");
	assert_int_equal(reports.levels[0], RS_LOG_ERROR);
	if (!strstr(reports.lines[0], name))
		fail_msg("the report for %s does not name it: %s", name, reports.lines[0]);
	if (strlen(value) < 32 && !strstr(reports.lines[0], value))
		fail_msg("the report for %s does not quote \"%s\": %s", name, value,
			 reports.lines[0]);
	if (strchr(reports.lines[0], '\n'))
		fail_msg("the report for %s spans several lines: %s", name, reports.lines[0]);
	rs_config_defaults(&defaults);
	assert_config_equal(&config, &defaults);
}

static void test_bad_booleans(void **state)
{
	static const char *const values[] = { "2", "maybe", " 1", "1 ", "-1", "yess", "0x1" };

	for (size_t s = 0; s < sizeof(boolean_settings) / sizeof(boolean_settings[0]); s++)
		for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++)
			assert_rejected(boolean_settings[s].name, values[v]);
}

static void test_bad_log_levels(void **state)
{
	assert_rejected("RINGSTEER_LOG", "verbose");
	assert_rejected("RINGSTEER_LOG", "warning");
	assert_rejected("RINGSTEER_LOG", "3");
	assert_rejected("RINGSTEER_LOG", "debug ");
}

static void test_bad_cpu_lists(void **state)
{
	static const char *const values[] = {
		"3-1", "a", "1,,2", ",1", "1-", "-1", "1--2", "1-2-3", "0-3 ", " 0", "1;2",
		"1024", "0-1024", "99999999999999999999", "0-99999999999999999999",
		"0-1023,0", /* 1025 entries */
	};

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		assert_rejected("RINGSTEER_CPUS", values[i]);
}

static void test_bad_numbers(void **state)
{
	static const struct variable cases[] = {
		/* not numbers */
		{ "RINGSTEER_BATCH", "abc" },
		{ "RINGSTEER_BATCH", "12x" },
		{ "RINGSTEER_BATCH", "1.5" },
		{ "RINGSTEER_BATCH", " 5" },
		{ "RINGSTEER_BATCH", "+5" },
		{ "RINGSTEER_BATCH", "0x10" },
		/* negative, out of range, overflowing */
		{ "RINGSTEER_BATCH", "-1" },
		{ "RINGSTEER_BATCH", "0" },
		{ "RINGSTEER_BATCH", "4097" },
		{ "RINGSTEER_BATCH", "4294967328" }, /* 2^32 + 32: must not wrap to 32 */
		{ "RINGSTEER_BATCH", "99999999999999999999999" },
		{ "RINGSTEER_BATCH", "18446744073709551616" },
		/* suffixes only where documented */
		{ "RINGSTEER_BATCH", "4k" },
		{ "RINGSTEER_TXQ_BYTES", "4095" },
		{ "RINGSTEER_TXQ_BYTES", "0k" },
		{ "RINGSTEER_TXQ_BYTES", "2g" },
		{ "RINGSTEER_TXQ_BYTES", "1025m" },
		{ "RINGSTEER_TXQ_BYTES", "1t" },
		{ "RINGSTEER_TXQ_BYTES", "4kb" },
		{ "RINGSTEER_TXQ_BYTES", "k" },
		{ "RINGSTEER_TXQ_BYTES", "-4k" },
		{ "RINGSTEER_TXQ_BYTES", "12x" },
		{ "RINGSTEER_TXQ_BYTES", "18014398509481984k" }, /* 2^54 k: overflows 64 bits */
		{ "RINGSTEER_TXQ_BYTES", "18446744073709551615" },
		{ "RINGSTEER_RING_ENTRIES", "100" },
		{ "RINGSTEER_RING_ENTRIES", "1000" },
		{ "RINGSTEER_RING_ENTRIES", "24" },
		{ "RINGSTEER_RING_ENTRIES", "4" },
		{ "RINGSTEER_RING_ENTRIES", "0" },
		{ "RINGSTEER_RING_ENTRIES", "65536" },
		{ "RINGSTEER_RING_ENTRIES", "-8" },
		{ "RINGSTEER_RING_ENTRIES", "1k" },
		{ "RINGSTEER_RING_ENTRIES", "4294967552" }, /* 2^32 + 256 */
		{ "RINGSTEER_FLUSH_US", "49" },
		{ "RINGSTEER_FLUSH_US", "1000001" },
		{ "RINGSTEER_FLUSH_US", "1ms" },
		{ "RINGSTEER_FLUSH_US", "-100" },
		{ "RINGSTEER_RXQ_BYTES", "1023" },
		{ "RINGSTEER_RXQ_BYTES", "17m" },
		{ "RINGSTEER_RXQ_BYTES", "-1k" },
		{ "RINGSTEER_LISTENERS", "0" },
		{ "RINGSTEER_LISTENERS", "257" },
		{ "RINGSTEER_LISTENERS", "4k" },
		{ "RINGSTEER_EVENT_SOCKETS", "maybe" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_rejected(cases[i].name, cases[i].value);
}

static void test_bad_stats_dirs(void **state)
{
	char too_long[300];

	assert_rejected("RINGSTEER_STATS_DIR", "relative/dir");
	assert_rejected("RINGSTEER_STATS_DIR", "./stats");
	assert_rejected("RINGSTEER_STATS_DIR", "~/stats");
	assert_rejected("RINGSTEER_STATS_DIR", "stats");
	memset(too_long, 'd', sizeof(too_long) - 1);
	too_long[0] = '/';
	too_long[sizeof(too_long) - 1] = 0;
	assert_rejected("RINGSTEER_STATS_DIR", too_long);
	/* 256 bytes do not fit with the terminator. */
	too_long[256] = 0;
	assert_rejected("RINGSTEER_STATS_DIR", too_long);
}

/* Bad values do not disturb the good ones around them, and each bad one is
 * reported once, under its own name. */
static void test_mixed_good_and_bad(void **state)
{
	static const struct variable variables[] = {
		{ "RINGSTEER_BATCH", "12x" },
		{ "RINGSTEER_LOG", "info" },
		{ "RINGSTEER_RING_ENTRIES", "100" },
		{ "RINGSTEER_TXQ_BYTES", "8k" },
		{ "RINGSTEER_CPUS", "3-1" },
		{ "RINGSTEER_PIN", "1" },
	};
	static const char *const bad_names[] = {
		"RINGSTEER_BATCH=", "RINGSTEER_RING_ENTRIES=", "RINGSTEER_CPUS=",
	};
	struct rs_config config;

	assert_int_equal(load(variables, sizeof(variables) / sizeof(variables[0]), &config), 3);
	assert_int_equal(reports.count, 3);
	for (size_t i = 0; i < 3; i++) {
		int matches = 0;

		for (int line = 0; line < reports.count; line++)
			matches += strstr(reports.lines[line], bad_names[i]) != NULL;
		if (matches != 1)
			fail_msg("%s is named in %d report lines, expected 1", bad_names[i], matches);
	}
	assert_int_equal(config.batch, 32);
	assert_int_equal(config.log_level, RS_LOG_INFO);
	assert_int_equal(config.ring_entries, 256);
	assert_int_equal(config.txq_bytes, 8192);
	assert_int_equal(config.cpu_count, 0);
	assert_true(config.pin);
}

static void test_without_report_function(void **state)
{
	struct rs_config config;

	memcpy(environment, (struct variable[]){ { "RINGSTEER_BATCH", "nope" } },
	       sizeof(struct variable));
	environment_count = 1;
	assert_int_equal(rs_config_load(&config, fake_lookup, NULL), 1);
	assert_int_equal(config.batch, 32);
}

/* ---- describe --------------------------------------------------------------- */

static void describe(const struct rs_config *config, char *buf, size_t size)
{
	rs_config_describe(config, buf, size);
	assert_non_null(memchr(buf, 0, size));
}

static void test_describe_defaults(void **state)
{
	static const struct variable explicit_defaults[] = {
		{ "RINGSTEER_LOG", "warn" },      { "RINGSTEER_BATCH", "32" },
		{ "RINGSTEER_TXQ_BYTES", "256k" }, { "RINGSTEER_RING_ENTRIES", "256" },
		{ "RINGSTEER_FLUSH_US", "1000" }, { "RINGSTEER_PIN", "0" },
		{ "RINGSTEER_STATS_DIR", "/dev/shm" },
	};
	struct rs_config config;
	char text[512];

	rs_config_defaults(&config);
	describe(&config, text, sizeof(text));
	assert_string_equal(text, "all defaults");

	/* Values equal to the defaults, spelled out, are still defaults. */
	assert_int_equal(load(explicit_defaults,
			      sizeof(explicit_defaults) / sizeof(explicit_defaults[0]), &config), 0);
	describe(&config, text, sizeof(text));
	assert_string_equal(text, "all defaults");
}

static void test_describe_single_settings(void **state)
{
	static const struct {
		const char *name;
		const char *value;
		const char *description;
	} cases[] = {
		{ "RINGSTEER_LOG", "debug", "log=debug" },
		{ "RINGSTEER_LOG", "error", "log=error" },
		{ "RINGSTEER_CPUS", "0-3,6", "cpus=5 listed" },
		{ "RINGSTEER_PIN", "1", "pin=1" },
		{ "RINGSTEER_CLIENT", "1", "client=1" },
		{ "RINGSTEER_BATCH", "8", "batch=8" },
		{ "RINGSTEER_TXQ_BYTES", "1m", "txq_bytes=1048576" },
		{ "RINGSTEER_RING_ENTRIES", "1024", "ring_entries=1024" },
		{ "RINGSTEER_FLUSH_US", "500", "flush_us=500" },
		{ "RINGSTEER_DEFER_TASKRUN", "0", "defer_taskrun=0" },
		{ "RINGSTEER_STATS_DIR", "/tmp/x", "stats_dir=/tmp/x" },
		{ "RINGSTEER_STATS_KEEP", "1", "stats_keep=1" },
		{ "RINGSTEER_RXQ_BYTES", "64k", "rxq_bytes=65536" },
		{ "RINGSTEER_EVENT_SOCKETS", "0", "event_sockets=0" },
		{ "RINGSTEER_LISTENERS", "8", "listeners=8" },
	};
	struct rs_config config;
	char text[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(load_one(cases[i].name, cases[i].value, &config), 0);
		describe(&config, text, sizeof(text));
		if (strcmp(text, cases[i].description))
			fail_msg("%s=%s described as \"%s\", expected \"%s\"", cases[i].name,
				 cases[i].value, text, cases[i].description);
	}
}

static void test_describe_several_settings(void **state)
{
	static const struct variable variables[] = {
		{ "RINGSTEER_LOG", "info" },
		{ "RINGSTEER_BATCH", "4" },
		{ "RINGSTEER_STATS_KEEP", "1" },
	};
	static const struct variable everything[] = {
		{ "RINGSTEER_LOG", "debug" },        { "RINGSTEER_CPUS", "0-1023" },
		{ "RINGSTEER_PIN", "1" },            { "RINGSTEER_CLIENT", "1" },
		{ "RINGSTEER_BATCH", "4096" },       { "RINGSTEER_TXQ_BYTES", "1g" },
		{ "RINGSTEER_RING_ENTRIES", "32768" }, { "RINGSTEER_FLUSH_US", "1000000" },
		{ "RINGSTEER_DEFER_TASKRUN", "0" },  { "RINGSTEER_STATS_KEEP", "1" },
		{ "RINGSTEER_STATS_DIR", NULL },     /* filled in below: the longest path */
	};
	static const char *const parts[] = {
		"log=debug", "cpus=1024 listed", "pin=1", "client=1", "batch=4096",
		"txq_bytes=1073741824", "ring_entries=32768", "flush_us=1000000",
		"defer_taskrun=0", "stats_keep=1", "stats_dir=/",
	};
	struct variable all[sizeof(everything) / sizeof(everything[0])];
	char longest[256];
	struct rs_config config;
	char text[512];

	assert_int_equal(load(variables, 3, &config), 0);
	describe(&config, text, sizeof(text));
	assert_string_equal(text, "log=info, batch=4, stats_keep=1");

	/* Every setting changed, with the longest values: the start-up line's
	 * 512-byte buffer holds it all. */
	memset(longest, 'd', sizeof(longest) - 1);
	longest[0] = '/';
	longest[sizeof(longest) - 1] = 0;
	memcpy(all, everything, sizeof(all));
	all[sizeof(all) / sizeof(all[0]) - 1].value = longest;
	assert_int_equal(load(all, sizeof(all) / sizeof(all[0]), &config), 0);
	describe(&config, text, sizeof(text));
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		if (!strstr(text, parts[i]))
			fail_msg("\"%s\" missing from \"%s\"", parts[i], text);
	}
	assert_non_null(strstr(text, longest));
	assert_null(strstr(text, "all defaults"));
}

/* A buffer too small for the description is never overrun. */
static void test_describe_small_buffer(void **state)
{
	struct rs_config config;
	char text[64];

	assert_int_equal(load_one("RINGSTEER_LOG", "debug", &config), 0);
	config.batch = 4;
	for (size_t size = 1; size < 40; size++) {
		memset(text, '#', sizeof(text));
		rs_config_describe(&config, text, size);
		assert_non_null(memchr(text, 0, size));
		for (size_t i = size; i < sizeof(text); i++) {
			if (text[i] != '#')
				fail_msg("size %zu: byte %zu written", size, i);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_without_environment),
		cmocka_unit_test(test_unrelated_variables_ignored),
		cmocka_unit_test(test_booleans_valid),
		cmocka_unit_test(test_log_levels_valid),
		cmocka_unit_test(test_cpus_valid),
		cmocka_unit_test(test_numbers_valid),
		cmocka_unit_test(test_stats_dir_valid),
		cmocka_unit_test(test_every_variable_at_once),
		cmocka_unit_test(test_bad_booleans),
		cmocka_unit_test(test_bad_log_levels),
		cmocka_unit_test(test_bad_cpu_lists),
		cmocka_unit_test(test_bad_numbers),
		cmocka_unit_test(test_bad_stats_dirs),
		cmocka_unit_test(test_mixed_good_and_bad),
		cmocka_unit_test(test_without_report_function),
		cmocka_unit_test(test_describe_defaults),
		cmocka_unit_test(test_describe_single_settings),
		cmocka_unit_test(test_describe_several_settings),
		cmocka_unit_test(test_describe_small_buffer),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
