# SPDX-License-Identifier: MIT
#
# Builds the preload library, the ringsteer tool, the test programs and the
# benchmark programs.  Quiet unless V=1; SANITIZE=1 builds everything with
# AddressSanitizer and UndefinedBehaviorSanitizer.  `make deps` installs the
# Debian packages the build, the tests and the benchmarks use.

VERSION   := 0.1.0
PREFIX    ?= /usr/local
LIBDIR    ?= $(PREFIX)/lib
BINDIR    ?= $(PREFIX)/bin
MANDIR    ?= $(PREFIX)/share/man
DESTDIR   ?=

CC        ?= cc
CFLAGS    ?= -O2 -g
WARNINGS  := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
             -Wno-unused-parameter
BASEFLAGS := -std=gnu11 -D_GNU_SOURCE -fno-strict-aliasing $(WARNINGS) -MMD -MP \
             -DRINGSTEER_VERSION='"$(VERSION)"'
LDFLAGS   ?=

ifeq ($(SANITIZE),1)
SANFLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# An LD_PRELOAD library built with ASan needs the ASan runtime loaded first.
ASAN_LIB  := $(shell $(CC) -print-file-name=libasan.so)
export RINGSTEER_ASAN_LIB := $(ASAN_LIB)
endif

ifeq ($(V),1)
Q :=
quiet = @true
else
Q := @
quiet = @printf '  %-7s %s\n'
endif

ALL_CFLAGS = $(BASEFLAGS) $(CFLAGS) $(SANFLAGS)

