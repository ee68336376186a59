// SPDX-License-Identifier: MIT
/*
 * `ringsteer load`, `unload` and `status`: the steering program's loader.
 *
 * load opens the program (a skeleton generated from bpf/steer.bpf.c),
 * pins its maps and both programs under one bpffs directory (default
 * /sys/fs/bpf/ringsteer, mode 0700: only root reaches the objects), and
 * writes the configuration; it takes root, and refuses before creating
 * anything otherwise.  Done again, it only rewrites the
 * configuration: the maps keep their state and the listeners already
 * steered keep their program.  The shim finds everything by those pinned
 * names (bpf/steer.h).  unload removes the pins; groups that still have
 * the program attached keep it until their listeners close.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "steer_commands.h"
#include "steer.skel.h"
#include "../bpf/steer.h"

#define BPFFS_ROOT "/sys/fs/bpf"

static const char *const policy_names[RS_STEER_POLICY_COUNT] = {
	[RS_STEER_LEAST_LOADED] = "least-loaded",
	[RS_STEER_P2C] = "p2c",
	[RS_STEER_ROUND_ROBIN] = "round-robin",
	[RS_STEER_HASH] = "hash",
};

static const char *const pinned_maps[] = {
	RS_STEER_PIN_LISTENERS, RS_STEER_PIN_SLOTS, RS_STEER_PIN_MEMBERS,
	RS_STEER_PIN_GROUPS, RS_STEER_PIN_GROUP_IDS, RS_STEER_PIN_CONFIG,
	RS_STEER_PIN_STATE,
};

struct steer_options {
	const char *dir;
	struct rs_steer_config config;
	bool policy_given;
	bool json;
};

static int parse_policy(const char *name, __u32 *policy)
{
	for (__u32 i = 0; i < RS_STEER_POLICY_COUNT; i++) {
		if (!strcmp(name, policy_names[i])) {
			*policy = i;
			return 0;
		}
	}
	fprintf(stderr, "ringsteer: unknown policy %s (least-loaded, p2c, round-robin, hash)\n", name);
	return -EINVAL;
}

static int parse_number(const char *what, const char *text, __u32 *value)
{
	char *end;
	unsigned long number;

	errno = 0;
	number = strtoul(text, &end, 10);
	if (errno || end == text || *end || number > 100000000ul || text[0] == '-') {
		fprintf(stderr, "ringsteer: %s wants a number from 0 to 100000000, not %s\n", what, text);
		return -EINVAL;
	}
	*value = (__u32)number;
	return 0;
}

static int parse_environment_number(const char *name, __u32 *value)
{
	const char *text = getenv(name);

	if (!text || !*text)
		return 0;
	return parse_number(name, text, value);
}

static int default_options(struct steer_options *options)
{
	const char *dir = getenv("RINGSTEER_BPF_DIR");

	memset(options, 0, sizeof(*options));
	options->dir = dir && *dir ? dir : RS_STEER_DEFAULT_DIR;
	options->config.policy = RS_STEER_LEAST_LOADED;
	options->config.stall_ms = RS_STEER_DEFAULT_STALL_MS;
	options->config.busy_weight = RS_STEER_DEFAULT_BUSY_WEIGHT;
	if (parse_environment_number("RINGSTEER_STALL_MS", &options->config.stall_ms) < 0 ||
	    parse_environment_number("RINGSTEER_MAX_CONNS_PER_LANE",
				     &options->config.max_conns_per_lane) < 0)
		return -EINVAL;
	return 0;
}

/* Parses one option at argv[*index]; 1 if it was one of ours, 0 if not,
 * -EINVAL if it was malformed. */
static int parse_option(struct steer_options *options, int argc, char **argv, int *index)
{
	const char *option = argv[*index];
	const char *value = *index + 1 < argc ? argv[*index + 1] : NULL;
	int result = 0;

	if (!strcmp(option, "--json")) {
		options->json = true;
		return 1;
	}
	if (strcmp(option, "--policy") && strcmp(option, "--stall-ms") &&
	    strcmp(option, "--max-conns-per-lane") && strcmp(option, "--busy-weight") &&
	    strcmp(option, "--dir"))
		return 0;
	if (!value) {
		fprintf(stderr, "ringsteer: %s wants a value\n", option);
		return -EINVAL;
	}
	if (!strcmp(option, "--policy")) {
		result = parse_policy(value, &options->config.policy);
		options->policy_given = true;
	} else if (!strcmp(option, "--stall-ms")) {
		result = parse_number(option, value, &options->config.stall_ms);
	} else if (!strcmp(option, "--max-conns-per-lane")) {
		result = parse_number(option, value, &options->config.max_conns_per_lane);
	} else if (!strcmp(option, "--busy-weight")) {
		result = parse_number(option, value, &options->config.busy_weight);
	} else {
		options->dir = value;
	}
	*index += 1;
	return result < 0 ? result : 1;
}

