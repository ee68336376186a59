// SPDX-License-Identifier: MIT
/*
 * Unit tests of a socket's send queue (preload/sendqueue.c).
 *
 * The queue holds the bytes write() accepted that the kernel has not taken
 * yet, so any reordering, loss or duplication here is data corruption on the
 * wire.  Besides the targeted cases (packing, chunk boundaries, the append
 * limit, peek's iovec bound, consume in all its shapes), a model test drives
 * thousands of random operations against a plain byte array and compares
 * after each one.  Every test ends with the queue cleared, so a sanitizer
 * build also checks that no chunk leaks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ringsteer.h"

/* A byte that depends on its position in the stream, so that any reordered,
 * dropped or repeated byte changes what the comparison sees. */
static unsigned char stream_byte(size_t position)
{
	return (unsigned char)((position * 131 + (position >> 8) * 7 + 3) & 0xff);
}

static void fill_stream(unsigned char *buffer, size_t position, size_t length)
{
	for (size_t i = 0; i < length; i++)
		buffer[i] = stream_byte(position + i);
}

/* Appends length stream bytes starting at position as one iovec; checks the
 * whole of it was taken. */
static void append_stream(struct rs_send_queue *queue, size_t position, size_t length)
{
	unsigned char *buffer = malloc(length ? length : 1);
	struct iovec iov = { .iov_base = buffer, .iov_len = length };

	assert_non_null(buffer);
	fill_stream(buffer, position, length);
	assert_int_equal(rs_send_queue_append(queue, &iov, 1, SIZE_MAX), (ssize_t)length);
	free(buffer);
}

/* Checks the structure: chunks non-empty and within capacity, tail last,
 * bytes the sum of the chunks, and an empty queue holding no chunk. */
static void check_invariants(const struct rs_send_queue *queue)
{
	size_t total = 0;
	const struct rs_chunk *last = NULL;

	for (const struct rs_chunk *chunk = queue->head; chunk; chunk = chunk->next) {
		assert_true(chunk->start <= chunk->end);
		assert_true(chunk->end <= chunk->capacity);
		assert_true(chunk->start < chunk->end);
		total += chunk->end - chunk->start;
		last = chunk;
	}
	assert_ptr_equal(queue->tail, last);
	assert_int_equal(queue->bytes, total);
	if (!queue->bytes) {
		assert_null(queue->head);
		assert_null(queue->tail);
	}
}

/* Checks that the queue holds exactly the stream bytes from position on,
 * through a peek that sees every chunk. */
static void check_contents(const struct rs_send_queue *queue, size_t position)
{
	struct iovec iov[1024];
	int count = rs_send_queue_peek(queue, iov, 1024);
	size_t seen = 0;

	assert_true(count < 1024);
	for (int i = 0; i < count; i++) {
		const unsigned char *bytes = iov[i].iov_base;

		assert_true(iov[i].iov_len > 0);
		for (size_t j = 0; j < iov[i].iov_len; j++) {
			if (bytes[j] != stream_byte(position + seen + j))
				fail_msg("byte %zu of the queue (iovec %d, offset %zu) is 0x%02x, expected 0x%02x",
					 seen + j, i, j, bytes[j], stream_byte(position + seen + j));
		}
		seen += iov[i].iov_len;
	}
	assert_int_equal(seen, queue->bytes);
	check_invariants(queue);
}

static int count_chunks(const struct rs_send_queue *queue)
{
	int count = 0;

	for (const struct rs_chunk *chunk = queue->head; chunk; chunk = chunk->next)
		count++;
	return count;
}

/* ---- basics ------------------------------------------------------------------ */

static void test_empty_queue(void **state)
{
	struct rs_send_queue queue;
	struct iovec iov[4];

	rs_send_queue_init(&queue);
	check_invariants(&queue);
	assert_int_equal(rs_send_queue_peek(&queue, iov, 4), 0);
	rs_send_queue_consume(&queue, 0);
	rs_send_queue_consume(&queue, 100);
	check_invariants(&queue);
	assert_int_equal(queue.bytes, 0);
	rs_send_queue_clear(&queue);
	check_invariants(&queue);
}

