/* SPDX-License-Identifier: MIT */
/*
 * The internal header of the preload library.
 *
 * Conventions: internal functions return a negative errno on failure and
 * never touch errno themselves; only the exported wrappers in interpose.c
 * set errno.  The shim's own code reaches the kernel only through the real
 * functions (REAL(name)), never through the exported names, so it cannot
 * recurse into itself.
 */
#ifndef RINGSTEER_H
#define RINGSTEER_H

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "compat.h"
#include "stats_layout.h"

#define RS_HIDDEN __attribute__((visibility("hidden")))
#define RS_EXPORT __attribute__((visibility("default")))
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* ---- real functions (interpose.c) ---------------------------------------- */

struct rs_real_functions {
#define RS_CALL(ret, name, params, args) ret (*name) params;
#define RS_CALL_VARIADIC(ret, name, params, last) ret (*name) params;
#include "calls.h"
#undef RS_CALL
#undef RS_CALL_VARIADIC
};
extern struct rs_real_functions rs_real;
#define REAL(name) (rs_real.name)

/* 0 before the real functions are resolved, 1 after, -1 while resolving. */
extern _Atomic int rs_initialised;
/* False when disabled or when start-up failed: the kernel path for all. */
extern bool rs_active;
void rs_init(void);

/* ---- configuration (config.c) --------------------------------------------- */

enum rs_log_level { RS_LOG_ERROR, RS_LOG_WARN, RS_LOG_INFO, RS_LOG_DEBUG };

#define RS_MAX_CPUS 1024

struct rs_config {
	bool disable;             /* RINGSTEER_DISABLE */
	int log_level;            /* RINGSTEER_LOG */
	int cpus[RS_MAX_CPUS];    /* RINGSTEER_CPUS, in order; cpu_count 0: all */
	int cpu_count;
	bool pin;                 /* RINGSTEER_PIN */
	bool client;              /* RINGSTEER_CLIENT */
	unsigned batch;           /* RINGSTEER_BATCH: queued sends that force a submit */
	size_t txq_bytes;         /* RINGSTEER_TXQ_BYTES: per-socket send queue cap */
	size_t rxq_bytes;         /* RINGSTEER_RXQ_BYTES: per-socket receive buffer */
	bool event_sockets;       /* RINGSTEER_EVENT_SOCKETS: carry non-blocking sockets */
	unsigned listeners;       /* RINGSTEER_LISTENERS: opened ahead per steered listener, 0 auto */
	unsigned ring_entries;    /* RINGSTEER_RING_ENTRIES */
	unsigned flush_us;        /* RINGSTEER_FLUSH_US: deadline for queued sends */
	bool defer_taskrun;       /* RINGSTEER_DEFER_TASKRUN */
	char stats_dir[256];      /* RINGSTEER_STATS_DIR */
	bool stats_keep;          /* RINGSTEER_STATS_KEEP */
};
extern struct rs_config rs_config;

typedef const char *(*rs_env_lookup)(const char *name);
typedef void (*rs_config_report)(int level, const char *line);

/* Fills config from the environment; reports each bad value (the default is
 * then used) and returns how many were bad. */
int rs_config_load(struct rs_config *config, rs_env_lookup lookup,
		   rs_config_report report);
void rs_config_defaults(struct rs_config *config);
/* Writes the non-default settings, comma separated, into buf. */
void rs_config_describe(const struct rs_config *config, char *buf, size_t size);

/* ---- logging (log.c) ------------------------------------------------------- */

/* One line on stderr prefixed "ringsteer[pid]: "; keeps errno. */
void rs_log(int level, const char *format, ...) __attribute__((format(printf, 2, 3)));
#define rs_error(...) rs_log(RS_LOG_ERROR, __VA_ARGS__)
#define rs_warn(...)  rs_log(RS_LOG_WARN, __VA_ARGS__)
#define rs_info(...)  rs_log(RS_LOG_INFO, __VA_ARGS__)
#define rs_debug(...) do { if (unlikely(rs_config.log_level >= RS_LOG_DEBUG)) \
		rs_log(RS_LOG_DEBUG, __VA_ARGS__); } while (0)

/* ---- statistics (stats.c) -------------------------------------------------- */

void rs_stats_init(void);
void rs_stats_atfork_child(void);
void rs_stats_exit(void);
/* Before exec (false), and after one that failed (true). */
void rs_stats_exec(bool failed);
struct rs_lane_stats *rs_stats_lane_slot(unsigned *index);
void rs_stats_lane_release(unsigned index);
void rs_stats_set_io_uring(bool available);
/* Relaxed atomic adds: a slot is written by its lane's thread, but also by
 * a thread closing a socket another lane opened, and slots are shared once
 * more threads than slots exist.  No system call either way. */
