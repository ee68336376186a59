// SPDX-License-Identifier: MIT
/*
 * The interposition layer: the table of real functions and the exported
 * wrappers, both generated from calls.h.
 *
 * A wrapper calls the shim's implementation, which returns a negative errno
 * on failure; the wrapper alone sets errno, and leaves it untouched on
 * success, as the C library does.  Before the library is initialised (a call
 * from another library's constructor, or from dlsym's own allocations) and
 * while it is initialising, the wrapper goes straight to the real function.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ringsteer.h"

/* Our own declaration of every exported name: some (the fortified __*_chk
 * entry points, sendfile64) have none in the headers we include. */
#define RS_CALL(ret, name, params, args) RS_EXPORT ret name params;
#define RS_CALL_VARIADIC(ret, name, params, last) RS_EXPORT ret name params;
#define RS_CALL_FORMAT(name, params, last, vector, args) RS_EXPORT int name params;
#include "calls.h"
#undef RS_CALL
#undef RS_CALL_VARIADIC
#undef RS_CALL_FORMAT

RS_HIDDEN struct rs_real_functions rs_real;
RS_HIDDEN _Atomic int rs_initialised;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Resolves one real function.  A missing one (an older C library without
 * close_range, say) stays NULL and its wrapper answers ENOSYS. */
static void *resolve(const char *name, void *ours)
{
	void *real = dlsym(RTLD_NEXT, name);

	if (real == ours)
		real = NULL;
	return real;
}

static void resolve_all(void)
{
#define RS_CALL(ret, name, params, args) \
	rs_real.name = (ret (*) params)resolve(#name, (void *)name);
#define RS_CALL_VARIADIC(ret, name, params, last) \
	rs_real.name = (ret (*) params)resolve(#name, (void *)name);
#include "calls.h"
#undef RS_CALL
#undef RS_CALL_VARIADIC
}

void rs_sock_init(void);

static void initialise(void)
{
	atomic_store(&rs_initialised, -1);
	resolve_all();
	rs_sock_init();
	atomic_store(&rs_initialised, 1);
}

void rs_init(void)
{
	pthread_once(&init_once, initialise);
}

__attribute__((constructor)) static void ringsteer_constructor(void)
{
	rs_init();
}

/* Calls made before initialisation cannot use the table yet. */
static inline bool ready(void)
{
	int state = atomic_load_explicit(&rs_initialised, memory_order_acquire);

	if (likely(state == 1))
		return true;
	if (state == 0)
		rs_init();
	return atomic_load_explicit(&rs_initialised, memory_order_acquire) == 1;
}

static inline long finish(long result, int saved_errno)
{
	if (result < 0) {
		errno = (int)-result;
		return -1;
	}
	errno = saved_errno;
	return result;
}

#define RS_CALL(ret, name, params, args)                                   \
	RS_EXPORT ret name params                                           \
	{                                                                   \
		int saved_errno = errno;                                    \
		if (unlikely(!ready())) {                                   \
			ret (*direct) params = (ret (*) params)dlsym(RTLD_NEXT, #name); \
			if (!direct) { errno = ENOSYS; return (ret)-1; }      \
			return direct args;                                 \
		}                                                           \
		return (ret)finish(rs_##name args, saved_errno);            \
	}
#define RS_CALL_VARIADIC(ret, name, params, last)                          \
	RS_EXPORT ret name params                                           \
	{                                                                   \
		int saved_errno = errno;                                    \
		va_list ap;                                                 \
		va_start(ap, last);                                         \
		unsigned long argument = va_arg(ap, unsigned long);         \
		va_end(ap);                                                 \
		if (unlikely(!ready())) {                                   \
			ret (*direct) params = (ret (*) params)dlsym(RTLD_NEXT, #name); \
			if (!direct) { errno = ENOSYS; return (ret)-1; }      \
			return direct(fd, last, argument);                  \
		}                                                           \
		return (ret)finish(rs_##name(fd, (unsigned long)last, argument), saved_errno); \
	}
#define RS_CALL_POINTER(ret, name, params, args)                           \
	RS_EXPORT ret name params                                           \
	{                                                                   \
		long result;                                                \
		if (unlikely(!ready())) {                                   \
			ret (*direct) params = (ret (*) params)dlsym(RTLD_NEXT, #name); \
			if (!direct) { errno = ENOSYS; return NULL; }       \
			return direct args;                                 \
		}                                                           \
		result = rs_##name args;                                    \
		if (result < 0) {                                           \
			errno = (int)-result;                               \
			return NULL;                                        \
		}                                                           \
		return (ret)(uintptr_t)result;                              \
	}
/* Entries of an execl-style list before its null pointer. */
static size_t list_length(const char *first, va_list ap)
{
	size_t count = 0;

	for (const char *entry = first; entry; entry = va_arg(ap, const char *))
		count++;
	return count;
}

/* execle's environment follows the list's null pointer. */
#define RS_VECTOR_CALL_false(vector, path, arguments, ap) vector(path, arguments)
#define RS_VECTOR_CALL_true(vector, path, arguments, ap) \
	vector(path, arguments, va_arg(ap, char *const *))
#define RS_CALL_ARGUMENT_LIST(name, vector, environment)                   \
	RS_EXPORT int name(const char *path, const char *argument, ...)     \
	{                                                                   \
		va_list ap, counting;                                       \
		size_t count;                                               \
		int result;                                                 \
		va_start(ap, argument);                                     \
		va_copy(counting, ap);                                      \
		count = list_length(argument, counting);                    \
		va_end(counting);                                           \
		const char *arguments[count + 1];                           \
		arguments[0] = argument;                                    \
		for (size_t i = 1; i < count; i++)                          \
			arguments[i] = va_arg(ap, const char *);            \
		arguments[count] = NULL;                                    \
		if (count)                                                  \
			(void)va_arg(ap, const char *);                     \
		result = RS_VECTOR_CALL_##environment(vector, path,         \
			(char *const *)arguments, ap);                      \
		va_end(ap);                                                 \
		return result;                                              \
	}
#define RS_CALL_EXIT(name)                                                 \
	RS_EXPORT void name(int status)                                     \
	{                                                                   \
		void (*real)(int) = rs_real.name;                           \
		if (likely(ready()))                                        \
			rs_##name(status);                                  \
		if (!real)                                                  \
			real = (void (*)(int))dlsym(RTLD_NEXT, #name);      \
		if (real)                                                   \
			real(status);                                       \
		for (;;)                                                    \
			syscall(SYS_exit_group, status);                    \
	}
#define RS_CALL_VOID(name, params, args)                                   \
	RS_EXPORT void name params                                          \
	{                                                                   \
		int saved_errno = errno;                                    \
		if (unlikely(!ready())) {                                   \
			void (*direct) params = (void (*) params)dlsym(RTLD_NEXT, #name); \
			if (direct)                                         \
				direct args;                                \
			return;                                             \
		}                                                           \
		rs_##name args;                                             \
		errno = saved_errno;                                        \
	}
#define RS_CALL_FORMAT(name, params, last, vector, args)                   \
	RS_EXPORT int name params                                           \
	{                                                                   \
		va_list ap;                                                 \
		int result;                                                 \
		va_start(ap, last);                                         \
		result = vector args;                                       \
		va_end(ap);                                                 \
		return result;                                              \
	}
#include "calls.h"
#undef RS_CALL
#undef RS_CALL_VARIADIC
#undef RS_CALL_POINTER
#undef RS_CALL_ARGUMENT_LIST
#undef RS_CALL_EXIT
#undef RS_CALL_VOID
#undef RS_CALL_FORMAT
