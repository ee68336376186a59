#!/bin/bash
# SPDX-License-Identifier: MIT
#
# ringsteer load, status, unload and run --policy, under a bpffs directory
# private to this test: load pins both programs and every map in a root-only
# directory (0700, objects 0600, nothing for group or others, another user
# can neither list nor open them); status reports the configuration; a
# second load only changes the configuration (the maps stay the same
# objects); a bad policy changes nothing; run --policy loads if needed and
# hands the directory to the command; unload removes everything.
#
# It runs in a mount namespace of its own with a fresh bpffs on /sys/fs/bpf,
# so that nothing it pins outlives it, even if it is killed.
if [ -z "${RINGSTEER_STEER_TOOL_NAMESPACE:-}" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
	exec env RINGSTEER_STEER_TOOL_NAMESPACE=1 unshare -m --propagation private \
		bash -c 'mount -t bpf -o mode=0700 bpf /sys/fs/bpf && exec bash "$0"' "$0"
fi
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" = 0 ] || skip "loading a BPF program needs root"
need_program "$TOOL"
command -v setpriv >/dev/null || fail "setpriv (util-linux) is missing"

DIR=/sys/fs/bpf/ringsteer-test-tool-$$
trap '"$TOOL" unload --dir "$DIR" >/dev/null 2>&1; cleanup' EXIT

status_field() {
	"$TOOL" status --json --dir "$DIR" | jq -r "$1"
}

output=$("$TOOL" load --dir "$DIR" --policy p2c --stall-ms 700 --max-conns-per-lane 9 2>&1) || {
	echo "$output"
	features=$(bpftool feature probe kernel 2>/dev/null)
	if ! grep -q "program_type sk_reuseport is available" <<<"$features" ||
		! grep -q "map_type reuseport_sockarray is available" <<<"$features"; then
		skip "this kernel lacks sk_reuseport programs or reuseport_sockarray maps (bpftool feature probe)"
	fi
	fail "ringsteer load failed"
}
note "$output"
case $output in *loaded*) ;; *) fail "first load did not say loaded: $output" ;; esac

# ---- permissions ---------------------------------------------------------
[ "$(stat -c '%a %U' "$DIR")" = "700 root" ] || fail "$DIR is $(stat -c '%a %U' "$DIR"), not 700 root"
expected="migrate rs_config rs_group_ids rs_groups rs_listeners rs_members rs_slots rs_state select"
found=$(ls "$DIR" | sort | tr '\n' ' ' | sed 's/ $//')
[ "$found" = "$expected" ] || fail "pinned objects are '$found', expected '$expected'"
for object in "$DIR"/*; do
	mode=$(stat -c '%a %U' "$object")
	case $mode in
	600\ root | 400\ root | 200\ root) ;;
	*) fail "$object is $mode: group or others can reach it" ;;
	esac
done
[ -z "$(find "$DIR" -perm /o+rwx,g+rwx ! -path "$DIR")" ] || fail "something under $DIR is open to group or others"
if setpriv --reuid=65534 --regid=65534 --clear-groups ls "$DIR" >/dev/null 2>&1; then
	fail "an unprivileged user can list $DIR"
fi
if setpriv --reuid=65534 --regid=65534 --clear-groups cat "$DIR/rs_config" >/dev/null 2>&1; then
	fail "an unprivileged user can open $DIR/rs_config"
fi
note "permissions: $DIR 700, objects $(stat -c '%a' "$DIR"/* | sort -u | tr '\n' ' ')"

# ---- status --------------------------------------------------------------
[ "$(status_field .policy)" = p2c ] || fail "status policy is $(status_field .policy), not p2c"
[ "$(status_field .stall_ms)" = 700 ] || fail "status stall_ms is $(status_field .stall_ms), not 700"
[ "$(status_field .max_conns_per_lane)" = 9 ] || fail "status max_conns_per_lane is wrong"
[ "$(status_field .migrate)" = true ] || fail "the migrate program is not loaded"
[ "$(status_field '.groups | length')" = 0 ] || fail "a fresh load already has groups"
"$TOOL" status --dir "$DIR" | head -n 1 | grep -q '^policy p2c, stall 700 ms' ||
	fail "plain status does not start with the policy line: $("$TOOL" status --dir "$DIR" | head -n 1)"

# ---- a second load updates the configuration, keeps the maps ---------------
map_id() {
	bpftool map show pinned "$DIR/$1" 2>/dev/null | sed -n 's/^\([0-9][0-9]*\):.*/\1/p'
}
slots_before=$(map_id rs_slots)
[ -n "$slots_before" ] || fail "bpftool cannot show $DIR/rs_slots"
output=$("$TOOL" load --dir "$DIR" --policy round-robin) || fail "second load failed"
case $output in *updated*) ;; *) fail "second load did not say updated: $output" ;; esac
[ "$(status_field .policy)" = round-robin ] || fail "second load did not change the policy"
[ "$(status_field .max_conns_per_lane)" = 0 ] || fail "second load kept a cap it was not given"
[ "$(map_id rs_slots)" = "$slots_before" ] || fail "second load replaced the maps"

if "$TOOL" load --dir "$DIR" --policy fastest >/dev/null 2>&1; then
	fail "load accepted an unknown policy"
fi
[ "$(status_field .policy)" = round-robin ] || fail "a rejected load changed the policy"

# ---- run --policy ----------------------------------------------------------
"$TOOL" unload --dir "$DIR" >/dev/null || fail "unload failed"
[ ! -e "$DIR" ] || fail "unload left $DIR"
# Under make SANITIZE=1 the ASan runtime must come before the shim.
seen=$(LD_PRELOAD=${RINGSTEER_ASAN_LIB:-} "$TOOL" run --policy hash --dir "$DIR" -- sh -c 'echo "$RINGSTEER_BPF_DIR"')
[ "$seen" = "$DIR" ] || fail "run --dir did not hand RINGSTEER_BPF_DIR to the command (got '$seen')"
[ "$(status_field .policy)" = hash ] || fail "run --policy hash did not load the program with that policy"

# ---- unload ---------------------------------------------------------------
"$TOOL" unload --dir "$DIR" >/dev/null || fail "unload failed"
[ ! -e "$DIR" ] || fail "unload left $DIR"
if "$TOOL" status --dir "$DIR" >/dev/null 2>&1; then
	fail "status succeeded with nothing loaded"
fi
"$TOOL" unload --dir "$DIR" >/dev/null || fail "a second unload failed"
# ---- a machine without bpffs mounted -------------------------------------
# In a private mount namespace (the machine's own mounts are untouched):
# with /sys/fs/bpf unmounted there, load mounts bpffs itself.
command -v unshare >/dev/null || fail "unshare (util-linux) is missing"
mounted=$(unshare -m --propagation private bash -c '
	while umount /sys/fs/bpf 2>/dev/null; do :; done
	[ "$(stat -f -c %T /sys/fs/bpf)" != bpf_fs ] || { echo "still mounted"; exit 0; }
	"$1" load --dir "$2" >/dev/null || { echo "load failed"; exit 0; }
	stat -f -c %T /sys/fs/bpf
	"$1" unload --dir "$2" >/dev/null' bash "$TOOL" "$DIR")
[ "$mounted" = bpf_fs ] || fail "load did not mount bpffs on /sys/fs/bpf where it was missing ($mounted)"

note "load, status, update, run --policy, unload and mounting bpffs behave"
