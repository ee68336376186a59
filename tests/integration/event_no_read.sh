#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Peers that send a lot and never read, against the event-loop server in
# each style.  The server keeps at most one read's worth of unsent reply
# per connection and stops reading from a connection whose reply is stuck,
# waiting for writability: its resident memory may grow by at most 64 MiB
# while four such peers hold their connections, it must not spin (under a
# second of CPU over two seconds: a socket reported writable while it is
# not would make it spin), and other clients must be served meanwhile.
# After the peers leave, new clients are served correctly, every
# connection is let go and the shim must have carried the traffic.
. "$(dirname "$0")/../lib.sh"

RSS_GROWTH_LIMIT_KIB=$((64 * 1024))

for mode in epoll-lt epoll-et epoll-oneshot poll select; do
	start_server event_echo -e "$mode"
	settle_socket_baseline
	base_rss=$(rss_kib "$SERVER_PID")
	"$CLIENTS/echo_verify" -p "$PORT" -c 4 -n 64M --no-read --hold 5 -s 140 \
		>"$TEST_TMP/$mode-no-read.out" 2>&1 &
	client=$!
	BACKGROUND_PIDS+=("$client")
	tries=0
	until grep -q '^holding ' "$TEST_TMP/$mode-no-read.out"; do
		process_alive "$client" ||
			fail "$mode: the no-read client ended early: $(cat "$TEST_TMP/$mode-no-read.out")"
		[ $tries -ge 300 ] && fail "$mode: the no-read client did not stall within 30 s"
		sleep 0.1
		tries=$((tries + 1))
	done
	note "$mode: no-read client $(grep '^holding ' "$TEST_TMP/$mode-no-read.out")"
	# Other connections are served while the stuck ones are held.
	CLIENT_BYTES=0
	run_client "$mode-meanwhile" echo_verify -p "$PORT" -c 10 -n 256K --vary -s 141
	add_client_bytes "$mode-meanwhile"

	cpu_before=$(cpu_ticks "$SERVER_PID")
	max_rss=$base_rss
	for sample in 1 2 3 4; do
		sleep 0.5
		rss=$(rss_kib "$SERVER_PID")
		[ -n "$rss" ] || fail "$mode: server gone while the peers held their connections"
		[ "$rss" -gt "$max_rss" ] && max_rss=$rss
	done
	cpu_after=$(cpu_ticks "$SERVER_PID")
	note "$mode: server RSS idle ${base_rss} KiB, at most ${max_rss} KiB while the peers held; CPU $((cpu_after - cpu_before)) ticks in 2 s"
	[ $((max_rss - base_rss)) -le $RSS_GROWTH_LIMIT_KIB ] ||
		fail "$mode: server memory grew by $((max_rss - base_rss)) KiB while its peers did not read (limit $RSS_GROWTH_LIMIT_KIB KiB)"
	[ $((cpu_after - cpu_before)) -lt "$(getconf CLK_TCK)" ] ||
		fail "$mode: the server used $((cpu_after - cpu_before)) ticks of CPU in 2 s with only stuck connections"

	wait "$client" || fail "$mode: the no-read client failed: $(cat "$TEST_TMP/$mode-no-read.out")"
	run_client "$mode-after" echo_verify -p "$PORT" -c 10 -n 1M -s 142
	add_client_bytes "$mode-after"
	wait_for_sockets "$SERVER_PID" "$BASE_SOCKETS"
	assert_carried "$SERVER_PID" "$CLIENT_BYTES"
	stop_event_server 1
done
