/* SPDX-License-Identifier: MIT */
/*
 * `ringsteer top` (tools/top.c), called from the tool's main
 * (tools/ringsteer.c).
 */
#ifndef RINGSTEER_TOOL_TOP_H
#define RINGSTEER_TOOL_TOP_H

/* argv[0] is "top".  Returns the exit status. */
int command_top(int argc, char **argv);

#endif
