// SPDX-License-Identifier: MIT
/*
 * A socket's send queue: the bytes a write() accepted that the kernel has not
 * taken yet.
 *
 * Chunks are never moved or resized once written, because an in-flight send
 * points into them; small writes are packed into the tail chunk so that a
 * burst of small writes leaves in one sendmsg.  The cap is enforced by the
 * caller, which passes how much it may append.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ringsteer.h"

/* Freed chunks of the usual size are kept for the next write: a malloc and
 * free per write made the C library return the memory to the kernel and
 * fault it back in, over and over.  Bounded, and shared by all threads. */
#define CACHED_CHUNKS_MAX 64

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rs_chunk *cached_chunks;
static unsigned cached_count;

static void chunk_free(struct rs_chunk *chunk)
{
	if (chunk->capacity == RS_CHUNK_SIZE) {
		pthread_mutex_lock(&cache_lock);
		if (cached_count < CACHED_CHUNKS_MAX) {
			chunk->next = cached_chunks;
			cached_chunks = chunk;
			cached_count++;
			chunk = NULL;
		}
		pthread_mutex_unlock(&cache_lock);
	}
	free(chunk);
}

/* Another thread may have held the lock at fork. */
void rs_send_queue_atfork_child(void)
{
	pthread_mutex_init(&cache_lock, NULL);
}

void rs_send_queue_init(struct rs_send_queue *queue)
{
	queue->head = NULL;
	queue->tail = NULL;
	queue->bytes = 0;
}

static struct rs_chunk *chunk_new(size_t want)
{
	size_t capacity = want < RS_CHUNK_SIZE ? RS_CHUNK_SIZE : want;
	struct rs_chunk *chunk = NULL;

	if (capacity == RS_CHUNK_SIZE && __atomic_load_n(&cached_count, __ATOMIC_RELAXED)) {
		pthread_mutex_lock(&cache_lock);
		chunk = cached_chunks;
		if (chunk) {
			cached_chunks = chunk->next;
			cached_count--;
		}
		pthread_mutex_unlock(&cache_lock);
	}
	if (!chunk)
		chunk = malloc(sizeof(*chunk) + capacity);

	if (!chunk)
		return NULL;
	chunk->next = NULL;
	chunk->start = 0;
	chunk->end = 0;
	chunk->capacity = capacity;
	return chunk;
}

ssize_t rs_send_queue_append(struct rs_send_queue *queue, const struct iovec *iov,
			     int iovcnt, size_t limit)
{
	size_t appended = 0;

	for (int i = 0; i < iovcnt && appended < limit; i++) {
		const char *source = iov[i].iov_base;
		size_t left = iov[i].iov_len;

		if (left > limit - appended)
			left = limit - appended;
		while (left) {
			struct rs_chunk *tail = queue->tail;
			size_t room = tail ? tail->capacity - tail->end : 0;

			if (!room) {
				tail = chunk_new(left);
				if (!tail)
					return appended ? (ssize_t)appended : -ENOMEM;
				if (queue->tail)
					queue->tail->next = tail;
				else
					queue->head = tail;
				queue->tail = tail;
				room = tail->capacity;
			}
			if (room > left)
				room = left;
			memcpy(tail->data + tail->end, source, room);
			tail->end += room;
			source += room;
			left -= room;
			appended += room;
			queue->bytes += room;
		}
	}
	return (ssize_t)appended;
}

ssize_t rs_send_queue_append_file(struct rs_send_queue *queue, int fd, off_t *offset,
				  size_t count)
{
	struct rs_chunk *tail = queue->tail;
	ssize_t got;

	/* One contiguous read: into the tail's room if it fits, else into a
	 * chunk of its own. */
	if (!tail || tail->capacity - tail->end < count) {
		tail = chunk_new(count);
		if (!tail)
			return -ENOMEM;
		if (queue->tail)
			queue->tail->next = tail;
		else
			queue->head = tail;
		queue->tail = tail;
	}
	do {
		if (offset)
			got = pread(fd, tail->data + tail->end, count, *offset);
		else
			got = REAL(read)(fd, tail->data + tail->end, count);
	} while (got < 0 && errno == EINTR);
	if (got < 0)
		return -errno;
	if (offset)
		*offset += got;
	tail->end += (size_t)got;
	queue->bytes += (size_t)got;
	return got;
}

int rs_send_queue_peek(const struct rs_send_queue *queue, struct iovec *iov, int max)
{
	int count = 0;

	for (struct rs_chunk *chunk = queue->head; chunk && count < max; chunk = chunk->next) {
		if (chunk->end == chunk->start)
			continue;
		iov[count].iov_base = chunk->data + chunk->start;
		iov[count].iov_len = chunk->end - chunk->start;
		count++;
	}
	return count;
}

void rs_send_queue_consume(struct rs_send_queue *queue, size_t bytes)
{
	if (bytes > queue->bytes)
		bytes = queue->bytes;
	queue->bytes -= bytes;
	/* A fully sent chunk is freed at once, even the tail: an idle
	 * connection keeps no queue memory. */
	while (bytes && queue->head) {
		struct rs_chunk *chunk = queue->head;
		size_t available = chunk->end - chunk->start;

		if (bytes < available) {
			chunk->start += bytes;
			return;
		}
		bytes -= available;
		queue->head = chunk->next;
		if (!queue->head)
			queue->tail = NULL;
		chunk_free(chunk);
	}
}

void rs_send_queue_clear(struct rs_send_queue *queue)
{
	struct rs_chunk *chunk = queue->head;

	while (chunk) {
		struct rs_chunk *next = chunk->next;

		chunk_free(chunk);
		chunk = next;
	}
	rs_send_queue_init(queue);
}
