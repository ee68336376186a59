#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A signal arrives while the server's only thread is blocked in a receive.
# Without SA_RESTART the receive must fail with EINTR (the server reports
# "EINTR" to the client); with SA_RESTART it must go on transparently and
# return the data sent later.  Either way nothing may be lost and the
# interrupted call must leave nothing in flight that later writes into its
# buffer (the server reports "STALE").  Each call family is exercised (one
# connection per family), and the transcript under the shim must equal the
# one on the plain kernel, which is itself checked against the expected
# behaviour.
. "$(dirname "$0")/../lib.sh"

FAMILIES=6
ROUNDS=2

# transcript LABEL: runs one client connection per call family against the
# current server, collecting the rounds in $TEST_TMP/LABEL.transcript.
transcript() {
	local label=$1 family
	: >"$TEST_TMP/$label.transcript"
	for family in $(seq 1 $FAMILIES); do
		run_client "$label-$family" sigread_client -p "$PORT" -k "$SERVER_PID" -r $ROUNDS
		sed "s/^/family $family: /" "$TEST_TMP/$label-$family.out" >>"$TEST_TMP/$label.transcript"
	done
}

# The server prints `signals N` whenever its handler count changed.
check_signal_count() {
	local last
	last=$(tail -n 1 "$SERVER_OUT")
	[ "$last" = "signals $((FAMILIES * ROUNDS))" ] ||
		fail "$1: the server handled '$last' signals, expected $((FAMILIES * ROUNDS))"
}

for restart in no yes; do
	arguments=()
	[ $restart = yes ] && arguments=(-r)

	start_server --plain sigread "${arguments[@]}"
	transcript "plain-restart-$restart"
	check_signal_count "plain kernel, SA_RESTART $restart"
	stop_server

	expected=$TEST_TMP/expected-restart-$restart
	: >"$expected"
	for family in $(seq 1 $FAMILIES); do
		for round in $(seq 1 $ROUNDS); do
			if [ $restart = yes ]; then
				echo "family $family: round $round: after-$round"
			else
				echo "family $family: round $round: EINTR after-$round"
			fi
		done >>"$expected"
	done
	diff -u "$expected" "$TEST_TMP/plain-restart-$restart.transcript" ||
		fail "on the plain kernel the transcript (SA_RESTART $restart) is not the expected one"

	start_server sigread "${arguments[@]}"
	transcript "shim-restart-$restart"
	check_signal_count "under the shim, SA_RESTART $restart"
	assert_carried "$SERVER_PID"
	stop_server
	diff -u "$TEST_TMP/plain-restart-$restart.transcript" "$TEST_TMP/shim-restart-$restart.transcript" ||
		fail "under the shim the transcript (SA_RESTART $restart) differs from the plain kernel's"
	note "SA_RESTART $restart: transcripts match ($(wc -l <"$expected") rounds)"
done
