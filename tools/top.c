// SPDX-License-Identifier: MIT
/*
 * `ringsteer top`: a live view of every process under the shim, per lane,
 * with rates, and of the steering program's slots when it is loaded.
 *
 *   ringsteer top [-b] [-d SECONDS] [-n ITERATIONS] [--all] [--dir DIR]
 *                 [--bpf-dir DIR] [PID...]
 *
 * Rates are differences between two readings of the counters files (see
 * counters.h) over the time between them, so the first frame comes after
 * one interval.  On a terminal each frame redraws the screen with plain
 * ANSI escapes (home, clear to end of line and of screen: no curses, works
 * over SSH), lines cut to the terminal's width; q or Ctrl-C quits and the
 * terminal is left as it was found.  -b (or output that is not a terminal)
 * prints plain frames one after the other, for scripts.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "counters.h"
#include "steer_commands.h"
#include "top.h"

struct top_options {
	bool batch;
	bool all;
	double delay;     /* seconds between frames */
	long iterations;  /* 0: until q */
	const char *dir;
	const char *bpf_dir;
	pid_t *pids;
	int pid_count;
};

/* One reading of every process. */
struct reading {
	struct counters_process *processes;
	int count;
	double time;      /* CLOCK_MONOTONIC, seconds */
};

/* Where a frame goes: on a terminal, lines are cut to its size. */
struct screen {
	bool terminal;
	int columns;
	int rows;
	int lines;        /* lines of this frame so far */
	int hidden;       /* lines that did not fit */
};

static volatile sig_atomic_t stop_requested;

static void request_stop(int signal_number)
{
	(void)signal_number;
	stop_requested = 1;
}

static double monotonic_seconds(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void emit(struct screen *screen, const char *format, ...)
	__attribute__((format(printf, 2, 3)));

static void emit(struct screen *screen, const char *format, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, format);
	vsnprintf(line, sizeof(line), format, ap);
	va_end(ap);
	if (!screen->terminal) {
		printf("%s\n", line);
		return;
	}
	/* The last row stays free: a newline there would scroll the frame. */
	if (screen->lines >= screen->rows - 1) {
		screen->hidden++;
		return;
	}
	if ((int)strlen(line) > screen->columns)
		line[screen->columns] = 0;
	printf("%s\033[K\n", line);
	screen->lines++;
}

/* 1234 -> "1234", 12345 -> "12.3k": k, M, G are powers of 1000. */
static const char *human(double value, char *text, size_t size)
{
	static const char *const units[] = { "", "k", "M", "G", "T" };
	unsigned unit = 0;

	if (value < 0 || !isfinite(value))
		value = 0;
	while (value >= 999.5 && unit + 1 < sizeof(units) / sizeof(units[0])) {
		value /= 1000;
		unit++;
	}
	if (unit == 0)
		snprintf(text, size, "%.0f", value);
	else
		snprintf(text, size, "%.1f%s", value, units[unit]);
	return text;
}

static const struct counters_process *find_process(const struct reading *reading, uint64_t pid)
{
	for (int p = 0; p < reading->count; p++)
		if (reading->processes[p].header.pid == pid)
			return &reading->processes[p];
	return NULL;
}

static bool wanted(const struct top_options *options, uint64_t pid)
{
	if (!options->pid_count)
		return true;
	for (int i = 0; i < options->pid_count; i++)
		if ((uint64_t)options->pids[i] == pid)
			return true;
	return false;
}

static int take_reading(const struct top_options *options, struct reading *reading)
{
	int count = counters_read_dir(options->dir, options->all, &reading->processes);
	int kept = 0;

	if (count < 0)
		return count;
	for (int p = 0; p < count; p++) {
		if (!wanted(options, reading->processes[p].header.pid))
			continue;
		if (kept != p)
			reading->processes[kept] = reading->processes[p];
		kept++;
	}
	reading->count = kept;
	reading->time = monotonic_seconds();
	return 0;
}

