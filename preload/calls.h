/* SPDX-License-Identifier: MIT */
/*
 * The one list of the calls ringsteer intercepts.
 *
 * interpose.c expands it three times: into the table of the real functions
 * (resolved once with dlsym(RTLD_NEXT)), into the declarations of the shim's
 * own implementations (rs_NAME, returning a negative errno on failure), and
 * into the exported wrappers (NAME), the only place errno is set.  The linker
 * version script is generated from it as well, so the library exports exactly
 * these names.
 *
 * RS_CALL(return type, name, (parameters), (arguments))
 * RS_CALL_VARIADIC(return type, name, (fixed parameters), last fixed name)
 *   for fcntl and ioctl, whose third argument is read as one machine word.
 * RS_CALL_POINTER(return type, name, (parameters), (arguments))
 *   for a call that returns a pointer, NULL on failure (fdopen); the shim's
 *   implementation returns the pointer as a long, or a negative errno.
 *   Only the wrappers tell it from RS_CALL.
 * RS_CALL_EXIT(name)
 *   for _exit and _Exit (void, int status, no return): the shim's part runs
 *   first, then the real call.
 * RS_CALL_VOID(name, (parameters), (arguments))
 *   for a call that returns nothing and leaves errno alone (closefrom).
 * RS_CALL_FORMAT(name, (parameters), last fixed name, va_list call, (arguments))
 *   for dprintf: the wrapper starts its va_list (ap) and makes the
 *   va_list call, through the shim's own wrapper of it.
 * RS_CALL_ARGUMENT_LIST(name, vector call, with environment)
 *   for execl, execlp and execle: the wrapper gathers the argument list
 *   (and the environment after it) and makes the vector call, through the
 *   shim's own wrapper of it.  Nothing of the real one is needed.
 */
#ifndef RS_CALL_POINTER
#define RS_CALL_POINTER RS_CALL
#define RS_CALL_POINTER_IS_CALL
#endif
#ifndef RS_CALL_ARGUMENT_LIST
#define RS_CALL_ARGUMENT_LIST(name, vector, environment)
#define RS_CALL_ARGUMENT_LIST_IS_NOTHING
#endif
#ifndef RS_CALL_EXIT
#define RS_CALL_EXIT(name) RS_CALL(void, name, (int status), (status))
#define RS_CALL_EXIT_IS_CALL
#endif
#ifndef RS_CALL_VOID
#define RS_CALL_VOID(name, params, args) RS_CALL(void, name, params, args)
#define RS_CALL_VOID_IS_CALL
#endif
#ifndef RS_CALL_FORMAT
#define RS_CALL_FORMAT(name, params, last, vector, args)
#define RS_CALL_FORMAT_IS_NOTHING
#endif