static void pin_path(char *path, size_t size, const char *dir, const char *name)
{
	snprintf(path, size, "%s/%s", dir, name);
}

static bool on_bpffs(const char *path)
{
	struct statfs info;

	return statfs(path, &info) == 0 && info.f_type == BPF_FS_MAGIC;
}

/* Mounts bpffs on /sys/fs/bpf when the directory is under it and nothing
 * is mounted there yet; creates the directory root-only. */
static int prepare_dir(const char *dir)
{
	char parent[PATH_MAX];
	struct stat info;
	char *slash;

	if (strlen(dir) >= sizeof(parent) - 32 || dir[0] != '/') {
		fprintf(stderr, "ringsteer: the bpf directory must be an absolute path: %s\n", dir);
		return -EINVAL;
	}
	snprintf(parent, sizeof(parent), "%s", dir);
	slash = strrchr(parent, '/');
	if (slash == parent)
		slash[1] = 0;
	else
		*slash = 0;
	if (!strncmp(dir, BPFFS_ROOT "/", strlen(BPFFS_ROOT) + 1) && !on_bpffs(BPFFS_ROOT) &&
	    mount("bpf", BPFFS_ROOT, "bpf", 0, NULL) < 0) {
		fprintf(stderr, "ringsteer: cannot mount bpffs on %s: %s\n", BPFFS_ROOT, strerror(errno));
		return -errno;
	}
	if (!on_bpffs(parent)) {
		fprintf(stderr, "ringsteer: %s is not on a bpf filesystem\n", parent);
		return -ENOTSUP;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "ringsteer: cannot create %s: %s\n", dir, strerror(errno));
		return -errno;
	}
	/* An existing directory must be ours alone: no symlink, root's, 0700. */
	if (lstat(dir, &info) < 0 || !S_ISDIR(info.st_mode) || info.st_uid != 0) {
		fprintf(stderr, "ringsteer: %s is not a directory owned by root\n", dir);
		return -EPERM;
	}
	if ((info.st_mode & 07777) != 0700 && chmod(dir, 0700) < 0) {
		fprintf(stderr, "ringsteer: cannot make %s root-only: %s\n", dir, strerror(errno));
		return -errno;
	}
	return 0;
}

static int write_config(const char *dir, const struct rs_steer_config *config)
{
	char path[PATH_MAX];
	__u32 zero = 0;
	int fd, result = 0;

	pin_path(path, sizeof(path), dir, RS_STEER_PIN_CONFIG);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return -errno;
	if (bpf_map_update_elem(fd, &zero, config, BPF_ANY) < 0)
		result = -errno;
	close(fd);
	return result;
}

static void remove_pins(const char *dir)
{
	char path[PATH_MAX];

	pin_path(path, sizeof(path), dir, RS_STEER_PIN_SELECT);
	unlink(path);
	pin_path(path, sizeof(path), dir, RS_STEER_PIN_MIGRATE);
	unlink(path);
	for (size_t i = 0; i < sizeof(pinned_maps) / sizeof(pinned_maps[0]); i++) {
		pin_path(path, sizeof(path), dir, pinned_maps[i]);
		unlink(path);
	}
}

static bool loaded(const char *dir)
{
	char path[PATH_MAX];

	pin_path(path, sizeof(path), dir, RS_STEER_PIN_SELECT);
	return access(path, F_OK) == 0;
}

static bool migrate_loaded(const char *dir)
{
	char path[PATH_MAX];

	pin_path(path, sizeof(path), dir, RS_STEER_PIN_MIGRATE);
	return access(path, F_OK) == 0;
}

/* `run` says why a load failed in one line of its own: libbpf's lines
 * (a verifier log runs to hundreds) only with RINGSTEER_BPF_DEBUG. */
static bool libbpf_quiet;

static int print_libbpf(enum libbpf_print_level level, const char *format, va_list ap)
{
	if ((level == LIBBPF_DEBUG || libbpf_quiet) && !getenv("RINGSTEER_BPF_DEBUG"))
		return 0;
	return vfprintf(stderr, format, ap);
}

