// SPDX-License-Identifier: MIT
/*
 * Unit tests of the fd table (preload/fdtable.c) and the reference counting
 * of socket objects (rs_socket_new, rs_socket_ref, rs_socket_unref).
 *
 * The table maps a real fd number to the shim's state for it, and a wrong
 * answer there means one connection's bytes on another connection.  The
 * tests cover the single-threaded rules (a lookup returns a referenced
 * socket, removal and replacement drop the table's reference, numbers out of
 * range are harmless) and the one the lock-free lookup exists for: a socket
 * object recycled for another fd is never returned for the old number, also
 * while another thread installs and removes sockets concurrently.
 *
 * The fd numbers used for sockets are never opened: the table does not
 * touch the kernel.  The shim's own descriptors are real (/dev/null): they
 * move to high numbers, and the application's close, close_range and
 * closefrom must pass them by.
 */
#include <fcntl.h>
#include <limits.h>
#include <linux/close_range.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "ringsteer.h"

/* Far above anything this process opens, well below the table's minimum. */
#define TEST_FD 5000

static int refs(struct rs_socket *socket)
{
	return atomic_load(&socket->refs);
}

static int group_setup(void **state)
{
	rs_init();
	if (rs_fdtable_init() < 0) {
		print_message("rs_fdtable_init failed\n");
		return -1;
	}
	return 0;
}

/* ---- sizing ------------------------------------------------------------------- */

static void assert_table_empty(void)
{
	int size = rs_fdtable_size();

	for (int fd = 0; fd < size; fd += 997)
		assert_null(rs_fd_get(fd));
	assert_null(rs_fd_get(size - 1));
}

/* At least 65536 entries, as many as the hard limit allows fds, at most
 * 2^24 (16M entries of 8 bytes, reserved but touched only where used). */
static int expected_size(const struct rlimit *limit)
{
	if (limit->rlim_max == RLIM_INFINITY || limit->rlim_max >= (1 << 24))
		return 1 << 24;
	if (limit->rlim_max <= 65536)
		return 65536;
	return (int)limit->rlim_max;
}

static void test_init_size(void **state)
{
	struct rlimit limit, raised;
	int size = rs_fdtable_size();

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &limit), 0);
	assert_int_equal(size, expected_size(&limit));
	assert_table_empty();

	/* A hard limit above the minimum sizes the table to it, so every fd
	 * the process can open has an entry.  Needs the privilege to raise
	 * the hard limit; otherwise this part is not checked. */
	raised = limit;
	raised.rlim_max = 200000;
	if (raised.rlim_cur > raised.rlim_max)
		raised.rlim_cur = raised.rlim_max;
	if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < 200000 &&
	    setrlimit(RLIMIT_NOFILE, &raised) == 0) {
		assert_int_equal(rs_fdtable_init(), 0);
		assert_int_equal(rs_fdtable_size(), expected_size(&raised));
		assert_table_empty();
		assert_int_equal(setrlimit(RLIMIT_NOFILE, &limit), 0);
	} else if (limit.rlim_max <= 65536) {
		print_message("note: cannot raise the hard RLIMIT_NOFILE (%llu) past 65536: only the minimum size checked\n",
			      (unsigned long long)limit.rlim_max);
	}
	assert_int_equal(rs_fdtable_init(), 0);
	assert_true(rs_fdtable_size() >= 65536);
}

/* ---- install, get, remove ----------------------------------------------------- */

static void test_install_then_get(void **state)
{
	struct rs_socket *socket = rs_socket_new(TEST_FD, RS_SOCKET_CONNECTED);
	struct rs_socket *first, *second;

	assert_non_null(socket);
	assert_int_equal(refs(socket), 1);
	assert_int_equal(socket->fd, TEST_FD);
	assert_int_equal(socket->kind, RS_SOCKET_CONNECTED);
	assert_int_equal(socket->txq.bytes, 0);

	rs_fd_install(TEST_FD, socket);
	/* The table took over the creator's reference. */
	assert_int_equal(refs(socket), 1);

	first = rs_fd_get(TEST_FD);
	assert_ptr_equal(first, socket);
	assert_int_equal(refs(socket), 2);
	second = rs_fd_get(TEST_FD);
	assert_ptr_equal(second, socket);
	assert_int_equal(refs(socket), 3);
	rs_socket_unref(second);
	rs_socket_unref(first);
	assert_int_equal(refs(socket), 1);

	/* Neighbours are unaffected. */
	assert_null(rs_fd_get(TEST_FD - 1));
	assert_null(rs_fd_get(TEST_FD + 1));

	assert_ptr_equal(rs_fd_remove(TEST_FD), socket);
	rs_socket_unref(socket);
}

