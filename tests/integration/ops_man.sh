#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The man pages: ringsteer(1) and ringsteer(7) format with no warning from
# groff (-ww) or man; ringsteer(1) covers every command the tool's usage
# lists and every exit status; ringsteer(7) names every RINGSTEER_*
# variable of the README's tables with the same default; and `make
# install DESTDIR=...` puts both under share/man (mode 0644, not writable
# by others) next to the library and the tool.
#
# No traffic, so nothing for the shim to carry: assert_carried does not
# apply here.
. "$(dirname "$0")/../lib.sh"

MAN1=$REPO/tools/man/ringsteer.1
MAN7=$REPO/tools/man/ringsteer.7
need_program "$TOOL"
command -v groff >/dev/null || fail "groff is missing: make deps installs groff-base"
command -v man >/dev/null || fail "man is missing: make deps installs man-db"

for page in "$MAN1" "$MAN7"; do
	warnings=$(groff -man -Tutf8 -ww "$page" 2>&1 >/dev/null)
	[ -z "$warnings" ] || fail "groff warns about $(basename "$page"): $warnings"
	warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >"$TEST_TMP/$(basename "$page").txt")
	[ -z "$warnings" ] || fail "man warns about $(basename "$page"): $warnings"
	[ "$(wc -l <"$TEST_TMP/$(basename "$page").txt")" -gt 50 ] || fail "$(basename "$page") renders almost empty"
done
text1=$TEST_TMP/ringsteer.1.txt
text7=$TEST_TMP/ringsteer.7.txt

# Every command of the usage has a section in ringsteer(1), and every option the usage shows is described.
commands=$("$TOOL" --help | sed -n 's/^ *\(usage: \)\{0,1\}ringsteer \([a-z][a-z]*\).*/\2/p' | sort -u)
[ -n "$commands" ] || fail "no commands in ringsteer --help"
for command in $commands; do
	grep -Eq "^       $command( |$)" "$text1" || fail "ringsteer(1) has no entry for the $command command"
done
for option in $("$TOOL" --help | grep -o -- '--\?-[a-z][a-z-]*' | sort -u); do
	grep -q -- "$option" "$text1" || fail "ringsteer(1) does not mention $option"
done
for status in 0 1 2 127; do
	grep -Eq "^       $status( |$)" "$text1" || fail "ringsteer(1) does not describe exit status $status"
done
note "ringsteer(1): commands $(echo $commands), their options and exit statuses"

# Every variable of the README's tables, with its default.
count=0
while IFS='|' read -r _ variable default _; do
	variable=$(tr -d ' `' <<<"$variable")
	default=$(sed 's/^ *//; s/ *$//; s/`//g' <<<"$default")
	grep -q "$variable" "$text7" "$text1" || fail "no man page describes $variable"
	case $variable in
	RINGSTEER_STALL_MS | RINGSTEER_MAX_CONNS_PER_LANE) page=$MAN1 ;;
	*) page=$MAN7 ;;
	esac
	case $default in
	all | "cores, at least 4") ;; # described in words
	*)
		grep -A 3 "$variable" "$page" | grep -qF -- "$default" ||
			fail "$(basename "$page") does not give $variable's default $default"
		;;
	esac
	count=$((count + 1))
done < <(grep -E '^\| `RINGSTEER_[A-Z_]*` \|' "$REPO/README.md")
[ $count -ge 15 ] || fail "only $count variables found in the README's tables"
note "ringsteer(7): all $count variables of the README with their defaults"

# make install puts them in place.
destination=$TEST_TMP/install
make -s -C "$REPO" install DESTDIR="$destination" PREFIX=/usr/local >"$TEST_TMP/install.out" 2>&1 ||
	fail "make install failed: $(cat "$TEST_TMP/install.out")"
for installed in share/man/man1/ringsteer.1 share/man/man7/ringsteer.7; do
	[ -f "$destination/usr/local/$installed" ] || fail "make install did not install $installed"
	[ "$(stat -c %a "$destination/usr/local/$installed")" = 644 ] ||
		fail "$installed is mode $(stat -c %a "$destination/usr/local/$installed")"
	cmp -s "$destination/usr/local/$installed" "$REPO/tools/man/$(basename "$installed")" ||
		fail "$installed differs from the source"
done
[ -z "$(find "$destination" -perm -o+w ! -type l)" ] || fail "make install made something world-writable"
MANPATH=$destination/usr/local/share/man man -w 7 ringsteer >/dev/null 2>&1 ||
	fail "man does not find the installed ringsteer(7)"
note "make install: both pages under share/man, mode 0644"