/* Opens and loads the object with its maps pinned by name under dir;
 * without_migrate leaves the migrate program out (a kernel without it). */
static struct steer_bpf *open_and_load(const char *dir, bool without_migrate, int *error)
{
	LIBBPF_OPTS(bpf_object_open_opts, open_options, .pin_root_path = dir);
	struct steer_bpf *skeleton = steer_bpf__open_opts(&open_options);

	if (!skeleton) {
		*error = -errno;
		return NULL;
	}
	if (without_migrate)
		bpf_program__set_autoload(skeleton->progs.rs_migrate, false);
	*error = steer_bpf__load(skeleton);
	if (*error) {
		steer_bpf__destroy(skeleton);
		return NULL;
	}
	return skeleton;
}

static int load_program(const struct steer_options *options)
{
	struct steer_bpf *skeleton;
	char path[PATH_MAX];
	int error;

	libbpf_set_print(print_libbpf);
	skeleton = open_and_load(options->dir, false, &error);
	if (!skeleton) {
		int migrate_error = error;

		remove_pins(options->dir);
		skeleton = open_and_load(options->dir, true, &error);
		if (skeleton)
			fprintf(stderr, "ringsteer: the migrate program does not load (%s); "
				"listeners that close will reset their queued connections\n",
				strerror(-migrate_error));
	}
	if (!skeleton) {
		fprintf(stderr, "ringsteer: cannot load the steering program: %s\n", strerror(-error));
		remove_pins(options->dir);
		return error;
	}
	pin_path(path, sizeof(path), options->dir, RS_STEER_PIN_SELECT);
	error = bpf_program__pin(skeleton->progs.rs_select, path);
	if (!error && bpf_program__fd(skeleton->progs.rs_migrate) >= 0) {
		pin_path(path, sizeof(path), options->dir, RS_STEER_PIN_MIGRATE);
		error = bpf_program__pin(skeleton->progs.rs_migrate, path);
	}
	steer_bpf__destroy(skeleton);
	if (error) {
		fprintf(stderr, "ringsteer: cannot pin the programs under %s: %s\n", options->dir,
			strerror(-error));
		remove_pins(options->dir);
	}
	return error;
}

/* Loads if not loaded yet, then writes the configuration. */
static int load(const struct steer_options *options, bool quiet)
{
	bool already;
	int error;

	if (options->config.policy >= RS_STEER_POLICY_COUNT)
		return -EINVAL;
	/* Checked before anything is created: a directory made by another
	 * user would only make root's load refuse it later. */
	if (geteuid() != 0) {
		fprintf(stderr, "ringsteer: loading the steering program needs root "
			"(its directory and pins under %s are root's alone)\n", options->dir);
		return -EPERM;
	}
	error = prepare_dir(options->dir);
	if (error)
		return error;
	already = loaded(options->dir);
	if (!already) {
		error = load_program(options);
		if (error)
			return error;
	}
	error = write_config(options->dir, &options->config);
	if (error) {
		fprintf(stderr, "ringsteer: cannot write the configuration under %s: %s\n",
			options->dir, strerror(-error));
		return error;
	}
	if (!quiet)
		printf("ringsteer: %s %s: policy %s, stall %u ms, max %u connections per lane%s\n",
		       already ? "updated" : "loaded", options->dir,
		       policy_names[options->config.policy], options->config.stall_ms,
		       options->config.max_conns_per_lane,
		       options->config.max_conns_per_lane ? "" : " (no cap)");
	return 0;
}

static int unload(const struct steer_options *options)
{
	if (!loaded(options->dir) && access(options->dir, F_OK) < 0) {
		printf("ringsteer: nothing loaded under %s\n", options->dir);
		return 0;
	}
	remove_pins(options->dir);
	if (rmdir(options->dir) < 0 && errno != ENOENT) {
		fprintf(stderr, "ringsteer: cannot remove %s: %s\n", options->dir, strerror(errno));
		return -errno;
	}
	printf("ringsteer: unloaded %s\n", options->dir);
	return 0;
}

/* ---- reading the pinned maps (status, top) -------------------------------- */

static int open_pinned(const char *dir, const char *name)
{
	char path[PATH_MAX];

	pin_path(path, sizeof(path), dir, name);
	return bpf_obj_get(path);
}