#define RS_STAT_ADD(slot, field, n) \
	atomic_fetch_add_explicit((_Atomic uint64_t *)&(slot)->field, (uint64_t)(n), \
				  memory_order_relaxed)
#define RS_STAT_SUB(slot, field, n) RS_STAT_ADD(slot, field, -(uint64_t)(n))
/* One application call answered by the shim, on the calling thread's lane. */
#define RS_COUNT_CALL(lane) RS_STAT_ADD((lane) ? (lane)->stats : rs_process_stats, calls_answered, 1)
/* Counters of work done on no lane: the flusher's sends, threads without a
 * lane.  Points into the published file once it exists. */
extern struct rs_lane_stats *rs_process_stats;

/* ---- send queue (sendqueue.c) ------------------------------------------- */

struct rs_chunk {
	struct rs_chunk *next;
	size_t start;     /* first unsent byte */
	size_t end;       /* one past the last queued byte */
	size_t capacity;
	char data[];
};

/* A FIFO of bytes waiting to be sent, in chunks so that appends never move
 * data that may be in flight. */
struct rs_send_queue {
	struct rs_chunk *head;
	struct rs_chunk *tail;
	size_t bytes;
};

#define RS_CHUNK_SIZE 16384

void rs_send_queue_init(struct rs_send_queue *queue);
/* Appends up to limit bytes from iov; returns the number appended or -ENOMEM. */
ssize_t rs_send_queue_append(struct rs_send_queue *queue, const struct iovec *iov,
			     int iovcnt, size_t limit);
/* Appends up to count bytes read from fd (at *offset, which advances, or at
 * its file position if offset is NULL); returns the number or -errno.  An
 * empty chunk it added stays for the next append. */
ssize_t rs_send_queue_append_file(struct rs_send_queue *queue, int fd, off_t *offset,
				  size_t count);
/* Describes the first queued bytes in at most max iovecs; returns the count. */
int rs_send_queue_peek(const struct rs_send_queue *queue, struct iovec *iov, int max);
void rs_send_queue_consume(struct rs_send_queue *queue, size_t bytes);
void rs_send_queue_clear(struct rs_send_queue *queue);
void rs_send_queue_atfork_child(void);

/* ---- operations and lanes (lane.c) ----------------------------------------- */

/* RS_OP_WAIT: a call waits for it (lives on that call's stack).  The others
 * live inside their socket or epoll set: RS_OP_SEND the socket's queued
 * bytes, RS_OP_RECEIVE a receive ahead into the socket's buffer,
 * RS_OP_WRITABLE a poll for room after a kernel send said EAGAIN,
 * RS_OP_EPOLL a poll on the kernel part of an emulated epoll set. */
enum rs_op_kind { RS_OP_WAIT, RS_OP_SEND, RS_OP_IGNORE, RS_OP_RECEIVE, RS_OP_WRITABLE,
		  RS_OP_EPOLL, RS_OP_WAKE };

struct rs_epoll;

/* What an SQE's user_data points to. */
struct rs_op {
	enum rs_op_kind kind;
	bool done;
	int result;
	unsigned cqe_flags;
	struct rs_socket *socket;
	struct rs_epoll *epoll;
	/* A receive submitted with this socket's send (see io.c). */
	struct rs_socket *paired_send;
};

