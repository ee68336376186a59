/* SPDX-License-Identifier: MIT */
/*
 * The steering commands of the ringsteer tool (tools/steer.c), called from
 * its main (tools/ringsteer.c).
 */
#ifndef RINGSTEER_TOOL_STEER_H
#define RINGSTEER_TOOL_STEER_H

/* `ringsteer load|unload|status ...`: argv[0] is the command name.
 * Returns the exit status. */
int steer_command(int argc, char **argv);

/* Consumes the steering options at the front of `ringsteer run`'s
 * arguments (argv[0] is "run"): --policy P (loads the program if needed,
 * sets the policy), --stall-ms N, --max-conns-per-lane N, --dir D (also
 * passed to the command as RINGSTEER_BPF_DIR).  Returns how many
 * arguments it consumed, or minus an exit status. */
int steer_run_options(int argc, char **argv);

#define STEER_USAGE \
	"       ringsteer load [--policy P] [--stall-ms N] [--max-conns-per-lane N]\n" \
	"                      [--busy-weight N] [--dir DIR]\n" \
	"       ringsteer unload [--dir DIR]\n" \
	"       ringsteer status [--json] [--dir DIR]\n"

#endif