void steer_maps_close(struct steer_maps *maps)
{
	int *fds[] = { &maps->config_fd, &maps->slots_fd, &maps->members_fd, &maps->group_ids_fd };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

int steer_maps_open(const char *dir, struct steer_maps *maps)
{
	__u32 zero = 0;

	memset(maps, 0, sizeof(*maps));
	maps->config_fd = open_pinned(dir, RS_STEER_PIN_CONFIG);
	maps->slots_fd = open_pinned(dir, RS_STEER_PIN_SLOTS);
	maps->members_fd = open_pinned(dir, RS_STEER_PIN_MEMBERS);
	maps->group_ids_fd = open_pinned(dir, RS_STEER_PIN_GROUP_IDS);
	if (maps->config_fd < 0 || maps->slots_fd < 0 || maps->members_fd < 0 ||
	    maps->group_ids_fd < 0 || bpf_map_lookup_elem(maps->config_fd, &zero, &maps->config) < 0) {
		int error = -errno;

		steer_maps_close(maps);
		return error;
	}
	maps->migrate = migrate_loaded(dir);
	return 0;
}

const char *steer_policy_name(__u32 policy)
{
	return policy < RS_STEER_POLICY_COUNT ? policy_names[policy] : "?";
}

static void format_address(const struct rs_steer_group_key *key, char *text, size_t size)
{
	if (key->family == AF_INET6) {
		char address[INET6_ADDRSTRLEN];

		inet_ntop(AF_INET6, key->address, address, sizeof(address));
		snprintf(text, size, "[%s]:%u", address, key->port);
	} else {
		char address[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, key->address, address, sizeof(address));
		snprintf(text, size, "%s:%u", address, key->port);
	}
}

int steer_next_group(const struct steer_maps *maps, bool first, __u32 *id, char *address,
		     size_t size)
{
	struct rs_steer_group group;

	for (;;) {
		__u32 previous = *id;

		if (bpf_map_get_next_key(maps->group_ids_fd, first ? NULL : &previous, id) < 0)
			return errno == ENOENT ? 0 : -errno;
		first = false;
		if (bpf_map_lookup_elem(maps->group_ids_fd, id, &group) == 0 &&
		    *id < RS_STEER_MAX_GROUPS)
			break;
	}
	format_address(&group.key, address, size);
	return 1;
}

static __u64 monotonic_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (__u64)now.tv_sec * 1000000000ull + (__u64)now.tv_nsec;
}

int steer_read_slot(const struct steer_maps *maps, __u32 group, __u32 slot,
		    struct steer_slot_view *view)
{
	__u32 index = group * RS_STEER_MAX_SLOTS + slot;
	__u64 now = monotonic_ns();
	__u64 load;

	if (bpf_map_lookup_elem(maps->members_fd, &index, &view->member) < 0 ||
	    bpf_map_lookup_elem(maps->slots_fd, &slot, &view->lane) < 0)
		return -errno;
	if (!view->member.listening && !view->member.steered)
		return 0;
	load = 1000ull * (view->lane.open + view->member.pending) +
	       (__u64)maps->config.busy_weight * view->lane.busy;
	if (view->lane.heartbeat_ns != ~0ull && now > view->lane.heartbeat_ns) {
		__u64 running_us = (now - view->lane.heartbeat_ns) / 1000;

		load += running_us < RS_STEER_RUNNING_LOAD_MAX ? running_us : RS_STEER_RUNNING_LOAD_MAX;
	}
	view->load = (double)load / 1000.0;
	view->stalled = maps->config.stall_ms && view->lane.alive && now > view->lane.heartbeat_ns &&
			now - view->lane.heartbeat_ns > (__u64)maps->config.stall_ms * 1000000ull;
	return 1;
}

/* ---- status -------------------------------------------------------------- */