static void test_zero_length_appends(void **state)
{
	struct rs_send_queue queue;
	char byte = 'x';
	struct iovec empty[3] = { { &byte, 0 }, { NULL, 0 }, { &byte, 0 } };

	rs_send_queue_init(&queue);
	assert_int_equal(rs_send_queue_append(&queue, empty, 3, SIZE_MAX), 0);
	assert_int_equal(rs_send_queue_append(&queue, empty, 0, SIZE_MAX), 0);
	/* No chunk for nothing: an idle connection keeps no queue memory. */
	assert_null(queue.head);
	check_invariants(&queue);
	rs_send_queue_clear(&queue);
}

static void test_small_appends_packed(void **state)
{
	struct rs_send_queue queue;
	struct iovec iov[2];

	rs_send_queue_init(&queue);
	for (size_t i = 0, position = 0; i < 100; i++) {
		append_stream(&queue, position, i % 7 + 1);
		position += i % 7 + 1;
	}
	/* 100 small writes leave in one iovec, as one send. */
	assert_int_equal(count_chunks(&queue), 1);
	assert_int_equal(rs_send_queue_peek(&queue, iov, 2), 1);
	assert_int_equal(iov[0].iov_len, queue.bytes);
	check_contents(&queue, 0);
	rs_send_queue_clear(&queue);
}

static void test_one_call_several_iovecs(void **state)
{
	struct rs_send_queue queue;
	unsigned char data[300];
	struct iovec iov[4] = {
		{ data, 100 }, { data + 100, 0 }, { data + 100, 150 }, { data + 250, 50 },
	};

	fill_stream(data, 0, sizeof(data));
	rs_send_queue_init(&queue);
	assert_int_equal(rs_send_queue_append(&queue, iov, 4, SIZE_MAX), 300);
	assert_int_equal(count_chunks(&queue), 1);
	check_contents(&queue, 0);
	rs_send_queue_clear(&queue);
}

/* ---- chunk boundaries -------------------------------------------------------- */

static void test_order_across_chunk_boundaries(void **state)
{
	struct rs_send_queue queue;
	struct iovec iov[8];
	size_t position = 0;

	rs_send_queue_init(&queue);
	/* Fill the first chunk but 384 bytes, then cross into a second. */
	append_stream(&queue, position, RS_CHUNK_SIZE - 384);
	position += RS_CHUNK_SIZE - 384;
	append_stream(&queue, position, 1000);
	position += 1000;
	assert_int_equal(count_chunks(&queue), 2);
	assert_int_equal(rs_send_queue_peek(&queue, iov, 8), 2);
	/* The first chunk was filled to the brim before a new one started. */
	assert_int_equal(iov[0].iov_len, RS_CHUNK_SIZE);
	assert_int_equal(iov[1].iov_len, 1000 - 384);
	check_contents(&queue, 0);

	/* Exactly to the end of a chunk, then one more byte. */
	append_stream(&queue, position, RS_CHUNK_SIZE - (1000 - 384));
	position += RS_CHUNK_SIZE - (1000 - 384);
	assert_int_equal(count_chunks(&queue), 2);
	append_stream(&queue, position, 1);
	position += 1;
	assert_int_equal(count_chunks(&queue), 3);
	check_contents(&queue, 0);

	/* One append larger than several chunks. */
	append_stream(&queue, position, 5 * RS_CHUNK_SIZE + 17);
	position += 5 * RS_CHUNK_SIZE + 17;
	assert_int_equal(queue.bytes, position);
	check_contents(&queue, 0);
	rs_send_queue_clear(&queue);
}

static void test_iovecs_spanning_chunks(void **state)
{
	enum { LENGTH = 3 * RS_CHUNK_SIZE + 999 };
	unsigned char *data = malloc(LENGTH);
	struct iovec iov[5];
	struct rs_send_queue queue;

	assert_non_null(data);
	fill_stream(data, 0, LENGTH);
	iov[0] = (struct iovec){ data, 10 };
	iov[1] = (struct iovec){ data + 10, RS_CHUNK_SIZE };
	iov[2] = (struct iovec){ data + 10 + RS_CHUNK_SIZE, 1 };
	iov[3] = (struct iovec){ data + 11 + RS_CHUNK_SIZE, 2 * RS_CHUNK_SIZE };
	iov[4] = (struct iovec){ data + 11 + 3 * RS_CHUNK_SIZE, LENGTH - 11 - 3 * RS_CHUNK_SIZE };
	rs_send_queue_init(&queue);
	assert_int_equal(rs_send_queue_append(&queue, iov, 5, SIZE_MAX), LENGTH);
	check_contents(&queue, 0);
	rs_send_queue_clear(&queue);
	free(data);
}