static void process_name(uint64_t pid, char *name, size_t size)
{
	char path[64];
	FILE *file;

	snprintf(path, sizeof(path), "/proc/%llu/comm", (unsigned long long)pid);
	file = fopen(path, "re");
	if (!file || !fgets(name, (int)size, file))
		snprintf(name, size, "?");
	if (file)
		fclose(file);
	name[strcspn(name, "\n")] = 0;
}

/* Per second over the interval; a counter that went down (a new process
 * with the same pid) counts from zero. */
static double rate(int64_t now, int64_t before, double seconds)
{
	if (seconds <= 0)
		return 0;
	return (double)(now >= before ? now - before : now) / seconds;
}

static void show_counters_row(struct screen *screen, const char *lane, const char *tid,
			      long long cpu, const struct totals *now, const struct totals *before,
			      double seconds)
{
	char cpu_text[24], accepts[16], in[16], out[16], enters[16], calls[16], kernel[16];

	if (cpu < 0)
		snprintf(cpu_text, sizeof(cpu_text), "-");
	else
		snprintf(cpu_text, sizeof(cpu_text), "%lld", cpu);
	emit(screen, "%5s %8s %4s %6lld %7s %7s %7s %8s %8s %6s %6lld", lane, tid, cpu_text,
	     (long long)now->sockets_open,
	     human(rate(now->accepts, before->accepts, seconds), accepts, sizeof(accepts)),
	     human(rate(now->bytes_received, before->bytes_received, seconds), in, sizeof(in)),
	     human(rate(now->bytes_sent, before->bytes_sent, seconds), out, sizeof(out)),
	     human(rate(now->ring_enters, before->ring_enters, seconds), enters, sizeof(enters)),
	     human(rate(now->calls_answered, before->calls_answered, seconds), calls, sizeof(calls)),
	     human(rate(now->kernel_ops, before->kernel_ops, seconds), kernel, sizeof(kernel)),
	     (long long)now->fallbacks);
}

static void show_process(struct screen *screen, const struct counters_process *process,
			 const struct counters_process *previous, double seconds)
{
	const struct rs_stats_header *header = &process->header;
	struct totals now, before = { 0 };
	char name[64], enters[16], calls[16];

	process_name(header->pid, name, sizeof(name));
	totals_of_process(&now, process);
	if (previous)
		totals_of_process(&before, previous);
	else
		before = now;
	emit(screen, "%s", "");
	emit(screen, "pid %llu %s: %llu lane%s%s%s  %s calls/s answered with %s enters/s",
	     (unsigned long long)header->pid, name, (unsigned long long)header->lanes_used,
	     header->lanes_used == 1 ? "" : "s",
	     header->io_uring_available ? "" : ", io_uring unavailable (kernel path)",
	     process->exited ? ", exited" : "",
	     human(rate(now.calls_answered, before.calls_answered, seconds), calls, sizeof(calls)),
	     human(rate(now.ring_enters, before.ring_enters, seconds), enters, sizeof(enters)));
	emit(screen, "%5s %8s %4s %6s %7s %7s %7s %8s %8s %6s %6s", "LANE", "TID", "CPU", "OPEN",
	     "ACC/s", "IN/s", "OUT/s", "ENTER/s", "CALLS/s", "KERN/s", "FALLBK");
	for (uint64_t lane = 0; lane < header->lanes_used; lane++) {
		struct totals lane_now = { 0 }, lane_before = { 0 };
		char label[24], tid[24];

		totals_add_lane(&lane_now, &header->lanes[lane]);
		if (previous && lane < previous->header.lanes_used)
			totals_add_lane(&lane_before, &previous->header.lanes[lane]);
		else if (!previous)
			lane_before = lane_now;
		snprintf(label, sizeof(label), "%llu", (unsigned long long)lane);
		snprintf(tid, sizeof(tid), "%llu", (unsigned long long)header->lanes[lane].tid);
		show_counters_row(screen, label, tid,
				  (long long)header->lanes[lane].cpu, &lane_now, &lane_before, seconds);
	}
	show_counters_row(screen, "all", "", -1, &now, &before, seconds);
}

