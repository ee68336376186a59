// SPDX-License-Identifier: MIT
/*
 * epoll, emulated for accelerated sockets and untouched for every other fd.
 *
 * Each epoll set the application creates stays a real kernel epoll fd, and
 * every fd the shim does not carry (listeners, pipes, eventfd, timerfd, unix
 * sockets) is registered in it as usual.  An accelerated socket is not: its
 * bytes are received ahead by the lane (sock.c), so the kernel's readiness
 * would be wrong for it.  The set keeps it in an interest list of its own,
 * and its readiness is the shim's: bytes received ahead, EOF, errors, room
 * in the send queue.  Edge-triggered entries report when a generation
 * counter of the socket moved since the last report, as the kernel reports
 * a wake-up; EPOLLONESHOT disables an entry until EPOLL_CTL_MOD.
 *
 * epoll_wait costs one io_uring_enter: the lane keeps a poll on the kernel
 * epoll fd in its ring, so the enter that submits the queued sends and the
 * receives ahead also waits for the kernel's fds, and the kernel set is read
 * (epoll_wait with a zero timeout) only when that poll has fired.
 *
 * A socket added to a set is received on the lane of the set's waiter,
 * whichever thread adds it, and one added to another thread's set moves
 * there (rs_socket_follow_loop): its completions then wake the loop that
 * waits for them.  A waiter in the kernel's epoll_wait (its set had no
 * socket yet) is woken for a socket added meanwhile by an eventfd in the
 * kernel part, whose event is never passed on.
 *
 * Lock order: lane, then set, then socket.  A set is waited on by one thread
 * at a time in practice (one event loop per thread); another thread waiting
 * on the same set looks again every few milliseconds, since completions of
 * its sockets arrive on the first thread's ring.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ringsteer.h"

/* The kernel's limit on maxevents. */
#define MAX_EVENTS ((int)(INT_MAX / sizeof(struct epoll_event)))
/* The bits EPOLLEXCLUSIVE may come with (fs/eventpoll.c). */
#define EXCLUSIVE_ALLOWED (EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | \
			   EPOLLET | EPOLLEXCLUSIVE)
/* A waiter whose set's completions arrive on another thread's ring looks
 * again this often. */
#define FOREIGN_SLICE_NS 5000000ll

struct entry {
	struct rs_socket *socket;   /* holds a reference */
	int fd;
	uint32_t events;
	epoll_data_t data;
	uint32_t seen_rx;           /* generations at the last report */
	uint32_t seen_tx;
	uint32_t idle_version;      /* the socket's readiness_version when found idle */
	bool idle;                  /* not reported at the last look */
	bool pending;               /* added or modified: report what is ready now */
	bool disabled;              /* EPOLLONESHOT reported */
	bool hinted;                /* its socket sets this set's hint bit */
};

/* An emulated set inside this one (nested epoll): it is also in the kernel
 * set, which sees its kernel part; this reports its accelerated sockets. */
struct nested {
	struct rs_epoll *inner;
	int fd;
	uint32_t events;
	epoll_data_t data;
	bool disabled;              /* EPOLLONESHOT reported */
};

#define NESTED_MAX 8

struct rs_epoll {
	int fd;
	bool dead;                  /* the application closed it */
	pthread_mutex_t lock;       /* guards the entries */
	struct entry *entries;
	unsigned count;
	unsigned capacity;
	struct nested nested[NESTED_MAX];
	unsigned nested_count;
	unsigned next_scan;         /* where the next scan starts, for fairness */
	/* A bit per entry, set when its socket's readiness moved, when it was
	 * added or modified, or when it was level-triggered and ready at the
	 * last look: the wait looks at those entries only.  Sized by the fd
	 * table, so sockets set bits without the set's lock and it never
	 * moves; pages never touched cost nothing. */
	_Atomic uint64_t *hints;
	/* Entries whose socket hints another set (a socket in several sets
	 * hints the first): while there are any, the wait looks at all. */
	unsigned unhinted;
	/* The poll on the kernel part. */
	_Atomic bool kernel_poll_in_flight;
	_Atomic bool kernel_ready;
	struct rs_lane *kernel_poll_lane;
	struct rs_op kernel_poll_op;
	/* The lane that waited on it last: its loop is where the sockets'
	 * receives ahead are armed, whichever thread adds them. */
	_Atomic(struct rs_lane *) waiter_lane;
	/* Threads in a kernel epoll_wait on it (it had no sockets yet), and
	 * the eventfd in its kernel part, made on first need, that wakes
	 * them when another thread adds one; its event never reaches the
	 * application. */
	_Atomic int kernel_waiters;
	int wake_fd;
	struct rs_epoll *next;      /* live list, or free list */
};

static _Atomic(struct rs_epoll *) *set_table;
static int set_table_size;
static pthread_mutex_t sets_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rs_epoll *live_sets;
static struct rs_epoll *free_sets;
/* Closed while their poll was in flight: recycled at its completion. */
static struct rs_epoll *closing_sets;

