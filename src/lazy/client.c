/* SPDX-License-Identifier: Apache-2.0 */
/*
 * client.c - the consumer half of the UFFD handoff, pgc_lazy_attach():
 * create a userfaultfd, register the caller's regions in MISSING mode,
 * connect to the page server and send the regions as JSON with the uffd
 * attached (SCM_RIGHTS). Like Firecracker, the socket is closed once the
 * message is sent; from then on only the uffd ties consumer and server.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "lazy/lazy.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/*
 * A userfaultfd. A process without the privilege to handle kernel-mode
 * faults (not root, vm.unprivileged_userfaultfd = 0, the default) gets a
 * user-mode-only one (Linux 5.11 on): its own accesses are served, but a
 * kernel access to a missing page (read(2) into the memory, KVM) fails
 * with EFAULT instead of waiting.
 */
int lazy_uffd_open(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	return fd < 0 ? -errno : fd;
}

static int uffd_create(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd, ret;

	fd = lazy_uffd_open();
	if (fd < 0)
		return fd;
	/* Ask what is there, then enable REMOVE events if the kernel has them. */
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		ret = -errno;
		goto fail;
	}
	close(fd);
	fd = lazy_uffd_open();
	if (fd < 0)
		return fd;
	api.features &= UFFD_FEATURE_EVENT_REMOVE;
	api.api = UFFD_API;
	api.ioctls = 0;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		ret = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return ret;
}

static int send_handoff(int sock, const char *json, size_t len, int uffd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)json, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cm;
	size_t sent = 0;

	memset(&u, 0, sizeof(u));
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &uffd, sizeof(int));
	while (sent < len) {
		ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		sent += (size_t)n;
		/* The fd travels with the first byte only. */
		iov.iov_base = (char *)json + sent;
		iov.iov_len = len - sent;
		msg.msg_control = NULL;
		msg.msg_controllen = 0;
	}
	return 0;
}

int pgc_lazy_attach(const char *socket_path, const struct pgc_lazy_region *regions,
		    size_t nregions)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct lazy_map *maps = NULL;
	char *json = NULL;
	int uffd = -1, sock = -1, ret, len;
	size_t i;

	if (!socket_path || !regions || nregions == 0 || nregions > LAZY_MAX_REGIONS)
		return -EINVAL;
	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
	maps = calloc(nregions, sizeof(*maps));
	json = malloc(LAZY_MAX_MSG);
	if (!maps || !json) {
		ret = -ENOMEM;
		goto exit;
	}
	for (i = 0; i < nregions; i++) {
		uintptr_t a = (uintptr_t)regions[i].addr;

		if (!a || a % PGC_PAGE_SIZE || !regions[i].size ||
		    regions[i].size % PGC_PAGE_SIZE || regions[i].offset % PGC_PAGE_SIZE) {
			ret = -EINVAL;
			goto exit;
		}
		maps[i] = (struct lazy_map){ a, regions[i].size, regions[i].offset,
					     PGC_PAGE_SIZE };
	}
	len = lazy_format_regions(maps, nregions, LAZY_FORM_PAGE_SIZE, json, LAZY_MAX_MSG);
	if (len < 0) {
		ret = len;
		goto exit;
	}
	uffd = uffd_create();
	if (uffd < 0) {
		ret = uffd;
		goto exit;
	}
	for (i = 0; i < nregions; i++) {
		struct uffdio_register reg = {
			.range = { .start = maps[i].base, .len = maps[i].size },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
			ret = -errno;
			goto exit;
		}
	}
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		ret = -errno;
		goto exit;
	}
	while (connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno != EINTR) {
			ret = -errno;
			goto exit;
		}
	}
	ret = send_handoff(sock, json, (size_t)len, uffd);
	if (ret)
		goto exit;
	ret = uffd;
	uffd = -1;
exit:
	if (sock >= 0)
		close(sock);
	/* Closing the uffd unregisters everything again. */
	if (uffd >= 0)
		close(uffd);
	free(json);
	free(maps);
	return ret;
}