static void test_remove_then_get(void **state)
{
	struct rs_socket *socket = rs_socket_new(TEST_FD, RS_SOCKET_LISTENER);
	struct rs_socket *removed;

	assert_non_null(socket);
	rs_fd_install(TEST_FD, socket);
	removed = rs_fd_remove(TEST_FD);
	assert_ptr_equal(removed, socket);
	/* The caller now holds the table's reference. */
	assert_int_equal(refs(socket), 1);
	assert_null(rs_fd_get(TEST_FD));
	assert_null(rs_fd_remove(TEST_FD));
	/* A get that failed took no reference. */
	assert_int_equal(refs(socket), 1);
	rs_socket_unref(removed);
	assert_int_equal(refs(socket), 0);
	assert_int_equal(socket->fd, -1);
	assert_null(rs_fd_get(TEST_FD));
}

/* Installing where an entry is left (a close the shim did not see) drops
 * the table's reference to the stale socket. */
static void test_install_over_stale_entry(void **state)
{
	struct rs_socket *stale = rs_socket_new(TEST_FD, RS_SOCKET_CONNECTED);
	struct rs_socket *fresh = rs_socket_new(TEST_FD, RS_SOCKET_CONNECTED);
	struct rs_socket *got, *reused;

	assert_non_null(stale);
	assert_non_null(fresh);
	assert_ptr_not_equal(stale, fresh);
	rs_socket_ref(stale); /* the test's own hold */
	rs_fd_install(TEST_FD, stale);
	assert_int_equal(refs(stale), 2);

	rs_fd_install(TEST_FD, fresh);
	assert_int_equal(refs(stale), 1);
	assert_int_equal(refs(fresh), 1);
	got = rs_fd_get(TEST_FD);
	assert_ptr_equal(got, fresh);
	rs_socket_unref(got);
	rs_socket_unref(stale);
	assert_int_equal(refs(stale), 0);

	/* When the table held the only reference, the stale socket is
	 * released for reuse: the next new socket is that object. */
	stale = rs_socket_new(TEST_FD + 1, RS_SOCKET_CONNECTED);
	assert_non_null(stale);
	rs_fd_install(TEST_FD + 1, stale);
	fresh = rs_socket_new(TEST_FD + 1, RS_SOCKET_CONNECTED);
	assert_non_null(fresh);
	rs_fd_install(TEST_FD + 1, fresh);
	assert_int_equal(refs(stale), 0);
	reused = rs_socket_new(TEST_FD + 2, RS_SOCKET_CONNECTED);
	assert_ptr_equal(reused, stale);
	rs_socket_unref(reused);

	rs_socket_unref(rs_fd_remove(TEST_FD));
	rs_socket_unref(rs_fd_remove(TEST_FD + 1));
	assert_null(rs_fd_get(TEST_FD));
	assert_null(rs_fd_get(TEST_FD + 1));
}

static void test_out_of_range(void **state)
{
	const int size = rs_fdtable_size();
	const int numbers[] = { -1, -2, INT_MIN, size, size + 1, INT_MAX };

	for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
		struct rs_socket *socket = rs_socket_new(numbers[i], RS_SOCKET_CONNECTED);

		assert_null(rs_fd_get(numbers[i]));
		assert_null(rs_fd_remove(numbers[i]));
		/* Nowhere to put it: install drops the reference it was
		 * given, and the table stays empty. */
		assert_non_null(socket);
		rs_socket_ref(socket);
		rs_fd_install(numbers[i], socket);
		assert_int_equal(refs(socket), 1);
		assert_null(rs_fd_get(numbers[i]));
		rs_socket_unref(socket);
	}
	/* The last valid number works. */
	{
		struct rs_socket *socket = rs_socket_new(size - 1, RS_SOCKET_CONNECTED);
		struct rs_socket *got;

		rs_fd_install(size - 1, socket);
		got = rs_fd_get(size - 1);
		assert_ptr_equal(got, socket);
		rs_socket_unref(got);
		rs_socket_unref(rs_fd_remove(size - 1));
	}
	assert_table_empty();
}

/* ---- recycling ---------------------------------------------------------------- */