/* ---- the limit ----------------------------------------------------------------- */

static void test_limit_honoured(void **state)
{
	struct rs_send_queue queue;
	unsigned char data[1000];
	struct iovec iov[3] = { { data, 300 }, { data + 300, 300 }, { data + 600, 400 } };

	fill_stream(data, 0, sizeof(data));
	rs_send_queue_init(&queue);

	assert_int_equal(rs_send_queue_append(&queue, iov, 3, 0), 0);
	assert_null(queue.head);

	/* The limit falls inside the second iovec. */
	assert_int_equal(rs_send_queue_append(&queue, iov, 3, 450), 450);
	assert_int_equal(queue.bytes, 450);
	check_contents(&queue, 0);

	/* Exactly at an iovec's end. */
	struct iovec rest[2] = { { data + 450, 150 }, { data + 600, 400 } };
	assert_int_equal(rs_send_queue_append(&queue, rest, 2, 150), 150);
	assert_int_equal(queue.bytes, 600);
	check_contents(&queue, 0);

	/* A limit above what is given takes it all. */
	assert_int_equal(rs_send_queue_append(&queue, &rest[1], 1, 100000), 400);
	assert_int_equal(queue.bytes, 1000);
	check_contents(&queue, 0);

	/* A limit across a chunk boundary. */
	rs_send_queue_clear(&queue);
	append_stream(&queue, 0, RS_CHUNK_SIZE - 10);
	{
		unsigned char more[100];
		struct iovec one = { more, sizeof(more) };

		fill_stream(more, RS_CHUNK_SIZE - 10, sizeof(more));
		assert_int_equal(rs_send_queue_append(&queue, &one, 1, 25), 25);
	}
	assert_int_equal(queue.bytes, RS_CHUNK_SIZE + 15);
	check_contents(&queue, 0);
	rs_send_queue_clear(&queue);
}

/* ---- peek ------------------------------------------------------------------------ */

static void test_peek_at_most_max(void **state)
{
	struct rs_send_queue queue;
	struct iovec iov[8];
	size_t position = 0;

	rs_send_queue_init(&queue);
	for (int i = 0; i < 5; i++) {
		append_stream(&queue, position, RS_CHUNK_SIZE);
		position += RS_CHUNK_SIZE;
	}
	assert_int_equal(count_chunks(&queue), 5);

	memset(iov, 0, sizeof(iov));
	assert_int_equal(rs_send_queue_peek(&queue, iov, 0), 0);
	assert_int_equal(rs_send_queue_peek(&queue, iov, 1), 1);
	assert_ptr_equal(iov[0].iov_base, queue.head->data);
	/* Nothing written past max. */
	assert_null(iov[1].iov_base);

	assert_int_equal(rs_send_queue_peek(&queue, iov, 3), 3);
	for (int i = 0; i < 3; i++) {
		const unsigned char *bytes = iov[i].iov_base;

		assert_int_equal(iov[i].iov_len, RS_CHUNK_SIZE);
		assert_int_equal(bytes[0], stream_byte((size_t)i * RS_CHUNK_SIZE));
	}
	assert_null(iov[3].iov_base);
	assert_int_equal(rs_send_queue_peek(&queue, iov, 8), 5);
	/* Peek does not consume. */
	assert_int_equal(queue.bytes, 5 * RS_CHUNK_SIZE);
	check_contents(&queue, 0);
	rs_send_queue_clear(&queue);
}

/* ---- consume -------------------------------------------------------------------- */

static void test_partial_consume(void **state)
{
	struct rs_send_queue queue;
	struct iovec iov[2];

	rs_send_queue_init(&queue);
	append_stream(&queue, 0, 100);
	rs_send_queue_consume(&queue, 30);
	assert_int_equal(queue.bytes, 70);
	assert_int_equal(rs_send_queue_peek(&queue, iov, 2), 1);
	assert_int_equal(iov[0].iov_len, 70);
	check_contents(&queue, 30);

	/* Appending after a partial consume continues the same chunk. */
	append_stream(&queue, 100, 50);
	assert_int_equal(count_chunks(&queue), 1);
	check_contents(&queue, 30);

	rs_send_queue_consume(&queue, 0);
	check_contents(&queue, 30);
	rs_send_queue_consume(&queue, 1);
	check_contents(&queue, 31);
	rs_send_queue_clear(&queue);
}