struct rs_lane {
	struct io_uring ring;
	pthread_mutex_t lock;      /* held by the owner inside the shim; the flusher trylocks */
	pid_t tid;
	unsigned index;
	int cpu;
	struct rs_lane_stats *stats;
	unsigned in_flight;        /* operations whose CQE is not yet reaped */
	unsigned sends_in_flight;  /* of which sends: what the flusher watches */
	/* Sockets' receives ahead armed here: another loop may ask for one
	 * to end, so a wait must stay wakeable (in the ring). */
	unsigned receives_in_flight;
	unsigned sends_prepared;   /* sends among the SQEs not yet submitted */
	bool deferred;             /* the ring has DEFER_TASKRUN */
	bool receive_poll_first;   /* the kernel has IORING_RECVSEND_POLL_FIRST */
	bool ring_registered;      /* enters name the ring by its registered index */
	/* Provided buffers for the multishot receives ahead of event-mode
	 * sockets (set up at the first one; NULL if the kernel refused). */
	struct io_uring_buf_ring *receive_ring;
	char *receive_memory;
	bool receive_ring_tried;
	/* Steering (listener.c): the lane's slot (-1: none yet), the
	 * application listeners it has a listener of its own for, and how busy
	 * its thread is (time outside its waits, smoothed). */
	int steer_slot;
	struct rs_socket **steered;
	unsigned steered_count;
	uint64_t steer_left_wait_ns;
	uint64_t steer_busy_ns;
	uint64_t steer_window_ns;
	unsigned steer_busy_permille;
	unsigned unsubmitted;      /* SQEs prepared since the last submit */
	unsigned cq_entries;
	bool overflow_kept;        /* IORING_FEAT_NODROP: a full CQ loses nothing */
	/* Sockets with queued bytes and no send in flight, each holding a ref. */
	struct rs_socket **dirty;
	unsigned dirty_count;
	unsigned dirty_capacity;
	/* The list being sent swaps with this one, so what completions list
	 * meanwhile goes on a list nobody is walking. */
	struct rs_socket **dirty_spare;
	unsigned dirty_spare_capacity;
	_Atomic bool work_left;     /* queued bytes or sends wait for the owner */
	/* Counts the owner's entries into the shim; the flusher steps in only
	 * when it has not moved for RINGSTEER_FLUSH_US (see flusher_main). */
	_Atomic uint64_t owner_entries;
	uint64_t flusher_seen_entries;    /* the flusher's own: its last look */
	uint64_t flusher_seen_at_ns;
	/* Sockets whose receive ahead (or writable poll) is to be armed with
	 * the next enter, each holding a ref. */
	struct rs_socket **arming;
	unsigned arming_count;
	unsigned arming_capacity;
	/* Bumped by every completion that changed a socket's readiness, so a
	 * waiting epoll/poll knows whether to look again. */
	uint64_t readiness_changes;
	struct rs_lane *next_lane;       /* in the registry, for the flusher */
	_Atomic bool dead;               /* its thread exited */
	/* Readiness another thread makes (the flusher, a thread pool's
	 * write) while the owner waits in its ring for readiness: an eventfd
	 * polled in the ring during those waits, written by rs_lane_wake. */
	int wake_fd;                     /* -1: none (made at the first readiness wait) */
	bool wake_fd_failed;
	bool wake_armed;
	struct rs_op wake_op;
	_Atomic bool waiting_for_readiness;
	/* Sockets whose loop runs here and whose bytes another thread queued
	 * (a thread pool's sendfile): each holding a ref, taken into the
	 * dirty list at the next submission (or by the flusher). */
	pthread_mutex_t handoff_lock;    /* a leaf: taken under a socket's lock */
	struct rs_socket **handoff;
	unsigned handoff_count;
	unsigned handoff_capacity;
	_Atomic bool handoff_pending;
};

/* The calling thread's lane, created on first use; NULL when io_uring is not
 * available (the caller then takes the kernel path). */
struct rs_lane *rs_lane_get(void);
/* The calling thread's lane if it has one; never creates it (inline: a
 * socket's every readiness change asks). */
extern RS_HIDDEN __thread struct rs_lane *rs_current_lane;
static inline struct rs_lane *rs_lane_current(void)
{
	return rs_current_lane;
}
/* Between these the owner waits for readiness (epoll, poll, select): what
 * changes it from another thread wakes the wait (rs_lane_wake). */
void rs_lane_begin_readiness_wait(struct rs_lane *lane);
void rs_lane_end_readiness_wait(struct rs_lane *lane);
void rs_lane_wake(struct rs_lane *lane);
/* Hands a socket with queued bytes to the lane its loop runs on, from
 * another thread; socket locked.  False if it could not be listed. */
bool rs_lane_hand_off(struct rs_lane *home, struct rs_socket *socket);
/* Takes the lane for a shim call, and releases it. */
void rs_lane_enter(struct rs_lane *lane);
void rs_lane_leave(struct rs_lane *lane);
/* An SQE, submitting what is queued if the SQ is full; never NULL. */
struct io_uring_sqe *rs_lane_sqe(struct rs_lane *lane);
/* Submits queued SQEs and waits until op is done; -EINTR if a signal came. */
int rs_lane_wait(struct rs_lane *lane, struct rs_op *op);
/* Submits, waits for any completion and reaps; -EINTR if a signal came. */
int rs_lane_wait_any(struct rs_lane *lane);
/* Submits and waits for at least one completion, at most timeout (NULL:
 * forever), with mask as the signal mask during the wait (NULL: unchanged);
 * reaps.  0, -ETIME on timeout, -EINTR on a signal. */
int rs_lane_wait_timeout(struct rs_lane *lane, struct __kernel_timespec *timeout,
			 const sigset_t *mask);
/* The lane's provided buffers: whether it has them (set up on first use),
 * one's bytes, and giving one back. */
bool rs_lane_receive_buffers(struct rs_lane *lane);
const char *rs_lane_receive_buffer(struct rs_lane *lane, unsigned id);
void rs_lane_return_receive_buffer(struct rs_lane *lane, unsigned id);
#define RS_RECEIVE_BUFFERS 256
#define RS_RECEIVE_BUFFER_SIZE 16384
/* Queues socket for arming its receive ahead or writable poll at the next
 * enter; socket locked. */