# ---- preload library --------------------------------------------------------
LIB_SRCS := $(sort $(wildcard preload/*.c))
LIB_OBJS := $(LIB_SRCS:.c=.o)
LIB      := preload/libringsteer.so

# ---- tool -------------------------------------------------------------------
TOOL_SRCS := $(sort $(wildcard tools/*.c))
TOOL_OBJS := $(TOOL_SRCS:.c=.o)
TOOL      := tools/ringsteer

# ---- steering program -------------------------------------------------------
# clang for the BPF target; <asm/types.h> lives in the host's multiarch dir.
BPF_CLANG   ?= clang
BPF_CFLAGS  := -target bpf -mcpu=v3 -O2 -g -Wall -Wextra -Werror -MMD -MP \
               -I/usr/include/$(shell $(CC) -dumpmachine)
BPF_SRCS    := $(sort $(wildcard bpf/*.bpf.c))
BPF_OBJS    := $(BPF_SRCS:.c=.o)
BPF_SKELS   := $(BPF_SRCS:.bpf.c=.skel.h)
LIBBPF_LIBS := $(shell pkg-config --libs libbpf 2>/dev/null || echo -lbpf)

# ---- tests and benchmarks ---------------------------------------------------
UNIT_SRCS   := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS   := $(UNIT_SRCS:.c=)
PROG_SRCS   := $(sort $(wildcard tests/servers/*.c tests/clients/*.c tools/bench/*.c))
PROG_BINS   := $(PROG_SRCS:.c=)

# The unit tests link the whole library: the exported wrappers then carry the
# test binary's own calls, exactly as in a preloaded process.
UNIT_LIB_OBJS := $(LIB_OBJS)

DEPS := $(BPF_OBJS:.o=.d) $(LIB_OBJS:.o=.d) $(TOOL_OBJS:.o=.d) $(UNIT_SRCS:.c=.d) $(PROG_SRCS:.c=.d)

.PHONY: all deps test unit integration bench bench-steer demo install uninstall clean
all: $(LIB) $(TOOL) $(BPF_OBJS)

bpf/%.bpf.o: bpf/%.bpf.c
	$(quiet) CLANG $@
	$(Q)$(BPF_CLANG) $(BPF_CFLAGS) -c -o $@ $<

# Generated, never committed: the tool embeds the object through it.
bpf/%.skel.h: bpf/%.bpf.o
	$(quiet) GEN $@
	$(Q)bpftool gen skeleton $< name $(*F)_bpf >$@.tmp && mv $@.tmp $@

preload/%.o: preload/%.c
	$(quiet) CC $@
	$(Q)$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<

preload/libringsteer.map: preload/libringsteer.map.in preload/calls.h
	$(quiet) GEN $@
	$(Q)$(CC) -E -P -x c -Ipreload $< -o $@

$(LIB): $(LIB_OBJS) preload/libringsteer.map
	$(quiet) LD $@
	$(Q)$(CC) $(CFLAGS) $(SANFLAGS) -shared -Wl,-z,defs -Wl,-z,now \
		-Wl,--version-script=preload/libringsteer.map -o $@ $(LIB_OBJS) \
		$(LDFLAGS) -luring -ldl -lpthread

tools/%.o: tools/%.c
	$(quiet) CC $@
	$(Q)$(CC) $(ALL_CFLAGS) -Ipreload -Ibpf -c -o $@ $<

tools/steer.o: $(BPF_SKELS)

$(TOOL): $(TOOL_OBJS)
	$(quiet) LD $@
	$(Q)$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $^ $(LDFLAGS) $(LIBBPF_LIBS)

tests/unit/%: tests/unit/%.c $(UNIT_LIB_OBJS)
	$(quiet) CC $@
	$(Q)$(CC) $(ALL_CFLAGS) -Ipreload -o $@ $< $(UNIT_LIB_OBJS) $(LDFLAGS) -lcmocka -luring -ldl -lpthread

tests/servers/%: tests/servers/%.c
	$(quiet) CC $@
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) -lpthread -lm
tests/clients/%: tests/clients/%.c
	$(quiet) CC $@
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) -lpthread -lm
tools/bench/%: tools/bench/%.c
	$(quiet) CC $@
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) -luring -lpthread -lm

# ---- dependencies -----------------------------------------------------------
# Installed with apt-get, only when missing.
DEB_PACKAGES := gcc make pkg-config liburing-dev libbpf-dev libcmocka-dev clang llvm bpftool \
                jq curl wrk strace linux-perf procps iproute2 \
                nginx-light redis-server redis-tools memcached libmemcached-tools haproxy gunicorn \
                groff-base man-db gnuplot-nox

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "  DEPS    installing:" $$missing; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "  DEPS    all present"; fi

# ---- tests ------------------------------------------------------------------
test: all $(UNIT_BINS) $(PROG_BINS)
	$(Q)SANITIZE=$(SANITIZE) tests/run.sh

# tools/bench/run.sh (blocking and event-loop servers) and, as root, the
# steering benchmark in one run, written up as one report with plots
# (tools/bench/report.sh): bench-results/<date>/report.md, copied to
# bench-results/latest-report.md.  QUICK=1 for the short run; BENCH_OUT=DIR
# writes it all into DIR instead.
bench: all $(PROG_BINS)
	$(Q)tools/bench/report.sh

# Connection steering alone: placement and tail latency (needs root).
bench-steer: all $(PROG_BINS)
	$(Q)tools/bench/steer_bench.sh

# redis-server under the shim with steering, driven by redis-benchmark;
# QUICK=1 (or DEMO_QUICK=1) for a short run.
demo: deps all
	$(Q)DEMO_QUICK=$(or $(QUICK),$(DEMO_QUICK),0) tools/demo.sh

# ---- install ----------------------------------------------------------------
install: all
	$(quiet) INSTALL $(DESTDIR)$(PREFIX)
	$(Q)install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(BINDIR)
	$(Q)install -m 0755 $(LIB) $(DESTDIR)$(LIBDIR)/libringsteer.so
	$(Q)install -m 0755 $(TOOL) $(DESTDIR)$(BINDIR)/ringsteer
	$(Q)install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7
	$(Q)install -m 0644 tools/man/ringsteer.1 $(DESTDIR)$(MANDIR)/man1/ringsteer.1
	$(Q)install -m 0644 tools/man/ringsteer.7 $(DESTDIR)$(MANDIR)/man7/ringsteer.7

uninstall:
	$(Q)rm -f $(DESTDIR)$(LIBDIR)/libringsteer.so $(DESTDIR)$(BINDIR)/ringsteer \
		$(DESTDIR)$(MANDIR)/man1/ringsteer.1 $(DESTDIR)$(MANDIR)/man7/ringsteer.7

clean:
	$(quiet) CLEAN .
	$(Q)rm -f $(LIB) preload/libringsteer.map $(LIB_OBJS) $(TOOL) $(TOOL_OBJS) \
		$(BPF_OBJS) $(BPF_SKELS) $(UNIT_BINS) $(PROG_BINS) $(DEPS)

-include $(DEPS)