static void test_consume_across_chunks(void **state)
{
	struct rs_send_queue queue;
	struct iovec iov[8];

	rs_send_queue_init(&queue);
	append_stream(&queue, 0, 3 * RS_CHUNK_SIZE);
	/* however the chunks are laid out, consume by positions in the stream */
	rs_send_queue_consume(&queue, RS_CHUNK_SIZE + 10);
	assert_int_equal(queue.bytes, 2 * RS_CHUNK_SIZE - 10);
	check_contents(&queue, RS_CHUNK_SIZE + 10);

	rs_send_queue_clear(&queue);
	for (int i = 0; i < 4; i++)
		append_stream(&queue, (size_t)i * RS_CHUNK_SIZE, RS_CHUNK_SIZE);
	assert_int_equal(count_chunks(&queue), 4);
	/* Exactly one chunk: it is freed, the next one is untouched. */
	rs_send_queue_consume(&queue, RS_CHUNK_SIZE);
	assert_int_equal(count_chunks(&queue), 3);
	assert_int_equal(queue.head->start, 0);
	check_contents(&queue, RS_CHUNK_SIZE);
	/* Two and a half chunks. */
	rs_send_queue_consume(&queue, 2 * RS_CHUNK_SIZE + RS_CHUNK_SIZE / 2);
	assert_int_equal(count_chunks(&queue), 1);
	assert_int_equal(rs_send_queue_peek(&queue, iov, 8), 1);
	check_contents(&queue, 3 * RS_CHUNK_SIZE + RS_CHUNK_SIZE / 2);
	rs_send_queue_clear(&queue);
}

static void test_consume_everything(void **state)
{
	struct rs_send_queue queue;

	rs_send_queue_init(&queue);
	append_stream(&queue, 0, 2 * RS_CHUNK_SIZE + 5);
	rs_send_queue_consume(&queue, 2 * RS_CHUNK_SIZE + 5);
	/* An emptied queue frees its chunks, the tail too. */
	assert_int_equal(queue.bytes, 0);
	check_invariants(&queue);

	/* More than queued: clamps to what is there. */
	append_stream(&queue, 0, 100);
	rs_send_queue_consume(&queue, 1000);
	assert_int_equal(queue.bytes, 0);
	check_invariants(&queue);
	append_stream(&queue, 0, RS_CHUNK_SIZE + 1);
	rs_send_queue_consume(&queue, SIZE_MAX);
	assert_int_equal(queue.bytes, 0);
	check_invariants(&queue);

	/* And the queue works afterwards. */
	append_stream(&queue, 500, 200);
	check_contents(&queue, 500);
	rs_send_queue_clear(&queue);
}

static void test_clear(void **state)
{
	struct rs_send_queue queue;

	rs_send_queue_init(&queue);
	append_stream(&queue, 0, 4 * RS_CHUNK_SIZE + 3);
	rs_send_queue_consume(&queue, 7);
	rs_send_queue_clear(&queue);
	assert_int_equal(queue.bytes, 0);
	check_invariants(&queue);
	rs_send_queue_clear(&queue);
	append_stream(&queue, 9, 9);
	check_contents(&queue, 9);
	rs_send_queue_clear(&queue);
}

/* ---- the model test ------------------------------------------------------------ */

static uint64_t random_state;

static uint64_t next_random(void)
{
	/* xorshift64*: the same sequence on every machine and C library. */
	random_state ^= random_state >> 12;
	random_state ^= random_state << 25;
	random_state ^= random_state >> 27;
	return random_state * 2685821657736338717ull;
}

static size_t random_below(size_t bound)
{
	return bound ? (size_t)(next_random() % bound) : 0;
}

/* Lengths that favour the interesting sizes: tiny writes, a chunk's size
 * and its neighbours, and now and then several chunks. */
static size_t random_length(void)
{
	switch (random_below(8)) {
	case 0:
		return 0;
	case 1:
	case 2:
		return 1 + random_below(16);
	case 3:
		return 1 + random_below(1500);
	case 4:
		return RS_CHUNK_SIZE - 2 + random_below(5);
	case 5:
		return random_below(3 * RS_CHUNK_SIZE);
	default:
		return random_below(8000);
	}
}

#define MODEL_OPERATIONS 6000
#define MODEL_MAX_BYTES  (256 * 1024)