void rs_lane_mark_arming(struct rs_lane *lane, struct rs_socket *socket);
/* Waits for a waited-for op after a signal: cancels it and reaps its CQE. */
void rs_lane_cancel(struct rs_lane *lane, struct rs_op *op);
/* Cancels socket's send in flight on lane and waits until it is settled. */
void rs_lane_cancel_send(struct rs_lane *lane, struct rs_socket *socket);
/* Submits without waiting (batch limit reached, or before a kernel call). */
int rs_lane_submit(struct rs_lane *lane);
/* Processes every available CQE without blocking. */
void rs_lane_reap(struct rs_lane *lane);
/* The same, first running completions the kernel holds for the lane's
 * thread (DEFER_TASKRUN): for a look that will not wait. */
void rs_lane_reap_now(struct rs_lane *lane);
/* Submits, runs what a deferred ring holds for its thread, and reaps: one
 * enter, for work that must finish before the thread goes elsewhere. */
void rs_lane_run_task_work(struct rs_lane *lane);
/* Puts every dirty socket's queued bytes into SQEs. */
void rs_lane_prepare_sends(struct rs_lane *lane);
/* Before a call that may block outside the ring: make queued data go out. */
void rs_lane_flush_before_block(void);
void rs_lane_mark_dirty(struct rs_lane *lane, struct rs_socket *socket);
bool rs_io_uring_available(void);
void rs_lanes_atfork_prepare(void);
void rs_lanes_atfork_parent(void);
void rs_lanes_atfork_child(void);
void rs_flusher_kick(void);
/* At process exit: push every queue into the kernel, bounded in time. */
void rs_lanes_exit(void);

/* ---- sockets (sock.c) and the fd table (fdtable.c) ----------------------- */

/* RS_SOCKET_CONNECTING: a non-blocking connect in progress (RINGSTEER_CLIENT=1),
 * carried by the kernel until the first call after it is established. */
enum rs_socket_kind { RS_SOCKET_TCP, RS_SOCKET_LISTENER, RS_SOCKET_CONNECTED,
		      RS_SOCKET_CONNECTING };

#define RS_TX_IOV_MAX 64

struct rs_socket {
	int fd;
	_Atomic int refs;
	enum rs_socket_kind kind;
	pthread_mutex_t lock;      /* guards everything below */
	bool nonblocking;          /* O_NONBLOCK: kernel path once the queue is empty */
	bool has_timeouts;         /* SO_RCVTIMEO/SO_SNDTIMEO: kernel path */
	bool accept_inherits_timeouts; /* listener: accepted sockets inherit them */
	bool linger_abort;         /* SO_LINGER {1, 0}: close discards the queue */
	/* TCP_CORK as the application set it, and as the kernel has it
	 * (known after the first call, which is a real one). */
	bool cork_known;
	bool cork_wanted;
	bool cork_kernel;
	bool closed;               /* the application closed it; we finish the queue */
	bool shutdown_write_pending;
	int tx_error;              /* negative errno of a deferred send, reported once */
	struct rs_send_queue txq;
	struct rs_lane *tx_lane;   /* the lane that has it dirty or in flight */
	bool tx_in_flight;
	bool tx_listed;            /* an entry on tx_lane's dirty list exists */
	bool tx_with_receive;      /* the send in flight went with a blocking receive */
	bool write_shut;           /* shutdown(SHUT_WR) was called */
	bool broken;               /* the connection failed: sends take the kernel path */
	bool kernel_path;          /* an internal failure handed it back to the kernel */
	bool write_through;        /* stdio may write it too: a write's bytes leave before it returns */
	bool handed_off;           /* on a lane's hand-off list */
	int app_fds;               /* >0: adopted under several fd numbers, fd is our own dup */
	struct rs_socket *next_orphan; /* closed by the application, bytes left */
	struct iovec tx_iov[RS_TX_IOV_MAX];
	struct msghdr tx_msg;
	struct rs_op tx_op;