int rs_epoll_init(void)
{
	void *memory;

	set_table_size = rs_fdtable_size();
	memory = mmap(NULL, (size_t)set_table_size * sizeof(*set_table), PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (memory == MAP_FAILED) {
		set_table_size = 0;
		return -errno;
	}
	set_table = memory;
	rs_scan_for_leaks(memory, (size_t)set_table_size * sizeof(*set_table));
	return 0;
}

static struct rs_epoll *set_lookup(int fd)
{
	if (fd < 0 || fd >= set_table_size)
		return NULL;
	return atomic_load_explicit(&set_table[fd], memory_order_acquire);
}

/* Sets are recycled, never freed: a poll completion may still point to one. */
static struct rs_epoll *set_create(int fd)
{
	struct rs_epoll *set;

	if (fd < 0 || fd >= set_table_size)
		return NULL;
	pthread_mutex_lock(&sets_lock);
	set = free_sets;
	if (set)
		free_sets = set->next;
	pthread_mutex_unlock(&sets_lock);
	if (!set) {
		set = calloc(1, sizeof(*set));
		if (!set)
			return NULL;
		pthread_mutex_init(&set->lock, NULL);
	}
	if (!set->hints) {
		void *memory = mmap(NULL, ((size_t)set_table_size + 63) / 64 * sizeof(uint64_t),
				    PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (memory != MAP_FAILED)
			set->hints = memory;
	} else {
		/* Recycled: bits of the old entries would only cost a look. */
		memset(set->hints, 0, ((size_t)set->capacity + 63) / 64 * sizeof(uint64_t));
	}
	set->unhinted = 0;
	set->fd = fd;
	set->dead = false;
	set->count = 0;
	set->nested_count = 0;
	set->next_scan = 0;
	atomic_store(&set->kernel_poll_in_flight, false);
	/* Unknown until looked at once. */
	atomic_store(&set->kernel_ready, true);
	set->kernel_poll_lane = NULL;
	atomic_store(&set->waiter_lane, NULL);
	atomic_store(&set->kernel_waiters, 0);
	set->wake_fd = -1;
	set->kernel_poll_op.kind = RS_OP_EPOLL;
	set->kernel_poll_op.epoll = set;
	pthread_mutex_lock(&sets_lock);
	set->next = live_sets;
	live_sets = set;
	pthread_mutex_unlock(&sets_lock);
	atomic_store_explicit(&set_table[fd], set, memory_order_release);
	return set;
}

/* An epoll fd the shim did not see created (inherited, or made by a raw
 * system call) is adopted the first time an accelerated socket joins it. */
static struct rs_epoll *set_adopt(int fd)
{
	char path[64], target[64];
	ssize_t length;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	length = readlink(path, target, sizeof(target) - 1);
	if (length <= 0)
		return NULL;
	target[length] = '\0';
	if (strcmp(target, "anon_inode:[eventpoll]"))
		return NULL;
	return set_create(fd);
}

static void hint(struct rs_epoll *set, unsigned index)
{
	if (set->hints)
		rs_epoll_hint_bit(set->hints, index);
}

/* The socket's entry in the set it hints, found without a search, or -1;
 * set locked. */
static int hinted_entry(struct rs_epoll *set, struct rs_socket *socket)
{
	unsigned index;
	bool hinted;

	pthread_mutex_lock(&socket->lock);
	hinted = set->hints && socket->epoll_hints == set->hints;
	index = socket->epoll_hint_index;
	pthread_mutex_unlock(&socket->lock);
	if (!hinted || index >= set->count || set->entries[index].socket != socket)
		return -1;
	return (int)index;
}

/* Set locked. */
static void entry_drop(struct rs_epoll *set, unsigned index)
{
	struct entry *entry = &set->entries[index];
	struct rs_socket *socket = entry->socket;

	pthread_mutex_lock(&socket->lock);
	if (!--socket->epoll_memberships)
		socket->loop_lane = NULL;
	if (entry->hinted)
		socket->epoll_hints = NULL;
	pthread_mutex_unlock(&socket->lock);
	if (!entry->hinted)
		set->unhinted--;
	rs_socket_unref(socket);
	if (index == --set->count)
		return;
	/* The last entry takes the place: its socket hints the new bit. */
	*entry = set->entries[set->count];
	if (entry->hinted) {
		pthread_mutex_lock(&entry->socket->lock);
		entry->socket->epoll_hint_index = index;
		pthread_mutex_unlock(&entry->socket->lock);
	}
	hint(set, index);
}

static void set_recycle(struct rs_epoll *set)
{
	pthread_mutex_lock(&sets_lock);
	set->next = free_sets;
	free_sets = set;
	pthread_mutex_unlock(&sets_lock);
}

void rs_epoll_close(int fd)
{
	struct rs_epoll *set, **link;

	if (fd < 0 || fd >= set_table_size)
		return;
	set = atomic_exchange_explicit(&set_table[fd], NULL, memory_order_acq_rel);
	if (!set)
		return;
	pthread_mutex_lock(&sets_lock);
	for (link = &live_sets; *link; link = &(*link)->next) {
		if (*link == set) {
			*link = set->next;
			break;
		}
	}
	for (struct rs_epoll *outer = live_sets; outer; outer = outer->next) {
		pthread_mutex_lock(&outer->lock);
		for (unsigned i = outer->nested_count; i-- > 0;) {
			if (outer->nested[i].inner == set)
				outer->nested[i] = outer->nested[--outer->nested_count];
		}
		pthread_mutex_unlock(&outer->lock);
	}
	pthread_mutex_unlock(&sets_lock);
	pthread_mutex_lock(&set->lock);
	while (set->count)
		entry_drop(set, set->count - 1);
	set->dead = true;
	if (set->wake_fd >= 0)
		rs_fd_close_private(set->wake_fd);
	set->wake_fd = -1;
	pthread_mutex_unlock(&set->lock);
	/* A poll still in flight holds the epoll file: the set is recycled
	 * when its completion comes (cancelled below if this thread owns it). */
	if (atomic_load(&set->kernel_poll_in_flight)) {
		struct rs_lane *lane = rs_lane_get();

		pthread_mutex_lock(&sets_lock);
		set->next = closing_sets;
		closing_sets = set;
		pthread_mutex_unlock(&sets_lock);

		if (lane && lane == set->kernel_poll_lane) {
			struct io_uring_sqe *sqe;

			rs_lane_enter(lane);
			sqe = rs_lane_sqe(lane);
			/* A cancel, not a poll remove (see disarm in poll.c). */
			io_uring_prep_cancel(sqe, &set->kernel_poll_op, 0);
			io_uring_sqe_set_data(sqe, NULL);
			rs_lane_leave(lane);
		}
		return;
	}
	set_recycle(set);
}

void rs_epoll_kernel_poll_done(struct rs_epoll *set, int result)
{
	(void)result;
	atomic_store(&set->kernel_ready, true);
	atomic_store(&set->kernel_poll_in_flight, false);
	if (set->dead) {
		struct rs_epoll **link;

		pthread_mutex_lock(&sets_lock);
		for (link = &closing_sets; *link; link = &(*link)->next) {
			if (*link == set) {
				*link = set->next;
				break;
			}
		}
		pthread_mutex_unlock(&sets_lock);
		set_recycle(set);
	}
}

/* Takes socket out of every emulated set (its fd is being closed). */
void rs_epoll_forget_socket(struct rs_socket *socket)
{
	_Atomic uint64_t *hints;
	unsigned memberships;

	pthread_mutex_lock(&socket->lock);
	memberships = socket->epoll_memberships;
	hints = socket->epoll_hints;
	pthread_mutex_unlock(&socket->lock);
	if (!memberships)
		return;
	pthread_mutex_lock(&sets_lock);
	if (memberships == 1 && hints) {
		/* In one set, the one it hints: its entry is known, and a
		 * close costs no search of every set's entries. */
		struct rs_epoll *set = live_sets;
		int index = -1;

		while (set && set->hints != hints)
			set = set->next;
		if (set) {
			pthread_mutex_lock(&set->lock);
			index = hinted_entry(set, socket);
			if (index >= 0)
				entry_drop(set, (unsigned)index);
			pthread_mutex_unlock(&set->lock);
		}
		if (index >= 0) {
			pthread_mutex_unlock(&sets_lock);
			return;
		}
	}
	for (struct rs_epoll *set = live_sets; set; set = set->next) {
		pthread_mutex_lock(&set->lock);
		for (unsigned i = set->count; i-- > 0;) {
			if (set->entries[i].socket == socket)
				entry_drop(set, i);
		}
		pthread_mutex_unlock(&set->lock);
	}
	pthread_mutex_unlock(&sets_lock);
}

void rs_epoll_atfork_child(void)
{
	pthread_mutex_init(&sets_lock, NULL);
	for (struct rs_epoll *set = live_sets; set; set = set->next) {
		pthread_mutex_init(&set->lock, NULL);
		/* The parent's ring had the poll; the child has its own lanes. */
		atomic_store(&set->kernel_poll_in_flight, false);
		atomic_store(&set->kernel_ready, true);
		set->kernel_poll_lane = NULL;
	}
}

/* ---- create and control ------------------------------------------------------ */

static long created(long fd)
{
	if (fd >= 0) {
		rs_epoll_close((int)fd); /* state left from a close we did not see */
		if (rs_active && rs_io_uring_available() && rs_config.event_sockets)
			set_create((int)fd);
	}
	return fd;
}

long rs_epoll_create(int size)
{
	return created(rs_kernel_result(REAL(epoll_create)(size)));
}

long rs_epoll_create1(int flags)
{
	return created(rs_kernel_result(REAL(epoll_create1)(flags)));
}

/* The entry registered under fd (socket's number), or -1; set locked. */
static int find_entry(struct rs_epoll *set, int fd, struct rs_socket *socket)
{
	int hinted = hinted_entry(set, socket);

	if (hinted >= 0 && set->entries[hinted].fd == fd)
		return hinted;
	for (unsigned i = 0; i < set->count; i++) {
		if (set->entries[i].fd == fd)
			return (int)i;
	}
	return -1;
}

/* Room for more entries in the interest list; set locked. */
static int reserve_entries(struct rs_epoll *set, unsigned more)
{
	unsigned capacity = set->capacity ? set->capacity : 64;
	struct entry *grown;

	if (set->count + more <= set->capacity)
		return 0;
	while (capacity < set->count + more)
		capacity *= 2;
	grown = realloc(set->entries, capacity * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	set->entries = grown;
	set->capacity = capacity;
	return 0;
}

/* The data of the wake eventfd's event: an address of the shim's, which no
 * application registers. */
static uint64_t wake_marker(struct rs_epoll *set)
{
	return (uint64_t)(uintptr_t)&set->wake_fd;
}

/* Wakes the threads waiting on the kernel part alone; set locked. */
static void wake_kernel_waiters(struct rs_epoll *set)
{
	uint64_t one = 1;
	int saved_errno = errno;

	if (set->wake_fd < 0) {
		struct epoll_event event = { .events = EPOLLIN, .data.u64 = wake_marker(set) };
		int fd = rs_fd_make_private(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));

		if (fd >= 0 && REAL(epoll_ctl)(set->fd, EPOLL_CTL_ADD, fd, &event) < 0) {
			rs_fd_close_private(fd);
			fd = -1;
		}
		if (fd < 0)
			rs_debug("epoll set %d: no wake eventfd (%s): a thread waiting on it "
				 "sees sockets added meanwhile at its next wait", set->fd,
				 strerror(errno));
		set->wake_fd = fd;
	}
	if (set->wake_fd >= 0 && REAL(write)(set->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		rs_debug("epoll set %d: writing its wake eventfd: %s", set->fd, strerror(errno));
	errno = saved_errno;
}

/* Takes the wake eventfd's event out of what the kernel part reported;
 * returns how many events are left. */
static int drop_wake_event(struct rs_epoll *set, struct epoll_event *events, int found,
			   bool *woken)
{
	int kept = 0;

	if (set->wake_fd < 0 || found <= 0)
		return found;
	for (int i = 0; i < found; i++) {
		if (events[i].data.u64 == wake_marker(set)) {
			uint64_t count;
			int saved_errno = errno;

			if (REAL(read)(set->wake_fd, &count, sizeof(count)) < 0)
				rs_debug("epoll set %d: reading its wake eventfd: %s", set->fd,
					 strerror(errno));
			errno = saved_errno;
			*woken = true;
			continue;
		}
		events[kept++] = events[i];
	}
	return kept;
}

static int add_entry(struct rs_epoll *set, struct rs_socket *socket, int fd,
		     const struct epoll_event *event, struct rs_lane *lane)
{
	struct rs_lane *loop = atomic_load(&set->waiter_lane);
	struct entry *entry;

	if (reserve_entries(set, 1) < 0)
		return -ENOMEM;
	pthread_mutex_lock(&socket->lock);
	if (rs_socket_enter_event_mode(socket) < 0) {
		pthread_mutex_unlock(&socket->lock);
		return -ENOMEM;
	}
	entry = &set->entries[set->count++];
	entry->socket = socket;
	entry->fd = fd;
	entry->events = event->events;
	entry->data = event->data;
	entry->seen_rx = socket->rx_generation;
	entry->seen_tx = socket->tx_generation;
	entry->pending = true;
	entry->idle = false;
	entry->disabled = false;
	entry->hinted = set->hints && !socket->epoll_hints;
	if (entry->hinted) {
		socket->epoll_hints = set->hints;
		socket->epoll_hint_index = set->count - 1;
	} else {
		set->unhinted++;
	}
	hint(set, set->count - 1);
	socket->epoll_memberships++;
	rs_socket_ref(socket);
	rs_socket_follow_loop(socket, loop ? loop : lane);
	rs_socket_want_receive(socket, lane);
	/* Added from another thread: the loop reports it if it is ready. */
	if (loop && loop != lane)
		rs_lane_wake(loop);
	pthread_mutex_unlock(&socket->lock);
	if (atomic_load(&set->kernel_waiters))
		wake_kernel_waiters(set);
	return 0;
}

/* ---- a socket that finished connecting ------------------------------------ */

/* The bits of an event mask that are not poll events (fs/eventpoll.c). */
#define PRIVATE_BITS (EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE)
/* More registrations than this, or more sets to look through (three
 * system calls each), and the kernel keeps the socket. */
#define TAKE_OVER_SETS_MAX 16
#define TAKE_OVER_LOOKS_MAX 64

struct kernel_registration {
	struct rs_epoll *set;
	struct epoll_event event;
};

/* Finds fd (that inode) in a kernel set, from the kernel's own account of
 * it in /proc/self/fdinfo: every registration with its events and data,
 * a one-shot entry's disarming included.  Returns 1 if found, 0 if not,
 * or a negative errno. */
static int find_kernel_registration(int set_fd, int fd, unsigned long inode,
				    struct epoll_event *event)
{
	char path[64], buffer[8192];
	size_t kept = 0;
	int file, found = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", set_fd);
	file = open(path, O_RDONLY | O_CLOEXEC);
	if (file < 0)
		return -errno;
	for (;;) {
		ssize_t length = REAL(read)(file, buffer + kept, sizeof(buffer) - 1 - kept);
		char *line, *end;

		if (length < 0 && errno == EINTR)
			continue;
		if (length < 0) {
			found = -errno;
			break;
		}
		if (length == 0)
			break;
		kept += (size_t)length;
		buffer[kept] = '\0';
		for (line = buffer; (end = strchr(line, '\n')); line = end + 1) {
			unsigned long long data;
			long long position;
			unsigned long line_inode;
			unsigned events;
			int target;

			*end = '\0';
			/* "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx ..." */
			if (sscanf(line, "tfd: %d events: %x data: %llx pos:%lld ino:%lx", &target,
				   &events, &data, &position, &line_inode) == 5 &&
			    target == fd && line_inode == inode) {
				event->events = events;
				event->data.u64 = data;
				found = 1;
			}
		}
		kept = (size_t)(buffer + kept - line);
		memmove(buffer, line, kept);
		if (kept == sizeof(buffer) - 1)
			kept = 0; /* no line is that long */
	}
	REAL(close)(file);
	return found;
}

int rs_epoll_take_over(struct rs_socket *socket, struct rs_lane *lane)
{
	struct kernel_registration found[TAKE_OVER_SETS_MAX];
	unsigned count = 0, looked = 0;
	struct stat status;
	int fd = socket->fd, ret = 0;

	if (fstat(fd, &status) < 0)
		return -errno;
	/* Held throughout, so no set is closed or recycled meanwhile; the lock
	 * order stays lane, sets, set, socket. */
	pthread_mutex_lock(&sets_lock);
	for (struct rs_epoll *set = live_sets; set && ret >= 0; set = set->next) {
		struct epoll_event event;
		int result;

		if (++looked > TAKE_OVER_LOOKS_MAX) {
			ret = -E2BIG;
			break;
		}
		result = find_kernel_registration(set->fd, fd, (unsigned long)status.st_ino, &event);

		if (result < 0)
			ret = result;
		else if (result && count == TAKE_OVER_SETS_MAX)
			ret = -E2BIG;
		else if (result)
			found[count++] = (struct kernel_registration){ .set = set, .event = event };
	}
	/* Everything that could fail does so before anything moves. */
	pthread_mutex_lock(&socket->lock);
	if (ret >= 0 && count && rs_socket_enter_event_mode(socket) < 0)
		ret = -ENOMEM;
	pthread_mutex_unlock(&socket->lock);
	for (unsigned i = 0; i < count && ret >= 0; i++) {
		struct rs_epoll *set = found[i].set;

		pthread_mutex_lock(&set->lock);
		ret = reserve_entries(set, count);
		pthread_mutex_unlock(&set->lock);
	}
	if (ret < 0) {
		pthread_mutex_unlock(&sets_lock);
		return ret;
	}
	pthread_mutex_lock(&socket->lock);
	socket->kind = RS_SOCKET_CONNECTED;
	pthread_mutex_unlock(&socket->lock);
	for (unsigned i = 0; i < count; i++) {
		struct rs_epoll *set = found[i].set;
		struct epoll_event *event = &found[i].event;
		struct entry *entry;

		if (REAL(epoll_ctl)(set->fd, EPOLL_CTL_DEL, fd, NULL) < 0)
			continue; /* gone meanwhile */
		pthread_mutex_lock(&set->lock);
		if (add_entry(set, socket, fd, event, lane) == 0) {
			entry = &set->entries[set->count - 1];
			/* The kernel reported the edges so far (the application
			 * calls because it saw the connection complete): an
			 * edge-triggered entry waits for the next one. */
			if (event->events & EPOLLET)
				entry->pending = false;
			/* A one-shot entry that fired keeps no poll event. */
			if (!(event->events & ~PRIVATE_BITS))
				entry->disabled = true;
		}
		pthread_mutex_unlock(&set->lock);
	}
	pthread_mutex_unlock(&sets_lock);
	return 0;
}

/* The checks the kernel makes before looking at the fd's registration. */
static int check_control(int op, int fd, int set_fd, const struct epoll_event *event)
{
	if (op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD && op != EPOLL_CTL_DEL)
		return -EINVAL;
	if (op != EPOLL_CTL_DEL && rs_bad_pointer(event))
		return -EFAULT;
	if (fd == set_fd)
		return -EINVAL;
	if (op != EPOLL_CTL_DEL && (event->events & EPOLLEXCLUSIVE)) {
		if (op == EPOLL_CTL_MOD)
			return -EINVAL;
		if (event->events & ~EXCLUSIVE_ALLOWED)
			return -EINVAL;
	}
	return 0;
}

/* An emulated set joins, changes in or leaves another set: the kernel's
 * registration stands for its kernel part, the nested entry for the rest. */
static long control_nested(int set_fd, int op, struct rs_epoll *inner, struct epoll_event *event)
{
	long ret = rs_kernel_result(REAL(epoll_ctl)(set_fd, op, inner->fd, event));
	struct rs_epoll *outer = set_lookup(set_fd);

	if (ret < 0 || (!outer && !(op == EPOLL_CTL_ADD && (outer = set_adopt(set_fd)))))
		return ret;
	pthread_mutex_lock(&sets_lock);
	pthread_mutex_lock(&outer->lock);
	for (unsigned i = 0; i < outer->nested_count; i++) {
		if (outer->nested[i].inner != inner)
			continue;
		if (op == EPOLL_CTL_DEL)
			outer->nested[i] = outer->nested[--outer->nested_count];
		else
			outer->nested[i] = (struct nested){ .inner = inner, .fd = inner->fd,
							   .events = event->events,
							   .data = event->data };
		op = -1;
		break;
	}
	if (op == EPOLL_CTL_ADD && outer->nested_count < NESTED_MAX)
		outer->nested[outer->nested_count++] = (struct nested){
			.inner = inner, .fd = inner->fd, .events = event->events, .data = event->data };
	pthread_mutex_unlock(&outer->lock);
	pthread_mutex_unlock(&sets_lock);
	return ret;
}

long rs_epoll_ctl(int set_fd, int op, int fd, struct epoll_event *event)
{
	struct rs_socket *socket = rs_fd_get(fd);
	struct rs_epoll *set;
	struct rs_lane *lane;
	long ret;
	int index;

	if (likely(!socket)) {
		struct rs_epoll *inner = set_lookup(fd);

		if (inner && fd != set_fd && (op == EPOLL_CTL_DEL || !rs_bad_pointer(event)))
			return control_nested(set_fd, op, inner, event);
		/* A socket may join a set before its connect (nginx's
		 * upstreams): the set must be one the shim knows when the
		 * socket is taken over, even one inherited across exec. */
		if (rs_config.client && op == EPOLL_CTL_ADD && rs_config.event_sockets &&
		    !set_lookup(set_fd))
			set_adopt(set_fd);
		return rs_kernel_result(REAL(epoll_ctl)(set_fd, op, fd, event));
	}
	lane = rs_lane_get();
	if (rs_listener_steered(socket) && lane) {
		ret = rs_listener_epoll_ctl(socket, lane, set_fd, op, event);
		rs_socket_unref(socket);
		return ret;
	}
	set = set_lookup(set_fd);
	if (!set && op == EPOLL_CTL_ADD && lane && rs_config.event_sockets)
		set = set_adopt(set_fd);
	if (!set || !lane) {
		rs_socket_unref(socket);
		return rs_kernel_result(REAL(epoll_ctl)(set_fd, op, fd, event));
	}
	ret = check_control(op, fd, set_fd, event);
	if (ret < 0) {
		rs_socket_unref(socket);
		return ret;
	}
	RS_COUNT_CALL(lane);
	rs_lane_enter(lane);
	pthread_mutex_lock(&set->lock);
	index = find_entry(set, fd, socket);
	if (index < 0 && op != EPOLL_CTL_ADD) {
		/* Not ours: registered in the kernel set, or nowhere. */
		pthread_mutex_unlock(&set->lock);
		rs_lane_leave(lane);
		rs_socket_unref(socket);
		return rs_kernel_result(REAL(epoll_ctl)(set_fd, op, fd, event));
	}
	switch (op) {
	case EPOLL_CTL_ADD:
		if (index >= 0) {
			ret = -EEXIST;
			break;
		}
		if (socket->kind != RS_SOCKET_CONNECTED || socket->kernel_path || socket->app_fds ||
		    add_entry(set, socket, fd, event, lane) < 0) {
			/* Kernel readiness is exact for what the shim does
			 * not receive ahead. */
			pthread_mutex_unlock(&set->lock);
			rs_lane_leave(lane);
			rs_socket_unref(socket);
			return rs_kernel_result(REAL(epoll_ctl)(set_fd, op, fd, event));
		}
		break;
	case EPOLL_CTL_MOD: {
		struct entry *entry = &set->entries[index];

		if (entry->events & EPOLLEXCLUSIVE) {
			ret = -EINVAL;
			break;
		}
		entry->events = event->events;
		entry->data = event->data;
		entry->pending = true;
		entry->disabled = false;
		hint(set, (unsigned)index);
		break;
	}
	case EPOLL_CTL_DEL:
		entry_drop(set, (unsigned)index);
		break;
	}
	pthread_mutex_unlock(&set->lock);
	rs_lane_leave(lane);
	rs_socket_unref(socket);
	return ret;
}

/* ---- wait ------------------------------------------------------------------ */

/* Whether an accelerated socket of the set is ready, changing nothing. */
static bool sockets_ready(struct rs_epoll *set)
{
	bool ready = false;

	pthread_mutex_lock(&set->lock);
	for (unsigned i = 0; i < set->count && !ready; i++) {
		struct entry *entry = &set->entries[i];
		struct rs_socket *socket = entry->socket;
		uint32_t mask;

		if (entry->disabled)
			continue;
		pthread_mutex_lock(&socket->lock);
		mask = rs_socket_readiness(socket) & (entry->events | EPOLLERR | EPOLLHUP);
		if (entry->events & EPOLLET)
			ready = mask && (entry->pending || socket->rx_generation != entry->seen_rx ||
					 socket->tx_generation != entry->seen_tx);
		else
			ready = mask != 0;
		pthread_mutex_unlock(&socket->lock);
	}
	pthread_mutex_unlock(&set->lock);
	return ready;
}

/* Reports the nested sets whose accelerated sockets are ready. */
static int collect_nested(struct rs_epoll *set, struct epoll_event *events, int max)
{
	int found = 0;

	pthread_mutex_lock(&sets_lock);
	pthread_mutex_lock(&set->lock);
	for (unsigned i = 0; i < set->nested_count && found < max; i++) {
		struct nested *nested = &set->nested[i];

		if (nested->disabled || !(nested->events & EPOLLIN) || !sockets_ready(nested->inner))
			continue;
		events[found].events = EPOLLIN;
		events[found].data = nested->data;
		found++;
		if (nested->events & EPOLLONESHOT)
			nested->disabled = true;
	}
	pthread_mutex_unlock(&set->lock);
	pthread_mutex_unlock(&sets_lock);
	return found;
}

/* The kernel part may report a nested set the shim already did: events
 * [first, first + nested) are the shim's, the harvested ones follow. */
static int drop_duplicates(struct epoll_event *events, int first, int nested, int harvested)
{
	int reported = first + nested, kept = reported;

	for (int i = reported; i < reported + harvested; i++) {
		bool duplicate = false;

		for (int j = first; j < reported && !duplicate; j++)
			duplicate = events[j].data.u64 == events[i].data.u64;
		if (!duplicate)
			events[kept++] = events[i];
	}
	return kept - reported;
}

/* Looks at one entry; fills event and returns true if it reports.  Set
 * locked. */
static bool look_at(struct entry *entry, struct epoll_event *event)
{
	struct rs_socket *socket = entry->socket;
	uint32_t interest = entry->events | EPOLLERR | EPOLLHUP;
	uint32_t ready, version;
	bool report;

	pthread_mutex_lock(&socket->lock);
	version = atomic_load_explicit(&socket->readiness_version, memory_order_relaxed);
	ready = rs_socket_readiness(socket) & interest;
	if (entry->events & EPOLLET) {
		bool receive_side = socket->rx_generation != entry->seen_rx;
		bool send_side = socket->tx_generation != entry->seen_tx;

		report = ready && (entry->pending ||
				   (receive_side && (ready & ~(EPOLLOUT | EPOLLWRNORM))) ||
				   (send_side && (ready & EPOLLOUT)));
		entry->seen_rx = socket->rx_generation;
		entry->seen_tx = socket->tx_generation;
	} else {
		report = ready != 0;
	}
	pthread_mutex_unlock(&socket->lock);
	entry->idle = !report;
	entry->idle_version = version;
	if (!report)
		return false;
	entry->pending = false;
	event->events = ready;
	event->data = entry->data;
	if (entry->events & EPOLLONESHOT)
		entry->disabled = true;
	return true;
}

/* Every entry, for a set with sockets that hint another one. */
static int collect_scanning(struct rs_epoll *set, struct epoll_event *events, int max)
{
	unsigned count = set->count, start = count ? set->next_scan % count : 0;
	int found = 0;

	for (unsigned step = 0; step < count && found < max; step++) {
		unsigned index = (start + step) % count;
		struct entry *entry = &set->entries[index];

		if (entry->disabled)
			continue;
		/* An entry found not ready stays so until its socket's
		 * readiness moves, and looking costs one load, not a lock. */
		if (entry->idle && !entry->pending &&
		    atomic_load_explicit(&entry->socket->readiness_version, memory_order_acquire) ==
			    entry->idle_version)
			continue;
		if (!look_at(entry, &events[found]))
			continue;
		found++;
		set->next_scan = index + 1;
	}
	return found;
}

/* Looks at the entries of one word of hints whose bits are given; returns
 * the bits to set again: entries still to look at once max events are
 * found, and level-triggered ones that reported (ready until drained,
 * which moves nothing). */
static uint64_t look_at_bits(struct rs_epoll *set, unsigned word, uint64_t bits,
			     struct epoll_event *events, int max, int *found)
{
	uint64_t again = 0;

	while (bits) {
		unsigned bit = (unsigned)__builtin_ctzll(bits);
		unsigned index = word * 64 + bit;
		struct entry *entry;

		bits &= bits - 1;
		if (index >= set->count)
			continue;
		entry = &set->entries[index];
		if (entry->disabled)
			continue;
		if (*found == max) {
			again |= 1ull << bit;
			continue;
		}
		if (!look_at(entry, &events[*found]))
			continue;
		(*found)++;
		set->next_scan = index + 1;
		if (!(entry->events & (EPOLLET | EPOLLONESHOT)))
			again |= 1ull << bit;
	}
	return again;
}

/* The entries whose hint bit is set, from where the last call stopped, so
 * that level-triggered events rotate as the kernel's do.  A bit is taken
 * before its entry is looked at: a move during the look sets it again. */
static int collect_hinted(struct rs_epoll *set, struct epoll_event *events, int max)
{
	unsigned count = set->count, words = (count + 63) / 64;
	unsigned first = count ? set->next_scan % count : 0, start = first / 64;
	uint64_t bits, again, from_first = ~0ull << (first % 64);
	int found = 0;

	if (!count)
		return 0;
	bits = atomic_exchange_explicit(&set->hints[start], 0, memory_order_acq_rel);
	again = look_at_bits(set, start, bits & from_first, events, max, &found);
	for (unsigned step = 1; step < words && found < max; step++) {
		unsigned word = (start + step) % words;
		uint64_t taken = atomic_exchange_explicit(&set->hints[word], 0, memory_order_acq_rel);
		uint64_t left = look_at_bits(set, word, taken, events, max, &found);

		if (left)
			atomic_fetch_or_explicit(&set->hints[word], left, memory_order_release);
	}
	/* The first word's entries before where this call started go last. */
	again |= look_at_bits(set, start, bits & ~from_first, events, max, &found);
	if (again)
		atomic_fetch_or_explicit(&set->hints[start], again, memory_order_release);
	return found;
}

/* Reports the ready entries of the interest list, at most max. */
static int collect(struct rs_epoll *set, struct epoll_event *events, int max)
{
	int found;

	pthread_mutex_lock(&set->lock);
	if (set->hints && !set->unhinted)
		found = collect_hinted(set, events, max);
	else
		found = collect_scanning(set, events, max);
	pthread_mutex_unlock(&set->lock);
	return found;
}

/* Reads the kernel part if its poll fired (or was never armed). */
static int harvest_kernel(struct rs_epoll *set, struct epoll_event *events, int max)
{
	int found;

	if (max <= 0 || !atomic_load(&set->kernel_ready))
		return 0;
	atomic_store(&set->kernel_ready, false);
	found = REAL(epoll_wait)(set->fd, events, max, 0);
	return found < 0 ? 0 : drop_wake_event(set, events, found, &(bool){ false });
}

static void arm_kernel_poll(struct rs_epoll *set, struct rs_lane *lane)
{
	struct io_uring_sqe *sqe;

	if (atomic_load(&set->kernel_poll_in_flight) || atomic_load(&set->kernel_ready))
		return;
	sqe = rs_lane_sqe(lane);
	io_uring_prep_poll_add(sqe, set->fd, POLLIN);
	io_uring_sqe_set_data(sqe, &set->kernel_poll_op);
	set->kernel_poll_lane = lane;
	atomic_store(&set->kernel_poll_in_flight, true);
}

static bool has_entries(struct rs_epoll *set)
{
	bool any;

	pthread_mutex_lock(&set->lock);
	any = set->count != 0 || set->nested_count != 0;
	pthread_mutex_unlock(&set->lock);
	return any;
}

/* timeout_ns < 0: forever. */
/* The kernel's wait, for a set without accelerated sockets or a caller
 * without a lane. */
static long kernel_wait(int set_fd, struct rs_lane *lane, struct epoll_event *events, int max,
			long long timeout_ns, const sigset_t *mask)
{
	struct timespec timeout = { .tv_sec = timeout_ns / 1000000000ll,
				    .tv_nsec = timeout_ns % 1000000000ll };
	long found;

	rs_lane_flush_before_block();
	if (lane && lane->steer_slot >= 0) {
		/* Only kernel fds (the listeners, at start): still a turn and a
		 * wait of the lane's loop. */
		rs_listener_lane_turn(lane);
		if (timeout_ns != 0)
			rs_listener_lane_waiting(lane);
		found = rs_kernel_result(REAL(epoll_pwait2)(set_fd, events, max,
							 timeout_ns < 0 ? NULL : &timeout, mask));
		if (timeout_ns != 0)
			rs_listener_lane_running(lane);
		return found;
	}
	if (!REAL(epoll_pwait2) && timeout_ns >= 0)
		return rs_kernel_result(REAL(epoll_pwait)(set_fd, events, max,
						       (int)(timeout_ns / 1000000), mask));
	return rs_kernel_result(REAL(epoll_pwait2)(set_fd, events, max,
						timeout_ns < 0 ? NULL : &timeout, mask));
}

/* The first loop to wait on a set takes the sockets added before it (into
 * its lane's arming list: under the lane's lock, which the flusher also
 * takes). */
static void set_waiter(struct rs_epoll *set, struct rs_lane *lane)
{
	if (atomic_load_explicit(&set->waiter_lane, memory_order_relaxed) == lane)
		return;
	if (atomic_exchange(&set->waiter_lane, lane))
		return;
	rs_lane_enter(lane);
	pthread_mutex_lock(&set->lock);
	for (unsigned i = 0; i < set->count; i++) {
		struct rs_socket *socket = set->entries[i].socket;

		pthread_mutex_lock(&socket->lock);
		if (socket->loop_lane != lane)
			rs_socket_follow_loop(socket, lane);
		pthread_mutex_unlock(&socket->lock);
	}
	pthread_mutex_unlock(&set->lock);
	rs_lane_leave(lane);
}

static long wait_common(int set_fd, struct epoll_event *events, int max, long long timeout_ns,
			const sigset_t *mask)
{
	struct rs_epoll *set = set_lookup(set_fd);
	struct rs_lane *lane = set ? rs_lane_get() : NULL;
	uint64_t deadline = 0;
	long found = 0;

	if (!set || !lane || rs_bad_pointer(events))
		return kernel_wait(set_fd, lane, events, max, timeout_ns, mask);
	set_waiter(set, lane);
	/* The kernel's wait cannot be woken for a receive of this lane that
	 * another loop wants ended (its socket moved there). */
	if (!has_entries(set) && !lane->receives_in_flight) {
		uint64_t started = timeout_ns > 0 ? rs_now_ns() : 0;
		bool woken = false;

		/* Counted first, then looked at again: a socket added by
		 * another thread meanwhile is either seen here or wakes us. */
		atomic_fetch_add(&set->kernel_waiters, 1);
		if (!has_entries(set)) {
			found = kernel_wait(set_fd, lane, events, max, timeout_ns, mask);
			found = drop_wake_event(set, events, (int)found, &woken);
		} else {
			woken = true;
		}
		atomic_fetch_sub(&set->kernel_waiters, 1);
		if (found || !woken)
			return found;
		/* Woken for a socket another thread added: the rest of the
		 * timeout is the ring's. */
		if (timeout_ns > 0) {
			uint64_t spent = rs_now_ns() - started;

			if (spent >= (uint64_t)timeout_ns)
				return 0;
			timeout_ns -= (long long)spent;
		}
	}
	if (max <= 0 || max > MAX_EVENTS)
		return -EINVAL;
	if (timeout_ns > 0)
		deadline = rs_now_ns() + (uint64_t)timeout_ns;
	RS_COUNT_CALL(lane);
	rs_lane_enter(lane);
	rs_listener_lane_turn(lane);
	for (;;) {
		struct __kernel_timespec wait_for, *wait_pointer;
		bool expired;
		bool foreign;
		int ret;

		int nested;

		/* A look that cannot wait submits first: what is already there
		 * for the receives ahead it arms completes during it. */
		if (timeout_ns == 0 && (lane->arming_count || lane->dirty_count))
			rs_lane_submit(lane);
		if (timeout_ns == 0) {
			rs_lane_reap_now(lane);
		} else {
			rs_lane_begin_readiness_wait(lane);
			rs_lane_reap(lane);
		}
		found = collect(set, events, max);
		nested = set->nested_count ? collect_nested(set, events + found, max - (int)found) : 0;
		found += nested;
		found += drop_duplicates(events, (int)found - nested, nested,
					 harvest_kernel(set, events + found, max - (int)found));
		/* Armed every turn, so kernel fds are seen even while the
		 * accelerated sockets keep the loop busy. */
		arm_kernel_poll(set, lane);
		if (found || timeout_ns == 0)
			break;
		/* Without a wake eventfd, other threads' changes are seen
		 * only by looking again. */
		foreign = set->kernel_poll_lane != lane || lane->wake_fd < 0;
		wait_pointer = rs_wait_limit(timeout_ns, deadline, foreign, FOREIGN_SLICE_NS,
					     &wait_for, &expired);
		if (expired)
			break;
		if (foreign)
			atomic_store(&set->kernel_ready, true);
		rs_listener_lane_waiting(lane);
		ret = rs_lane_wait_timeout(lane, wait_pointer, mask);
		rs_listener_lane_running(lane);
		if (ret == -EINTR) {
			/* epoll_wait is never restarted after a handler. */
			rs_lane_reap(lane);
			found = collect(set, events, max);
			if (!found)
				found = -EINTR;
			break;
		}
		if (ret < 0 && ret != -ETIME && ret != -EAGAIN && ret != -EBUSY) {
			rs_warn("epoll_wait through the ring failed (%s): waiting on the kernel",
				strerror(-ret));
			rs_lane_end_readiness_wait(lane);
			rs_lane_leave(lane);
			return rs_kernel_result(REAL(epoll_wait)(set_fd, events, max, 0));
		}
	}
	rs_lane_end_readiness_wait(lane);
	/* What this turn queued (sends, receives ahead) goes now, with the
	 * one enter of the turn when the wait did not need one. */
	rs_lane_submit(lane);
	rs_lane_leave(lane);
	return found;
}

long rs_epoll_wait(int set_fd, struct epoll_event *events, int max, int timeout)
{
	return wait_common(set_fd, events, max, timeout < 0 ? -1 : timeout * 1000000ll, NULL);
}

long rs_epoll_pwait(int set_fd, struct epoll_event *events, int max, int timeout,
		    const sigset_t *mask)
{
	return wait_common(set_fd, events, max, timeout < 0 ? -1 : timeout * 1000000ll, mask);
}

long rs_epoll_pwait2(int set_fd, struct epoll_event *events, int max,
		     const struct timespec *timeout, const sigset_t *mask)
{
	long long nanoseconds = -1;

	if (timeout) {
		if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L)
			return -EINVAL;
		nanoseconds = (long long)timeout->tv_sec * 1000000000ll + timeout->tv_nsec;
	}
	return wait_common(set_fd, events, max, nanoseconds, mask);
}