static void show_steering(struct screen *screen, const char *dir)
{
	struct steer_maps maps;
	char address[80];
	__u32 id = 0;
	int result, groups = 0;

	result = steer_maps_open(dir, &maps);
	emit(screen, "%s", "");
	if (result == -ENOENT) {
		emit(screen, "steering: not loaded (%s)", dir);
		return;
	}
	if (result < 0) {
		emit(screen, "steering: cannot read %s: %s", dir, strerror(-result));
		return;
	}
	emit(screen, "steering: policy %s, stall %u ms, cap %u per lane, busy weight %u",
	     steer_policy_name(maps.config.policy), maps.config.stall_ms,
	     maps.config.max_conns_per_lane, maps.config.busy_weight);
	emit(screen, "pinned under %s", dir);
	while ((result = steer_next_group(&maps, groups == 0, &id, address, sizeof(address))) > 0) {
		groups++;
		emit(screen, "group %u %s", id, address);
		emit(screen, "%6s %8s %4s %4s %8s %6s %7s %6s %10s", "SLOT", "PID", "LANE", "CORE",
		     "LOAD", "OPEN", "PENDING", "BUSY%", "STEERED");
		for (__u32 slot = 0; slot < RS_STEER_MAX_SLOTS; slot++) {
			struct steer_slot_view view;

			if (steer_read_slot(&maps, id, slot, &view) <= 0)
				continue;
			emit(screen, "%6u %8u %4u %4d %8.2f %6u %7u %6.1f %10llu%s%s", slot,
			     view.lane.owner_pid, view.lane.lane, view.lane.cpu, view.load,
			     view.lane.open, view.member.pending, view.lane.busy / 10.0,
			     (unsigned long long)view.member.steered,
			     view.member.listening && view.lane.alive ? "" : " closed",
			     view.stalled ? " stalled" : "");
		}
	}
	if (!groups)
		emit(screen, "no listener steered yet");
	steer_maps_close(&maps);
}

static void terminal_size(struct screen *screen)
{
	struct winsize size;

	screen->columns = 80;
	screen->rows = 24;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col && size.ws_row) {
		screen->columns = size.ws_col;
		screen->rows = size.ws_row;
	}
	if ((size_t)screen->columns > 511)
		screen->columns = 511;
}

static void show_frame(const struct top_options *options, struct screen *screen,
		       const struct reading *now, const struct reading *before)
{
	double seconds = now->time - before->time;
	char clock[16];
	time_t wall = time(NULL);
	struct tm local;

	localtime_r(&wall, &local);
	strftime(clock, sizeof(clock), "%H:%M:%S", &local);
	screen->lines = 0;
	screen->hidden = 0;
	if (screen->terminal) {
		terminal_size(screen);
		printf("\033[H");
	}
	emit(screen, "ringsteer top  %s  every %.1f s  %d process%s%s", clock, options->delay,
	     now->count, now->count == 1 ? "" : "es", screen->terminal ? "  (q quits)" : "");
	emit(screen, "rates per second over the last %.2f s; k, M, G: powers of 1000", seconds);
	for (int p = 0; p < now->count; p++)
		show_process(screen, &now->processes[p],
			     find_process(before, now->processes[p].header.pid), seconds);
	if (!now->count)
		emit(screen, "no process under the shim publishes counters in %s", options->dir);
	show_steering(screen, options->bpf_dir);
	if (screen->terminal) {
		if (screen->hidden) {
			printf("(%d more lines: a taller terminal shows them)\033[K", screen->hidden);
		}
		printf("\033[J");
	} else {
		printf("\n");
	}
	fflush(stdout);
}

/* Waits up to seconds; true if the user asked to quit. */
static bool wait_or_quit(bool keyboard, double seconds)
{
	double deadline = monotonic_seconds() + seconds;

	while (!stop_requested) {
		double left = deadline - monotonic_seconds();
		struct pollfd input = { .fd = STDIN_FILENO, .events = POLLIN };
		int ready;

		if (left <= 0)
			return false;
		ready = poll(&input, keyboard ? 1 : 0, (int)(left * 1000) + 1);
		if (ready > 0) {
			char key;
			ssize_t got = read(STDIN_FILENO, &key, 1);

			if (got == 1 && (key == 'q' || key == 'Q' || key == 3))
				return true;
			/* No more keys (end of input, a hang-up): just wait. */
			if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN) ||
			    (input.revents & (POLLHUP | POLLERR)))
				keyboard = false;
		}
	}
	return true;
}

