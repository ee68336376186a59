/* SPDX-License-Identifier: MIT */
/*
 * The steering commands of the ringsteer tool (tools/steer.c), called from
 * its main (tools/ringsteer.c), and the reading of the pinned maps they
 * share with `ringsteer top` (tools/top.c).
 */
#ifndef RINGSTEER_TOOL_STEER_H
#define RINGSTEER_TOOL_STEER_H

#include <stdbool.h>
#include <stddef.h>

#include "steer.h"

/* `ringsteer load|unload|status ...`: argv[0] is the command name.
 * Returns the exit status. */
int steer_command(int argc, char **argv);

/* Consumes the steering options at the front of `ringsteer run`'s
 * arguments (argv[0] is "run"): --policy P (as root, loads the program if
 * needed and sets the policy; as another user, only asks the shim for
 * steering with RINGSTEER_STEER=1), --stall-ms N, --max-conns-per-lane N, --dir D (also
 * passed to the command as RINGSTEER_BPF_DIR).  Returns how many
 * arguments it consumed, or minus an exit status. */
int steer_run_options(int argc, char **argv);

/* The pinned maps status and top read, and the configuration. */
struct steer_maps {
	int config_fd, slots_fd, members_fd, group_ids_fd;
	struct rs_steer_config config;
	bool migrate; /* the migrate program is pinned too */
};

/* One lane's listener in one group, as status shows it. */
struct steer_slot_view {
	struct rs_steer_slot lane;
	struct rs_steer_member member;
	double load;  /* in connections: (1000 * (open + pending) + busy_weight * busy) / 1000 */
	bool stalled; /* alive, heartbeat older than the stall time */
};

/* Opens the maps pinned under dir; -errno if steering is not loaded there. */
int steer_maps_open(const char *dir, struct steer_maps *maps);
void steer_maps_close(struct steer_maps *maps);
/* The next group in use after *id (the first with first set): 1 with *id
 * and its address ("127.0.0.1:80", "[::1]:80") filled, 0 after the last,
 * or -errno. */
int steer_next_group(const struct steer_maps *maps, bool first, __u32 *id, char *address,
		     size_t size);
/* Slot `slot` of group `group`: 1 if it has (or had) a listener there, 0
 * if unused, or -errno. */
int steer_read_slot(const struct steer_maps *maps, __u32 group, __u32 slot,
		    struct steer_slot_view *view);
const char *steer_policy_name(__u32 policy);

#define STEER_USAGE \
	"       ringsteer load [--policy P] [--stall-ms N] [--max-conns-per-lane N]\n" \
	"                      [--busy-weight N] [--dir DIR]\n" \
	"       ringsteer unload [--dir DIR]\n" \
	"       ringsteer status [--json] [--dir DIR]\n"

#endif