static void test_recycled_socket_after_remove(void **state)
{
	struct rs_socket *old = rs_socket_new(TEST_FD, RS_SOCKET_CONNECTED);
	struct rs_socket *recycled, *got;

	rs_fd_install(TEST_FD, old);
	rs_socket_unref(rs_fd_remove(TEST_FD));
	recycled = rs_socket_new(TEST_FD + 7, RS_SOCKET_CONNECTED);
	/* The scenario needs the same memory back (the free list is LIFO). */
	assert_ptr_equal(recycled, old);
	rs_fd_install(TEST_FD + 7, recycled);

	assert_null(rs_fd_get(TEST_FD));
	got = rs_fd_get(TEST_FD + 7);
	assert_ptr_equal(got, recycled);
	assert_int_equal(got->fd, TEST_FD + 7);
	rs_socket_unref(got);
	rs_socket_unref(rs_fd_remove(TEST_FD + 7));
}

/* The race the lock-free lookup guards against, made deterministic: the
 * table still points to an object that was released and then reused for
 * another fd (as a lookup that loaded the pointer just before a close would
 * see it).  Neither the dead object nor its new life may be returned. */
static void test_recycled_socket_behind_stale_pointer(void **state)
{
	struct rs_socket *old = rs_socket_new(TEST_FD, RS_SOCKET_CONNECTED);
	struct rs_socket *recycled, *got;

	rs_fd_install(TEST_FD, old);
	/* Drop the table's reference without removing the entry. */
	rs_socket_unref(old);
	assert_int_equal(refs(old), 0);
	assert_null(rs_fd_get(TEST_FD));
	assert_int_equal(refs(old), 0);

	recycled = rs_socket_new(TEST_FD + 9, RS_SOCKET_CONNECTED);
	assert_ptr_equal(recycled, old);
	rs_fd_install(TEST_FD + 9, recycled);

	/* Live again, but for another fd. */
	assert_null(rs_fd_get(TEST_FD));
	assert_int_equal(refs(recycled), 1);
	got = rs_fd_get(TEST_FD + 9);
	assert_ptr_equal(got, recycled);
	rs_socket_unref(got);

	/* Clean up: the stale entry owns no reference. */
	assert_ptr_equal(rs_fd_remove(TEST_FD), old);
	rs_socket_unref(rs_fd_remove(TEST_FD + 9));
	assert_table_empty();
}

/* ---- concurrency -------------------------------------------------------------- */

#define CHURN_ROUNDS  200000
#define READER_ROUNDS 20000000
#define READERS       2

static _Atomic bool churn_done;
static _Atomic int readers_ready;
static _Atomic unsigned long wrong_socket, hits;

/* Installs and removes sockets at TEST_FD, and at a neighbour so objects
 * move between the two numbers through the free list.  Each socket stays
 * installed for a few lookups of its own, so that the readers find sockets
 * often, and often just as they are removed. */
static void *churn(void *argument)
{
	/* Bounded: the readers are threads that have started, or soon will. */
	for (long wait = 0; atomic_load(&readers_ready) < READERS && wait < 100000000; wait++)
		;
	for (int round = 0; round < CHURN_ROUNDS; round++) {
		int fd = TEST_FD + (round & 1);
		struct rs_socket *socket = rs_socket_new(fd, RS_SOCKET_CONNECTED);

		if (!socket)
			break;
		rs_fd_install(fd, socket);
		for (int i = 0; i < 4; i++) {
			struct rs_socket *own = rs_fd_get(fd);

			if (own != socket)
				atomic_fetch_add(&wrong_socket, 1);
			if (own)
				rs_socket_unref(own);
		}
		rs_socket_unref(rs_fd_remove(fd));
	}
	atomic_store(&churn_done, true);
	return NULL;
}

static void *look_up(void *argument)
{
	atomic_fetch_add(&readers_ready, 1);
	for (int round = 0; round < READER_ROUNDS && !atomic_load(&churn_done); round++) {
		struct rs_socket *socket = rs_fd_get(TEST_FD);

		if (!socket)
			continue;
		atomic_fetch_add(&hits, 1);
		/* Referenced, so it cannot be recycled under us: it must be
		 * the socket of this fd, and alive. */
		if (socket->fd != TEST_FD || atomic_load(&socket->refs) < 1)
			atomic_fetch_add(&wrong_socket, 1);
		rs_socket_unref(socket);
	}
	return NULL;
}

static void test_concurrent_lookups(void **state)
{
	pthread_t writer, readers[READERS];

	atomic_store(&churn_done, false);
	atomic_store(&wrong_socket, 0);
	atomic_store(&hits, 0);
	atomic_store(&readers_ready, 0);
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_create(&readers[i], NULL, look_up, NULL), 0);
	assert_int_equal(pthread_create(&writer, NULL, churn, NULL), 0);
	assert_int_equal(pthread_join(writer, NULL), 0);
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_join(readers[i], NULL), 0);
	print_message("concurrent lookups: %lu found a socket\n", atomic_load(&hits));
	assert_int_equal(atomic_load(&wrong_socket), 0);
	assert_null(rs_fd_get(TEST_FD));
	assert_null(rs_fd_get(TEST_FD + 1));
}

