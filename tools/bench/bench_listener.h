/* SPDX-License-Identifier: MIT */
/*
 * The listening socket of the benchmark's echo servers: loopback only (IPv4
 * or IPv6), a port of the kernel's choice for port 0, and the port it got.
 * Header-only, each server being one program of its own; a failure ends the
 * program with one line naming it.
 */
#ifndef RINGSTEER_BENCH_LISTENER_H
#define RINGSTEER_BENCH_LISTENER_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static void bench_listener_fail(const char *program, const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", program, what, strerror(errno));
	exit(1);
}

/* type_flags: SOCK_NONBLOCK for an event loop's listener, or 0. */
static int bench_listen_on(const char *program, bool ipv6, int port, int type_flags)
{
	int fd = socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | type_flags, 0);
	struct sockaddr_storage address;
	socklen_t address_length;
	int one = 1;

	if (fd < 0)
		bench_listener_fail(program, "socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		bench_listener_fail(program, "setsockopt SO_REUSEADDR");
	memset(&address, 0, sizeof(address));
	if (ipv6) {
		struct sockaddr_in6 *ipv6_address = (struct sockaddr_in6 *)&address;

		ipv6_address->sin6_family = AF_INET6;
		ipv6_address->sin6_addr = in6addr_loopback;
		ipv6_address->sin6_port = htons((uint16_t)port);
		address_length = sizeof(*ipv6_address);
	} else {
		struct sockaddr_in *ipv4_address = (struct sockaddr_in *)&address;

		ipv4_address->sin_family = AF_INET;
		ipv4_address->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ipv4_address->sin_port = htons((uint16_t)port);
		address_length = sizeof(*ipv4_address);
	}
	if (bind(fd, (struct sockaddr *)&address, address_length) < 0)
		bench_listener_fail(program, "bind");
	if (listen(fd, 1024) < 0)
		bench_listener_fail(program, "listen");
	return fd;
}

static int bench_bound_port(const char *program, int fd)
{
	struct sockaddr_storage address;
	socklen_t length = sizeof(address);

	if (getsockname(fd, (struct sockaddr *)&address, &length) < 0)
		bench_listener_fail(program, "getsockname");
	if (address.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
	return ntohs(((struct sockaddr_in *)&address)->sin_port);
}

#endif