static void test_random_model(void **state)
{
	/* The model: the stream positions [model_start, model_end) are queued. */
	size_t model_start = 0, model_end = 0;
	unsigned char *scratch = malloc(4 * 3 * RS_CHUNK_SIZE);
	struct rs_send_queue queue;
	unsigned long appends = 0, consumes = 0, peeks = 0;

	assert_non_null(scratch);
	random_state = 0x5eed0f5e11d0c0deull;
	rs_send_queue_init(&queue);
	for (int operation = 0; operation < MODEL_OPERATIONS; operation++) {
		size_t choice = random_below(100);

		if (choice < 45 && model_end - model_start < MODEL_MAX_BYTES) {
			/* Append 1 to 4 iovecs out of one stream piece, with a
			 * limit that sometimes cuts it short. */
			struct iovec iov[4];
			int count = 1 + (int)random_below(4);
			size_t total = 0, limit, expected;
			ssize_t appended;

			for (int i = 0; i < count; i++) {
				size_t length = random_length();

				if (length > 3 * RS_CHUNK_SIZE)
					length = 3 * RS_CHUNK_SIZE;
				iov[i].iov_base = scratch + total;
				iov[i].iov_len = length;
				total += length;
			}
			fill_stream(scratch, model_end, total);
			limit = random_below(4) ? SIZE_MAX : random_below(total + 1);
			expected = total < limit ? total : limit;
			appended = rs_send_queue_append(&queue, iov, count, limit);
			if (appended != (ssize_t)expected)
				fail_msg("operation %d: append of %zu limited to %zu returned %zd",
					 operation, total, limit, appended);
			model_end += expected;
			appends++;
		} else if (choice < 80) {
			/* Consume like a send completion: usually what a peek
			 * offered or less, sometimes beyond what is queued. */
			size_t queued = model_end - model_start;
			size_t amount = random_below(10) ? random_below(queued + 1)
							 : queued + random_below(1000);

			rs_send_queue_consume(&queue, amount);
			model_start += amount < queued ? amount : queued;
			consumes++;
		} else if (choice < 98) {
			/* Peek a few iovecs: they must be the stream from
			 * model_start on, in order. */
			struct iovec iov[8];
			int max = (int)random_below(9);
			int count = rs_send_queue_peek(&queue, iov, max);
			size_t offset = 0;

			assert_true(count >= 0 && count <= max);
			if (max && model_end > model_start)
				assert_true(count >= 1);
			for (int i = 0; i < count; i++) {
				const unsigned char *bytes = iov[i].iov_base;

				assert_true(offset + iov[i].iov_len <= model_end - model_start);
				for (size_t j = 0; j < iov[i].iov_len; j++) {
					if (bytes[j] != stream_byte(model_start + offset + j))
						fail_msg("operation %d: peeked byte %zu differs",
							 operation, offset + j);
				}
				offset += iov[i].iov_len;
			}
			peeks++;
		} else {
			rs_send_queue_clear(&queue);
			model_start = model_end;
		}
		if (queue.bytes != model_end - model_start)
			fail_msg("operation %d: %zu bytes queued, the model has %zu", operation,
				 queue.bytes, model_end - model_start);
		check_invariants(&queue);
		if (operation % 64 == 0)
			check_contents(&queue, model_start);
	}
	check_contents(&queue, model_start);
	/* The mix really exercised every operation. */
	assert_true(appends > 1000 && consumes > 1000 && peeks > 500);
	assert_true(model_end > 10 * 1024 * 1024);
	rs_send_queue_clear(&queue);
	free(scratch);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_queue),
		cmocka_unit_test(test_zero_length_appends),
		cmocka_unit_test(test_small_appends_packed),
		cmocka_unit_test(test_one_call_several_iovecs),
		cmocka_unit_test(test_order_across_chunk_boundaries),
		cmocka_unit_test(test_iovecs_spanning_chunks),
		cmocka_unit_test(test_limit_honoured),
		cmocka_unit_test(test_peek_at_most_max),
		cmocka_unit_test(test_partial_consume),
		cmocka_unit_test(test_consume_across_chunks),
		cmocka_unit_test(test_consume_everything),
		cmocka_unit_test(test_clear),
		cmocka_unit_test(test_random_model),
	};

	return cmocka_run_group_tests_name("sendqueue", tests, NULL, NULL);
}