static int parse_top_options(struct top_options *options, int argc, char **argv)
{
	const char *bpf_dir = getenv("RINGSTEER_BPF_DIR");

	options->delay = 1.0;
	options->dir = counters_default_dir();
	options->bpf_dir = bpf_dir && *bpf_dir ? bpf_dir : RS_STEER_DEFAULT_DIR;
	options->pids = calloc((size_t)argc, sizeof(pid_t));
	if (!options->pids)
		return -ENOMEM;
	for (int i = 1; i < argc; i++) {
		const char *value = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;

		if (!strcmp(argv[i], "-b") || !strcmp(argv[i], "--batch")) {
			options->batch = true;
		} else if (!strcmp(argv[i], "--all")) {
			options->all = true;
		} else if (!strcmp(argv[i], "-d") && value) {
			options->delay = strtod(value, &end);
			if (*end || end == value || !(options->delay >= 0.1 && options->delay <= 3600)) {
				fprintf(stderr, "ringsteer top: -d wants seconds from 0.1 to 3600, not %s\n", value);
				return -EINVAL;
			}
			i++;
		} else if (!strcmp(argv[i], "-n") && value) {
			options->iterations = strtol(value, &end, 10);
			if (*end || end == value || options->iterations < 1) {
				fprintf(stderr, "ringsteer top: -n wants a positive count, not %s\n", value);
				return -EINVAL;
			}
			i++;
		} else if (!strcmp(argv[i], "--dir") && value) {
			options->dir = argv[++i];
		} else if (!strcmp(argv[i], "--bpf-dir") && value) {
			options->bpf_dir = argv[++i];
		} else {
			long pid = strtol(argv[i], &end, 10);

			if (*end || end == argv[i] || pid <= 0) {
				fprintf(stderr, "ringsteer top: unknown option or process id: %s\n", argv[i]);
				return -EINVAL;
			}
			options->pids[options->pid_count++] = (pid_t)pid;
		}
	}
	return 0;
}

int command_top(int argc, char **argv)
{
	struct top_options options = { 0 };
	struct screen screen = { 0 };
	struct reading before = { 0 }, now = { 0 };
	struct sigaction action = { .sa_handler = request_stop };
	struct termios saved;
	bool keyboard = false;
	int result = 0;

	if (parse_top_options(&options, argc, argv) < 0) {
		free(options.pids);
		return 2;
	}
	screen.terminal = !options.batch && isatty(STDOUT_FILENO);
	/* Keys one at a time, unechoed; signals stay on so that Ctrl-C and a
	 * lost SSH session end us through the handler, which restores. */
	if (screen.terminal && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
		struct termios raw = saved;

		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 1;
		raw.c_cc[VTIME] = 0;
		keyboard = tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0;
	}
	sigemptyset(&action.sa_mask);
	sigaction(SIGINT, &action, NULL);
	sigaction(SIGTERM, &action, NULL);
	sigaction(SIGHUP, &action, NULL);
	if (screen.terminal)
		printf("\033[?25l\033[H\033[2Jringsteer top: first frame in %.1f s (q quits)\n",
		       options.delay);
	fflush(stdout);
	result = take_reading(&options, &before);
	for (long frame = 0; result == 0 && (!options.iterations || frame < options.iterations);
	     frame++) {
		if (wait_or_quit(keyboard, options.delay))
			break;
		result = take_reading(&options, &now);
		if (result < 0)
			break;
		show_frame(&options, &screen, &now, &before);
		free(before.processes);
		before = now;
		now.processes = NULL;
	}
	if (screen.terminal)
		printf("\033[?25h\n");
	fflush(stdout);
	if (keyboard)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	if (result < 0)
		fprintf(stderr, "ringsteer top: cannot read %s: %s\n", options.dir, strerror(-result));
	free(before.processes);
	free(now.processes);
	free(options.pids);
	return result < 0 ? 1 : 0;
}