RS_CALL(int, socket, (int domain, int type, int protocol), (domain, type, protocol))
RS_CALL(int, bind, (int fd, const struct sockaddr *addr, socklen_t len), (fd, addr, len))
RS_CALL(int, listen, (int fd, int backlog), (fd, backlog))
RS_CALL(int, accept, (int fd, struct sockaddr *addr, socklen_t *len), (fd, addr, len))
RS_CALL(int, accept4, (int fd, struct sockaddr *addr, socklen_t *len, int flags), (fd, addr, len, flags))
RS_CALL(int, connect, (int fd, const struct sockaddr *addr, socklen_t len), (fd, addr, len))
RS_CALL(ssize_t, read, (int fd, void *buf, size_t count), (fd, buf, count))
RS_CALL(ssize_t, write, (int fd, const void *buf, size_t count), (fd, buf, count))
RS_CALL(ssize_t, readv, (int fd, const struct iovec *iov, int iovcnt), (fd, iov, iovcnt))
RS_CALL(ssize_t, writev, (int fd, const struct iovec *iov, int iovcnt), (fd, iov, iovcnt))
RS_CALL(ssize_t, recv, (int fd, void *buf, size_t len, int flags), (fd, buf, len, flags))
RS_CALL(ssize_t, recvfrom, (int fd, void *buf, size_t len, int flags, struct sockaddr *addr, socklen_t *addrlen), (fd, buf, len, flags, addr, addrlen))
RS_CALL(ssize_t, recvmsg, (int fd, struct msghdr *msg, int flags), (fd, msg, flags))
RS_CALL(ssize_t, send, (int fd, const void *buf, size_t len, int flags), (fd, buf, len, flags))
RS_CALL(ssize_t, sendto, (int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr, socklen_t addrlen), (fd, buf, len, flags, addr, addrlen))
RS_CALL(ssize_t, sendmsg, (int fd, const struct msghdr *msg, int flags), (fd, msg, flags))
RS_CALL(int, recvmmsg, (int fd, struct mmsghdr *vector, unsigned int length, int flags, struct timespec *timeout), (fd, vector, length, flags, timeout))
RS_CALL(int, sendmmsg, (int fd, struct mmsghdr *vector, unsigned int length, int flags), (fd, vector, length, flags))
RS_CALL(ssize_t, sendfile, (int out_fd, int in_fd, off_t *offset, size_t count), (out_fd, in_fd, offset, count))
RS_CALL(ssize_t, sendfile64, (int out_fd, int in_fd, off64_t *offset, size_t count), (out_fd, in_fd, offset, count))
RS_CALL(ssize_t, splice, (int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len, unsigned int flags), (fd_in, off_in, fd_out, off_out, len, flags))
RS_CALL(int, close, (int fd), (fd))
RS_CALL(int, close_range, (unsigned int first, unsigned int last, int flags), (first, last, flags))
RS_CALL_VOID(closefrom, (int lowest), (lowest))
RS_CALL(int, shutdown, (int fd, int how), (fd, how))
RS_CALL(int, getsockopt, (int fd, int level, int name, void *value, socklen_t *len), (fd, level, name, value, len))
RS_CALL(int, setsockopt, (int fd, int level, int name, const void *value, socklen_t len), (fd, level, name, value, len))
RS_CALL(int, dup, (int fd), (fd))
RS_CALL(int, dup2, (int fd, int newfd), (fd, newfd))
RS_CALL(int, dup3, (int fd, int newfd, int flags), (fd, newfd, flags))
RS_CALL(int, poll, (struct pollfd *fds, nfds_t nfds, int timeout), (fds, nfds, timeout))
RS_CALL(int, __poll_chk, (struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen), (fds, nfds, timeout, fdslen))
RS_CALL(int, ppoll, (struct pollfd *fds, nfds_t nfds, const struct timespec *timeout, const sigset_t *sigmask), (fds, nfds, timeout, sigmask))
RS_CALL(int, select, (int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds, struct timeval *timeout), (nfds, readfds, writefds, exceptfds, timeout))
RS_CALL(int, pselect, (int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds, const struct timespec *timeout, const sigset_t *sigmask), (nfds, readfds, writefds, exceptfds, timeout, sigmask))
RS_CALL(int, epoll_create, (int size), (size))
RS_CALL(int, epoll_create1, (int flags), (flags))
RS_CALL(int, epoll_ctl, (int epfd, int op, int fd, struct epoll_event *event), (epfd, op, fd, event))
RS_CALL(int, epoll_pwait2, (int epfd, struct epoll_event *events, int maxevents, const struct timespec *timeout, const sigset_t *sigmask), (epfd, events, maxevents, timeout, sigmask))
RS_CALL(int, epoll_wait, (int epfd, struct epoll_event *events, int maxevents, int timeout), (epfd, events, maxevents, timeout))
RS_CALL(int, epoll_pwait, (int epfd, struct epoll_event *events, int maxevents, int timeout, const sigset_t *sigmask), (epfd, events, maxevents, timeout, sigmask))
RS_CALL(ssize_t, __read_chk, (int fd, void *buf, size_t count, size_t buflen), (fd, buf, count, buflen))
RS_CALL(ssize_t, __recv_chk, (int fd, void *buf, size_t len, size_t buflen, int flags), (fd, buf, len, buflen, flags))
RS_CALL(ssize_t, __recvfrom_chk, (int fd, void *buf, size_t len, size_t buflen, int flags, struct sockaddr *addr, socklen_t *addrlen), (fd, buf, len, buflen, flags, addr, addrlen))
RS_CALL(pid_t, fork, (void), ())
RS_CALL_EXIT(_exit)
RS_CALL_EXIT(_Exit)
RS_CALL(int, execve, (const char *path, char *const argv[], char *const envp[]), (path, argv, envp))
RS_CALL(int, execveat, (int dirfd, const char *path, char *const argv[], char *const envp[], int flags), (dirfd, path, argv, envp, flags))
RS_CALL(int, fexecve, (int fd, char *const argv[], char *const envp[]), (fd, argv, envp))
RS_CALL(int, execv, (const char *path, char *const argv[]), (path, argv))
RS_CALL(int, execvp, (const char *file, char *const argv[]), (file, argv))
RS_CALL(int, execvpe, (const char *file, char *const argv[], char *const envp[]), (file, argv, envp))
RS_CALL(int, vdprintf, (int fd, const char *format, va_list ap), (fd, format, ap))
RS_CALL(int, __vdprintf_chk, (int fd, int flag, const char *format, va_list ap), (fd, flag, format, ap))
RS_CALL_FORMAT(dprintf, (int fd, const char *format, ...), format, vdprintf, (fd, format, ap))
RS_CALL_FORMAT(__dprintf_chk, (int fd, int flag, const char *format, ...), format, __vdprintf_chk, (fd, flag, format, ap))
RS_CALL(int, posix_spawn, (pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions, const posix_spawnattr_t *attributes, char *const argv[], char *const envp[]), (pid, path, actions, attributes, argv, envp))
RS_CALL(int, posix_spawnp, (pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions, const posix_spawnattr_t *attributes, char *const argv[], char *const envp[]), (pid, file, actions, attributes, argv, envp))
RS_CALL_ARGUMENT_LIST(execl, execv, false)
RS_CALL_ARGUMENT_LIST(execlp, execvp, false)
RS_CALL_ARGUMENT_LIST(execle, execve, true)
RS_CALL_VARIADIC(int, fcntl, (int fd, int cmd, ...), cmd)
RS_CALL_VARIADIC(int, fcntl64, (int fd, int cmd, ...), cmd)
RS_CALL_VARIADIC(int, ioctl, (int fd, unsigned long request, ...), request)
RS_CALL_POINTER(FILE *, fdopen, (int fd, const char *mode), (fd, mode))
RS_CALL(int, fclose, (FILE *stream), (stream))

#ifdef RS_CALL_POINTER_IS_CALL
#undef RS_CALL_POINTER
#undef RS_CALL_POINTER_IS_CALL
#endif
#ifdef RS_CALL_ARGUMENT_LIST_IS_NOTHING
#undef RS_CALL_ARGUMENT_LIST
#undef RS_CALL_ARGUMENT_LIST_IS_NOTHING
#endif
#ifdef RS_CALL_EXIT_IS_CALL
#undef RS_CALL_EXIT
#undef RS_CALL_EXIT_IS_CALL
#endif
#ifdef RS_CALL_VOID_IS_CALL
#undef RS_CALL_VOID
#undef RS_CALL_VOID_IS_CALL
#endif
#ifdef RS_CALL_FORMAT_IS_NOTHING
#undef RS_CALL_FORMAT
#undef RS_CALL_FORMAT_IS_NOTHING
#endif