	/* Event mode (a socket in an emulated epoll set): bytes are received
	 * ahead into rx_buffer by one receive at a time, armed only while the
	 * buffer is empty, so an application that stops reading stops the
	 * receiving and TCP flow control reaches the peer. */
	bool event_mode;
	bool rx_in_flight;
	bool rx_multishot;         /* the receive in flight is multishot, into provided buffers */
	bool rx_stop_wanted;       /* the buffer is full: end the multishot receive */
	bool rx_wanted;            /* arm a receive ahead at arming_lane's next enter */
	bool arming_listed;        /* on arming_lane's arming list */
	struct rs_lane *arming_lane;
	bool rx_eof;               /* the peer's FIN (or our SHUT_RD) was received */
	bool rx_reset;             /* the connection was reset or failed */
	int rx_error;              /* negative errno the next receive reports */
	char *rx_buffer;
	size_t rx_capacity;
	size_t rx_start;           /* first unread byte */
	size_t rx_end;             /* one past the last received byte */
	struct rs_lane *rx_lane;   /* where the receive ahead is armed */
	/* The lane of the loop that waits for it: the last waiter of the
	 * epoll set it joined last (or the thread that added it, before any
	 * wait).  Receives ahead are armed there; one armed elsewhere is
	 * ended and armed again there (rs_socket_follow_loop). */
	struct rs_lane *loop_lane;
	struct rs_op rx_op;
	bool tx_blocked;           /* a send said EAGAIN: the next room is an edge */
	bool kernel_full;          /* a kernel send said EAGAIN: not writable until polled */
	bool tx_awaiting_room;     /* a ring send said EAGAIN: the next waits for POLLOUT */
	bool writable_poll_in_flight;
	bool writable_poll_wanted;
	struct rs_op writable_op;
	/* Generations for edge-triggered epoll: bumped when bytes, EOF or an
	 * error arrive (receive side), and when room appears after EAGAIN. */
	uint32_t rx_generation;
	uint32_t tx_generation;
	/* Moves whenever something rs_socket_readiness reads may have made
	 * the socket ready (bytes, EOF, an error, room, a shutdown): an epoll
	 * entry found not ready is skipped, without the lock, until it moves. */
	_Atomic uint32_t readiness_version;
	unsigned epoll_memberships;  /* emulated epoll sets it is in */
	/* The ready hints of the first epoll set it joined, and its entry's
	 * bit there: each move sets the bit, so that set's wait looks at the
	 * entries that moved instead of at every one.  Socket locked. */
	_Atomic uint64_t *epoll_hints;
	unsigned epoll_hint_index;
	/* The counters that counted it open: a socket accepted by one thread
	 * and closed by another leaves the first one's count. */
	struct rs_lane_stats *opened_stats;
	/* A listener in a reuseport group: each lane that waits for its
	 * connections gets a listener of its own (listener.c). */
	bool steerable;
	struct rs_lane_listener *lane_listeners;
	struct rs_preopened *preopened;
};

int rs_fdtable_init(void);
/* Returns the socket with a reference, or NULL. */
struct rs_socket *rs_fd_get(int fd);
/* Installs socket at fd (taking over the caller's reference); an entry left
 * over from a close the shim did not see is dropped first. */
void rs_fd_install(int fd, struct rs_socket *socket);
/* Removes and returns the entry (with the table's reference), or NULL. */
struct rs_socket *rs_fd_remove(int fd);
int rs_fdtable_size(void);
/* The shim's own descriptors, which the application's close calls pass by.
 * make_private moves fd to a high number (closing the old one) and marks
 * it; duplicate_private marks a high duplicate (or returns -errno);
 * close_private unmarks and closes; next_private gives the lowest marked
 * number in [from, last], or -1. */
int rs_fd_make_private(int fd);
int rs_fd_duplicate_private(int fd);
int rs_fd_close_private(int fd);
void rs_fd_forget_private(int fd);
bool rs_fd_is_private(int fd);
int rs_fd_next_private(int from, int last);

struct rs_socket *rs_socket_new(int fd, enum rs_socket_kind kind);
void rs_socket_ref(struct rs_socket *socket);
/* Drops state whose fd number was closed behind our back (takes a ref). */
void rs_socket_forget(struct rs_socket *socket);
void rs_socket_unref(struct rs_socket *socket);
/* Called with the socket locked when a send completes on lane; owner says
 * whether the caller owns the lane (else it is the flusher). */
void rs_socket_send_done(struct rs_socket *socket, struct rs_lane *lane, bool owner, int result);
/* Starts a send of the queue ahead of the receive prepared next, in the
 * same submission; socket locked.  Returns false if it cannot. */
bool rs_socket_start_send_with_receive(struct rs_socket *socket, struct rs_lane *lane);
/* Sends the queue with non-blocking kernel sends (flusher, exit). */
int rs_socket_push_to_kernel(struct rs_socket *socket);
/* TCP_CORK on a connected accelerated socket: 0 or negative errno. */
long rs_socket_set_cork(struct rs_socket *socket, bool on);
/* Tells the kernel the cork the application wants, if it differs; socket
 * locked.  Called before bytes of the socket reach the kernel. */
