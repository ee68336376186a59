#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Runs the test suite: every unit test executable tests/unit/test_* (cmocka
# prints its own lines) and every tests/integration/*.sh, each with a time
# limit of 300 s.  Prints one line per test, `PASS name (Ns)`, `FAIL name`
# followed by the end of its log, or `SKIP name: reason`, then a closing
# line `N passed, N failed, N skipped`; exits non-zero if any test failed
# (or none ran).  Full logs are kept in tests/logs/.
#
#   tests/run.sh [PATTERN...]   run only tests whose name contains a PATTERN
#
# Expects everything built (`make test` builds, then runs this).

set -u

REPO=$(cd "$(dirname "$0")/.." && pwd)
LOGS=$REPO/tests/logs
TIME_LIMIT=300
passed=0
failed=0
skipped=0

mkdir -p "$LOGS"
cd "$REPO" || exit 1

selected() {
	local name=$1 pattern
	[ ${#PATTERNS[@]} -eq 0 ] && return 0
	for pattern in "${PATTERNS[@]}"; do
		case $name in *"$pattern"*) return 0 ;; esac
	done
	return 1
}
PATTERNS=("$@")

# run_test NAME SHOW_OUTPUT COMMAND...: one test, one result line.
run_test() {
	local name=$1 show=$2 log start status elapsed reason
	shift 2
	log=$LOGS/$name.log
	start=$(date +%s)
	if [ "$show" = 1 ]; then
		timeout -k 10 $TIME_LIMIT "$@" 2>&1 | tee "$log"
		status=${PIPESTATUS[0]}
	else
		timeout -k 10 $TIME_LIMIT "$@" >"$log" 2>&1
		status=$?
	fi
	elapsed=$(($(date +%s) - start))
	case $status in
	0)
		echo "PASS $name (${elapsed}s)"
		passed=$((passed + 1))
		;;
	77)
		reason=$(sed -n 's/^SKIP: //p' "$log" | tail -n 1)
		echo "SKIP $name: ${reason:-no reason given}"
		skipped=$((skipped + 1))
		;;
	*)
		if [ $status = 124 ] || [ $status = 137 ]; then
			echo "FAIL $name (timed out after ${TIME_LIMIT}s)"
		else
			echo "FAIL $name (exit status $status, ${elapsed}s)"
		fi
		if [ "$show" != 1 ]; then
			tail -n 25 "$log" | sed 's/^/    /'
		fi
		echo "    (full log: tests/logs/$name.log)"
		failed=$((failed + 1))
		;;
	esac
}

for unit in tests/unit/test_*; do
	[ -f "$unit" ] && [ -x "$unit" ] || continue
	case $unit in *.c | *.d | *.o) continue ;; esac
	name=unit/$(basename "$unit")
	selected "$name" || continue
	mkdir -p "$LOGS/unit"
	run_test "$name" 1 "$unit"
done

for script in tests/integration/*.sh; do
	[ -f "$script" ] || continue
	name=integration/$(basename "$script" .sh)
	selected "$name" || continue
	mkdir -p "$LOGS/integration"
	run_test "$name" 0 bash "$script"
done

if [ $((passed + failed + skipped)) -eq 0 ]; then
	echo "no tests found"
	failed=1
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