static int show_group(const struct steer_maps *maps, __u32 id, const char *address, bool json,
		      bool first_group)
{
	int shown = 0;

	if (json)
		printf("%s{\"group\":%u,\"address\":\"%s\",\"slots\":[", first_group ? "" : ",", id,
		       address);
	for (__u32 slot = 0; slot < RS_STEER_MAX_SLOTS; slot++) {
		struct steer_slot_view view;
		int result = steer_read_slot(maps, id, slot, &view);

		if (result < 0)
			return result;
		if (!result)
			continue;
		if (json)
			printf("%s{\"slot\":%u,\"pid\":%u,\"lane\":%u,\"core\":%d,\"alive\":%s,"
			       "\"listening\":%s,\"stalled\":%s,\"load\":%.3f,\"open\":%u,\"pending\":%u,"
			       "\"busy\":%u,\"steered\":%llu}",
			       shown ? "," : "", slot, view.lane.owner_pid, view.lane.lane, view.lane.cpu,
			       view.lane.alive ? "true" : "false",
			       view.member.listening ? "true" : "false", view.stalled ? "true" : "false",
			       view.load, view.lane.open, view.member.pending, view.lane.busy,
			       (unsigned long long)view.member.steered);
		else
			printf("%-5u %-24s %4u %8u %4u %4d %9.3f %7u %7u %10llu%s%s\n", id, address, slot,
			       view.lane.owner_pid, view.lane.lane, view.lane.cpu, view.load,
			       view.lane.open, view.member.pending,
			       (unsigned long long)view.member.steered,
			       view.member.listening && view.lane.alive ? "" : "  (closed)",
			       view.stalled ? "  (stalled)" : "");
		shown++;
	}
	if (json)
		printf("]}");
	return 0;
}

static int status(const struct steer_options *options)
{
	struct steer_maps maps;
	const struct rs_steer_config *config = &maps.config;
	char address[80];
	__u32 id = 0;
	int result, groups = 0;

	result = steer_maps_open(options->dir, &maps);
	if (result < 0) {
		fprintf(stderr, "ringsteer: steering is not loaded under %s (%s): ringsteer load\n",
			options->dir, strerror(-result));
		return result;
	}
	if (options->json)
		printf("{\"dir\":\"%s\",\"policy\":\"%s\",\"stall_ms\":%u,\"max_conns_per_lane\":%u,"
		       "\"busy_weight\":%u,\"migrate\":%s,\"groups\":[",
		       options->dir, steer_policy_name(config->policy), config->stall_ms,
		       config->max_conns_per_lane, config->busy_weight, maps.migrate ? "true" : "false");
	else
		printf("policy %s, stall %u ms, max %u connections per lane, busy weight %u\n"
		       "%-5s %-24s %4s %8s %4s %4s %9s %7s %7s %10s\n",
		       steer_policy_name(config->policy), config->stall_ms,
		       config->max_conns_per_lane, config->busy_weight, "GROUP", "ADDRESS", "SLOT",
		       "PID", "LANE", "CORE", "LOAD", "OPEN", "PENDING", "STEERED");
	while ((result = steer_next_group(&maps, groups == 0, &id, address, sizeof(address))) > 0) {
		result = show_group(&maps, id, address, options->json, groups == 0);
		if (result)
			break;
		groups++;
	}
	if (options->json)
		printf("]}\n");
	steer_maps_close(&maps);
	return result;
}

/* ---- entry points --------------------------------------------------------- */

int steer_command(int argc, char **argv)
{
	struct steer_options options;
	int result;

	if (default_options(&options) < 0)
		return 2;
	for (int i = 1; i < argc; i++) {
		result = parse_option(&options, argc, argv, &i);
		if (result < 0)
			return 2;
		if (result == 0 || (options.json && strcmp(argv[0], "status"))) {
			fprintf(stderr, "ringsteer %s: unknown option %s\n", argv[0], argv[i]);
			return 2;
		}
	}
	if (!strcmp(argv[0], "load"))
		result = load(&options, false);
	else if (!strcmp(argv[0], "unload"))
		result = unload(&options);
	else
		result = status(&options);
	return result ? 1 : 0;
}

int steer_run_options(int argc, char **argv)
{
	struct steer_options options;
	bool dir_given = false;
	int i, result;

	if (default_options(&options) < 0)
		return -2;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			break;
		result = parse_option(&options, argc, argv, &i);
		if (result < 0)
			return -2;
		if (result == 0)
			break;
		if (!strcmp(argv[i - 1], "--dir"))
			dir_given = true;
	}
	if (dir_given)
		setenv("RINGSTEER_BPF_DIR", options.dir, 1);
	if (!options.policy_given)
		return i - 1;
	/* Steering was asked for: without the program the lanes still get
	 * listeners of their own (RINGSTEER_STEER=1, unless set), and the
	 * shim's one warning line at the server's first listen says how it
	 * runs.  Another user cannot load, so it does not try. */
	if (geteuid() == 0) {
		libbpf_quiet = true;
		if (load(&options, true) == 0)
			return i - 1;
	}
	setenv("RINGSTEER_STEER", "1", 0);
	return i - 1;
}