void rs_socket_sync_cork(struct rs_socket *socket);
/* Starts a send of the queue on lane; socket locked. */
void rs_socket_start_send(struct rs_socket *socket, struct rs_lane *lane);
int rs_socket_close(struct rs_socket *socket, struct rs_lane *lane);
int rs_socket_drain(struct rs_socket *socket, struct rs_lane *lane);
/* Sends what is queued now: with wait, all of it (rs_socket_drain);
 * without, what the kernel takes at once, -EAGAIN if bytes are left or in
 * flight.  Socket unlocked, lane (if any) entered. */
int rs_socket_send_queued(struct rs_socket *socket, struct rs_lane *lane, bool wait);
/* From now on every write's bytes leave before the write returns. */
void rs_socket_write_through(struct rs_socket *socket);
/* Event mode: puts the socket's pending receive ahead and writable poll into
 * SQEs on lane (called at enter time); socket locked. */
void rs_socket_arm(struct rs_socket *socket, struct rs_lane *lane);
/* Asks for a receive ahead on lane if the buffer is empty; socket locked. */
void rs_socket_want_receive(struct rs_socket *socket, struct rs_lane *lane);
/* Completions of the socket's receive ahead and writable poll; socket locked. */
void rs_socket_receive_done(struct rs_socket *socket, struct rs_lane *lane, int result,
			    unsigned cqe_flags);
void rs_socket_writable_done(struct rs_socket *socket, struct rs_lane *lane, int result);
/* Asks for a poll for room on lane (a kernel send said EAGAIN); socket locked. */
void rs_socket_want_writable(struct rs_socket *socket, struct rs_lane *lane);
/* Puts the socket in event mode (allocates its receive buffer); socket
 * locked.  -ENOMEM: it stays on the kernel's readiness. */
int rs_socket_enter_event_mode(struct rs_socket *socket);
/* The socket's readiness as epoll reports it (EPOLLIN, EPOLLOUT, ...);
 * socket locked. */
uint32_t rs_socket_readiness(struct rs_socket *socket);
/* Room in the send queue, with the kernel's hysteresis: after EAGAIN, only
 * once a third of the queue is free again; socket locked. */
static inline bool rs_socket_has_room(const struct rs_socket *socket)
{
	if (socket->tx_blocked)
		return socket->txq.bytes <= rs_config.txq_bytes - rs_config.txq_bytes / 3;
	return socket->txq.bytes < rs_config.txq_bytes;
}
/* Sets an epoll set's hint bit for the entry at index (epoll.c). */
static inline void rs_epoll_hint_bit(_Atomic uint64_t *hints, unsigned index)
{
	atomic_fetch_or_explicit(&hints[index / 64], 1ull << (index % 64), memory_order_release);
}
/* Socket locked: one writer at a time, so a plain increment suffices. */
static inline void rs_socket_readiness_moved(struct rs_socket *socket)
{
	struct rs_lane *current;

	atomic_store_explicit(&socket->readiness_version,
			      atomic_load_explicit(&socket->readiness_version, memory_order_relaxed) + 1,
			      memory_order_release);
	if (socket->epoll_hints)
		rs_epoll_hint_bit(socket->epoll_hints, socket->epoll_hint_index);
	/* Moved by a thread other than the one whose loop watches it: the
	 * loop it joined last, and the lane it still receives on. */
	current = rs_lane_current();
	if (socket->loop_lane && socket->loop_lane != current)
		rs_lane_wake(socket->loop_lane);
	if (socket->rx_lane && socket->rx_lane != current && socket->rx_lane != socket->loop_lane)
		rs_lane_wake(socket->rx_lane);
}
/* The socket's loop is now lane's (it joined a set lane waits on): its
 * receives ahead follow.  handed_over is the hand-off's side on the lane that
 * takes the socket.  Socket locked, both. */
void rs_socket_follow_loop(struct rs_socket *socket, struct rs_lane *lane);
void rs_socket_handed_over(struct rs_socket *socket, struct rs_lane *lane);
/* Event-mode sockets' buffered bytes (FIONREAD); socket locked. */
size_t rs_socket_buffered(const struct rs_socket *socket);
/* Stops a receive ahead before the socket's fd is closed. */
void rs_socket_stop_receiving(struct rs_socket *socket);
bool rs_orphans_service(void);
void rs_adopt_inherited(void);
void rs_sockets_atfork_child(void);
/* How the process image ends, for the queued bytes' last chance. */
enum rs_process_end {
	RS_END_EXIT,     /* exit(), or before posix_spawn (the image goes on) */
	RS_END_EXEC,     /* also says what received-ahead bytes exec loses */
	RS_END_EXIT_NOW, /* _exit: no allocator, as a signal handler may call it */
};
/* Queued bytes go into the kernel, for at most a second in all. */
void rs_sockets_exit(enum rs_process_end end);

/* The shim's implementations, one per intercepted call. */
#define RS_CALL(ret, name, params, args) long rs_##name params;
#define RS_CALL_VARIADIC(ret, name, params, last) long rs_##name(int fd, unsigned long request, unsigned long argument);
#include "calls.h"
#undef RS_CALL
#undef RS_CALL_VARIADIC

