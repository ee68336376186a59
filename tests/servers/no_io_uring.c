// SPDX-License-Identifier: MIT
/*
 * Runs a command with io_uring made unavailable, the way a container's
 * seccomp profile does it: a filter makes io_uring_setup, io_uring_enter
 * and io_uring_register fail with ENOSYS (or the errno given with -e),
 * then the command is exec'd with the filter inherited.  The tests use it
 * to check that the shim falls back to the kernel path.  Raw classic BPF
 * through prctl, no libseccomp.
 *
 *   no_io_uring [-e ENOSYS|EPERM] COMMAND [ARGS...]
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "no_io_uring: add this architecture's AUDIT_ARCH value"
#endif

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#define __NR_io_uring_enter 426
#define __NR_io_uring_register 427
#endif

static void usage(void)
{
	fprintf(stderr, "usage: no_io_uring [-e ENOSYS|EPERM] COMMAND [ARGS...]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int error = ENOSYS, option;

	while ((option = getopt(argc, argv, "+e:")) != -1) {
		if (option != 'e')
			usage();
		if (!strcmp(optarg, "ENOSYS"))
			error = ENOSYS;
		else if (!strcmp(optarg, "EPERM"))
			error = EPERM;
		else
			usage();
	}
	if (optind >= argc)
		usage();

	/* A foreign architecture's system call numbers mean other calls, so
	 * anything but the native one is refused outright. */
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)error & SECCOMP_RET_DATA)),
	};
	struct sock_fprog program = {
		.len = sizeof(filter) / sizeof(filter[0]),
		.filter = filter,
	};

	/* Required to install a filter without CAP_SYS_ADMIN, and harmless
	 * as root. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		fprintf(stderr, "no_io_uring: prctl(PR_SET_NO_NEW_PRIVS): %s\n", strerror(errno));
		return 1;
	}
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
		fprintf(stderr, "no_io_uring: prctl(PR_SET_SECCOMP): %s\n", strerror(errno));
		return 1;
	}
	execvp(argv[optind], argv + optind);
	fprintf(stderr, "no_io_uring: exec %s: %s\n", argv[optind], strerror(errno));
	return 127;
}