/* ---- the shim's own descriptors ------------------------------------------------- */

static int open_null(void)
{
	int fd = open("/dev/null", O_RDONLY);

	assert_true(fd >= 0);
	return fd;
}

static bool is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/* Moved high, close-on-exec, marked; the old number is free again. */
static void test_private_moves_high(void **state)
{
	struct rlimit limit;
	int low = open_null(), moved;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &limit), 0);
	moved = rs_fd_make_private(low);
	assert_true(moved > low);
	if (limit.rlim_cur >= 2048)
		assert_true(moved >= 1024);
	assert_false(is_open(low));
	assert_true(fcntl(moved, F_GETFD) & FD_CLOEXEC);
	assert_true(rs_fd_is_private(moved));
	assert_false(rs_fd_is_private(low));
	assert_int_equal(open_null(), low); /* the number the application gets */
	close(low);
	assert_int_equal(rs_fd_next_private(0, INT_MAX), moved);
	assert_int_equal(rs_fd_close_private(moved), 0);
	assert_false(rs_fd_is_private(moved));
	assert_false(is_open(moved));
	assert_int_equal(rs_fd_next_private(0, INT_MAX), -1);
}

static void test_next_private_bounds(void **state)
{
	int first = rs_fd_make_private(open_null());
	int second = rs_fd_duplicate_private(first);
	int third = rs_fd_duplicate_private(first);

	assert_true(first < second && second < third);
	assert_int_equal(rs_fd_next_private(0, INT_MAX), first);
	assert_int_equal(rs_fd_next_private(first, first), first);
	assert_int_equal(rs_fd_next_private(first + 1, INT_MAX), second);
	assert_int_equal(rs_fd_next_private(second + 1, third), third);
	assert_int_equal(rs_fd_next_private(0, first - 1), -1);
	assert_int_equal(rs_fd_next_private(third + 1, INT_MAX), -1);
	assert_int_equal(rs_fd_next_private(-1, INT_MAX), -1);
	assert_false(rs_fd_is_private(-1));
	assert_false(rs_fd_is_private(INT_MAX));
	rs_fd_close_private(second);
	assert_int_equal(rs_fd_next_private(first + 1, INT_MAX), third);
	rs_fd_close_private(first);
	rs_fd_close_private(third);
	assert_int_equal(rs_fd_next_private(0, INT_MAX), -1);
}

/* close says EBADF, as for a number never opened; close_range and
 * closefrom close the application's numbers around it. */
static void test_application_closes_pass_private_by(void **state)
{
	int own = rs_fd_make_private(open_null());
	int below = fcntl(own, F_DUPFD, own - 5 > 3 ? own - 5 : 3);
	int above = fcntl(own, F_DUPFD, own + 1);

	assert_true(below < own && above > own);
	assert_int_equal(rs_close(own), -EBADF);
	assert_true(is_open(own));
	assert_int_equal(rs_close_range((unsigned)own, (unsigned)own, 0), 0);
	assert_true(is_open(own));
	assert_int_equal(rs_close_range((unsigned)below, ~0U, CLOSE_RANGE_CLOEXEC), 0);
	assert_true(fcntl(below, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(rs_close_range((unsigned)below, ~0U, 0), 0);
	assert_false(is_open(below));
	assert_false(is_open(above));
	assert_true(is_open(own));
	/* What the kernel refuses closes nothing. */
	below = fcntl(own, F_DUPFD, 3);
	assert_int_equal(rs_close_range((unsigned)below, ~0U, 0x80), -EINVAL);
	assert_true(is_open(below));
	assert_int_equal(rs_closefrom(below), 0);
	assert_false(is_open(below));
	assert_true(is_open(own));
	rs_fd_close_private(own);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_size),
		cmocka_unit_test(test_install_then_get),
		cmocka_unit_test(test_remove_then_get),
		cmocka_unit_test(test_install_over_stale_entry),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_recycled_socket_after_remove),
		cmocka_unit_test(test_recycled_socket_behind_stale_pointer),
		cmocka_unit_test(test_concurrent_lookups),
		cmocka_unit_test(test_private_moves_high),
		cmocka_unit_test(test_next_private_bounds),
		cmocka_unit_test(test_application_closes_pass_private_by),
	};

	return cmocka_run_group_tests_name("fdtable", tests, group_setup, NULL);
}