uint64_t rs_now_ns(void);

/* How long a readiness wait may sleep: until the deadline (timeout_ns > 0;
 * < 0 forever), and no longer than slice_ns when sliced.  Fills *wait and
 * returns it, or NULL to wait forever; *expired when the deadline passed. */
static inline struct __kernel_timespec *rs_wait_limit(long long timeout_ns, uint64_t deadline,
						       bool sliced, long long slice_ns,
						       struct __kernel_timespec *wait,
						       bool *expired)
{
	long long left = slice_ns;

	*expired = false;
	if (timeout_ns <= 0 && !sliced)
		return NULL;
	if (timeout_ns > 0) {
		uint64_t now = rs_now_ns();

		if (now >= deadline) {
			*expired = true;
			return NULL;
		}
		if (!sliced || (long long)(deadline - now) < left)
			left = (long long)(deadline - now);
	}
	wait->tv_sec = left / 1000000000ll;
	wait->tv_nsec = left % 1000000000ll;
	return wait;
}

/* A real call's result as the shim's functions return theirs: a negative
 * errno on failure. */
static inline long rs_kernel_result(long result)
{
	return result < 0 ? -errno : result;
}

/* The kernel answers EFAULT for a buffer it cannot reach; the shim would
 * crash on it instead.  The common case, a null or tiny pointer, takes the
 * kernel path, which answers it. */
static inline bool rs_bad_pointer(const void *pointer)
{
	return (uintptr_t)pointer < 65536;
}

/* Under LeakSanitizer, memory the shim maps itself holds pointers to heap
 * objects: it must be scanned (weak: absent in a normal build). */
void __lsan_register_root_region(const void *begin, size_t size) __attribute__((weak));
static inline void rs_scan_for_leaks(const void *begin, size_t size)
{
	if (__lsan_register_root_region)
		__lsan_register_root_region(begin, size);
}

/* ---- per-lane listeners (listener.c) --------------------------------------- */

/* bind: with steering on, a TCP socket joins a reuseport group, unless its
 * address is taken without one (the kernel's EADDRINUSE then stands). */
void rs_listener_before_bind(int fd, const struct sockaddr *address, socklen_t length);
/* listen: whether the listener can have per-lane listeners. */
void rs_listener_after_listen(struct rs_socket *listener);
static inline bool rs_listener_steered(const struct rs_socket *socket)
{
	return socket->kind == RS_SOCKET_LISTENER && socket->steerable;
}
/* The lane's own listener for it (opened on first use), or -1. */
int rs_listener_lane_fd(struct rs_socket *listener, struct rs_lane *lane);
/* accept4 on a steered listener: the lane's listener first, then the
 * application's own; blocking listeners wait in the ring for either. */
long rs_listener_accept(struct rs_socket *listener, struct rs_lane *lane,
			struct sockaddr *address, socklen_t *length, int flags);
/* epoll_ctl on a steered listener: the lane's listener joins the kernel set
 * with the same event, beside the application's. */
long rs_listener_epoll_ctl(struct rs_socket *listener, struct rs_lane *lane, int set_fd, int op,
			   struct epoll_event *event);
/* The application closes it: every lane's listener for it closes (their
 * queued connections move to other listeners of the group). */
void rs_listener_close_all(struct rs_socket *listener);
void rs_listeners_lane_gone(struct rs_lane *lane);
/* fork: the parent's lane listeners stay the parent's. */
void rs_listener_atfork_child(struct rs_socket *listener);
/* The lane's thread enters or leaves a wait: heartbeat and busy figure. */
void rs_listener_lane_waiting(struct rs_lane *lane);
void rs_listener_lane_running(struct rs_lane *lane);
/* Every turn of its loop, waiting or not: the thread is not stalled. */
void rs_listener_lane_turn(struct rs_lane *lane);
/* After a signal cut a blocking call short: restart it (SA_RESTART)? */
bool rs_restart_after_signal(void);

/* ---- emulated epoll (epoll.c) ------------------------------------------- */

int rs_epoll_init(void);
/* The completion of a set's poll on its kernel part. */
void rs_epoll_kernel_poll_done(struct rs_epoll *set, int result);
/* A closed socket leaves every emulated set it is in. */
void rs_epoll_forget_socket(struct rs_socket *socket);
/* A socket that finished connecting joins the shim: its registrations in
 * the kernel sets (made while it was connecting) move into the sets' own
 * lists, and it becomes RS_SOCKET_CONNECTED.  Lane entered, no lock held.
 * On failure nothing has moved. */
int rs_epoll_take_over(struct rs_socket *socket, struct rs_lane *lane);
/* An fd number closes: if it was an emulated set, its state goes. */
void rs_epoll_close(int fd);
void rs_epoll_atfork_child(void);

/* ---- connection steering (steer.c) ------------------------------------------
 *
 * A slot is one lane of one process, system-wide; a lane claims one when it
 * is created, and owns one listener per steered address it accepts on.
 * With nothing loaded (or RINGSTEER_STEER=0) every call below is harmless:
 * a claim returns a slot number with no meaning, publishing does nothing.
 */

/* A lane's own listener on an application listener's address. */
struct rs_steer_listener {
	int fd;          /* -1: none */
	unsigned group;  /* RS_STEER_MAX_GROUPS (bpf/steer.h): not steered, kernel hashing */
	unsigned slot;
};

/* Opens the pinned maps under RINGSTEER_BPF_DIR (default
 * /sys/fs/bpf/ringsteer) and maps the load.  0 when the program is usable;
 * -errno otherwise (-ENOENT: nothing loaded, -ENODEV: RINGSTEER_STEER=0).
 * Call again to re-read the environment; rs_steer_shutdown undoes it. */
int rs_steer_init(void);
void rs_steer_shutdown(void);
/* Whether lanes should get their own listeners (the program is loaded, or
 * RINGSTEER_STEER=1), and whether the program steers them. */
bool rs_steer_wanted(void);
bool rs_steer_loaded(void);
/* Where steering was asked for and the program cannot be used, one warning
 * line per process tree says how it runs: at the first listen if the
 * listeners stay shared, else at the first lane listener a lane tries to
 * open (opened: its fd or -errno), whose outcome it tells. */
void rs_steer_listening(void);
void rs_steer_without_program(int opened);
/* A steering warning that a process tree gives once (the bit is shared
 * across fork); repeats are debug lines. */
enum rs_steer_warning {
	RS_STEER_WARNED_MODE,
	RS_STEER_WARNED_NO_SLOT,
	RS_STEER_WARNED_LANE_LISTENER,
	RS_STEER_WARNED_REGISTER,
};
void rs_steer_warn_once(enum rs_steer_warning which, const char *format, ...)
	__attribute__((format(printf, 2, 3)));
/* Claims a free slot (or one whose owner process died) for a lane: its
 * index in the process and its core (-1 unknown).  Returns the slot or
 * -ENOSPC.  Release when the lane ends (after closing its listeners). */
int rs_steer_slot_claim(unsigned lane, int cpu);
void rs_steer_slot_release(unsigned slot);
/* On a TCP socket about to bind when rs_steer_wanted(): sets SO_REUSEPORT
 * so the per-lane listeners can share the address.  0 or -errno. */
int rs_steer_prepare_bind(int fd, const struct sockaddr *address, socklen_t length);
#define RS_STEER_UNREGISTERED (~0u)
/* Opens a lane's listener on the application listener's address (same
 * family, copied options, same backlog), close-on-exec, blocking, and
 * registers it in the group's slot; fills *listener.  Returns its fd or
 * -errno.  Registration failing leaves a working listener under kernel
 * hashing (listener->group == RS_STEER_MAX_GROUPS) and one warning.
 * slot RS_STEER_UNREGISTERED: open only, for rs_steer_listener_register
 * later.  The kernel lets only a socket of the same effective user join a
 * reuseport group: a worker that has dropped root gets -EADDRINUSE here,
 * so open its listeners before (the process that calls listen(), as root),
 * and let the worker register one (that works after setuid). */
int rs_steer_listener_open(int application_listener, unsigned slot,
			   struct rs_steer_listener *listener);
/* Registers the application's own listener as its group's fallback (the
 * program's choice when no lane listener is live) and attaches the program
 * to the group: 0 or -errno (-ENODEV: nothing loaded). */
int rs_steer_fallback_register(int application_listener);
/* Puts an open, unregistered listener in the group's slot: 0 or -errno
 * (-ENODEV: nothing loaded). */
int rs_steer_listener_register(struct rs_steer_listener *listener, unsigned slot);
/* Takes it out of the choice and closes it (REAL(close)); connections in
 * its queue move to the group's other listeners. */
void rs_steer_listener_close(struct rs_steer_listener *listener);
/* The lane's figures, plain stores: open connections, busy per mille
 * (time outside its wait, smoothed), and a heartbeat (now). */
void rs_steer_publish(unsigned slot, unsigned open, unsigned busy_permille);
void rs_steer_heartbeat(unsigned slot);
/* The lane's thread is in its wait: idle, never stalled. */
void rs_steer_waiting(unsigned slot);
/* After each accept on listener: one fewer pending, one more open. */
void rs_steer_accepted(const struct rs_steer_listener *listener);

#endif
