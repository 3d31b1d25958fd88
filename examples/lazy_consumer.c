/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lazy_consumer.c - an example consumer of `pgckpt restore --background
 * --listen SOCKET IMAGE`: map anonymous memory for the regions of a memory
 * file, hand it to the page server with pgc_lazy_attach, then read random
 * pages and then every page, optionally comparing each byte with the
 * original memory file. Prints one line of key=value figures on stdout:
 * attach_ms (uffd, registration, connect, handoff), first_access_ms (the
 * first touch of a page: fault to byte read), p50_us/p99_us (the random
 * first touches), random_ms (from before the attach until the random
 * pages were read: with --hot and a fixed --seed, the time to touch a
 * fixed working set), all_ms (from before the attach until every page was
 * read and verified).
 *
 *   lazy_consumer [-s SIZE | -i IMAGE] [-r N] [-n N] [-v FILE]
 *                 [--handoff-form page_size|kib|both] SOCKET
 *
 * It uses only the public header pgckpt.h. With --handoff-form it does
 * not call pgc_lazy_attach but does the consumer's half of the handoff
 * itself (attach_by_hand below), as Firecracker does: a userfaultfd, its
 * regions registered, and one message on the unix socket, a JSON array of
 * regions with the uffd attached, whose page-size key(s) are those of
 * the Firecracker version chosen. That is a second client of the
 * protocol, written apart from the library's, and tests/bats/lazy.bats
 * runs it against the server in each form. A program of your own needs
 * only pgc_lazy_attach.
 *
 * Exit status: 0 ok, 1 usage or a byte that does not match, 2 system error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pgckpt.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1   /* Linux 5.11 */
#endif

#define PAGE PGC_PAGE_SIZE
#define MAX_REGIONS 64

static const char usage[] =
	"Usage: lazy_consumer [OPTION]... SOCKET\n"
	"Attach to a pgckpt page server, read random pages, then every page.\n"
	"\n"
	"  -s, --size S        bytes of memory file to map (K/M/G suffixes; default:\n"
	"                      the size of --verify FILE, else of --image IMAGE)\n"
	"  -i, --image IMAGE   learn the size from `$PGCKPT inspect --json IMAGE`\n"
	"                      ($PGCKPT defaults to pgckpt)\n"
	"  -r, --regions N     split the memory into N regions, mapped separately (1..64, default 1)\n"
	"  -n, --random N      random pages to read before reading all (default 1000)\n"
	"  -v, --verify FILE   compare every page read with FILE, byte for byte\n"
	"      --seed N        seed of the random page order (default 1)\n"
	"      --hot S         draw the random pages from the last S bytes only, the\n"
	"                      end the background load reaches last (a fixed working\n"
	"                      set: the same --seed, the same pages)\n"
	"      --handoff-form F  do the handoff here, not with pgc_lazy_attach, with the\n"
	"                      page-size key(s) F: page_size (as pgc_lazy_attach), kib\n"
	"                      (page_size_kib only: Firecracker 1.0-1.6) or both\n"
	"                      (Firecracker 1.7 and later)\n"
	"      --kill-after N  SIGKILL this process after N random pages (for tests)\n"
	"      --stop-after N  SIGSTOP this process after N random pages (for tests)\n"
	"  -h, --help          show this help\n"
	"\n"
	"Output: one line, e.g.\n"
	"  bytes=268435456 regions=1 attach_ms=0.2 first_access_ms=3.1 random=1000 p50_us=5.2\n"
	"  p99_us=80.1 random_ms=120.3 all_ms=812.4 verified=yes\n";

struct region {
	unsigned char *addr;
	uint64_t size;
	uint64_t offset;
};

/* How to attach: pgc_lazy_attach, or by hand with these page-size keys. */
enum form {
	FORM_LIBRARY,     /* pgc_lazy_attach (no --handoff-form) */
	FORM_PAGE_SIZE,   /* "page_size" */
	FORM_KIB,         /* "page_size_kib" only (bytes, despite the name): Firecracker 1.0-1.6 */
	FORM_BOTH,        /* both: Firecracker 1.7 and later */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_state = 1;

static uint64_t rng_next(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K':
		v <<= 10;
		end++;
		break;
	case 'm': case 'M':
		v <<= 20;
		end++;
		break;
	case 'g': case 'G':
		v <<= 30;
		end++;
		break;
	}
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* The "file_size" of `$PGCKPT inspect --json @img`. Returns 0 or -errno. */
static int image_size(const char *img, uint64_t *out)
{
	const char *pgckpt = getenv("PGCKPT");
	char buf[4096], *p, *end;
	size_t len = 0;
	int fds[2], st, ret = 0;
	ssize_t n;
	pid_t pid;

	if (!pgckpt || !*pgckpt)
		pgckpt = "pgckpt";
	if (pipe(fds) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		close(fds[0]);
		close(fds[1]);
		return ret;
	}
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execlp(pgckpt, pgckpt, "inspect", "--json", img, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while (len < sizeof(buf) - 1 &&
	       ((n = read(fds[0], buf + len, sizeof(buf) - 1 - len)) > 0 || (n < 0 && errno == EINTR)))
		if (n > 0)
			len += (size_t)n;
	close(fds[0]);
	buf[len] = '\0';
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -ENOENT;
	p = strstr(buf, "\"file_size\":");
	if (!p)
		return -EINVAL;
	p += strlen("\"file_size\":");
	p += strspn(p, " ");
	errno = 0;
	*out = strtoull(p, &end, 10);
	return errno || end == p ? -EINVAL : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Compare the page at memory-file offset @off, mapped at @page, with the file. */
static bool page_matches(const unsigned char *page, uint64_t off, const unsigned char *want,
			 uint64_t want_size)
{
	static const unsigned char zero[PAGE];
	uint64_t n = off < want_size ? want_size - off : 0;

	if (n > PAGE)
		n = PAGE;
	if (n && memcmp(page, want + off, n) != 0)
		return false;
	return n == PAGE || memcmp(page + n, zero, PAGE - n) == 0;
}

/*
 * A userfaultfd, non-blocking (the server polls it) and closed on exec.
 * Where unprivileged users may only handle faults from user mode
 * (vm.unprivileged_userfaultfd = 0), a user-mode-only one: a system call
 * that touches a page not yet in place then fails with EFAULT.
 */
static int uffd_open(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	return fd < 0 ? -errno : fd;
}

/* Connect to @path and send @json with @uffd attached, in one sendmsg. */
static int send_handoff(const char *path, const char *json, size_t len, int uffd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = (void *)json, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	struct cmsghdr *cm;
	ssize_t n;
	int sock, ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	memset(&ctl, 0, sizeof(ctl));
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &uffd, sizeof(int));

	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	if (connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		goto exit;
	}
	n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	ret = n < 0 ? -errno : (size_t)n == len ? 0 : -EIO;
exit:
	/* Nothing comes back: from now on only the uffd ties us to the server. */
	close(sock);
	return ret;
}

/*
 * The consumer's half of the Firecracker UFFD handoff, done by hand: the
 * regions as a JSON array of {"base_host_virt_addr", "size", "offset",
 * and "page_size" and/or "page_size_kib"} objects, as @form wants; a
 * userfaultfd (with remove events, which Firecracker asks for too) with
 * every region registered for missing pages; the JSON sent with the uffd.
 * Returns the uffd, which must stay open as long as the regions are
 * mapped, or -errno.
 */
static int attach_by_hand(const char *sock, const struct region *rg, size_t n, enum form form)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	char *json = NULL;
	size_t len = 0, k;
	FILE *f;
	int uffd = -1, ret;

	f = open_memstream(&json, &len);
	if (!f)
		return -errno;
	fputc('[', f);
	for (k = 0; k < n; k++) {
		fprintf(f, "%s{\"base_host_virt_addr\":%" PRIuPTR ",\"size\":%" PRIu64
			",\"offset\":%" PRIu64, k ? "," : "", (uintptr_t)rg[k].addr, rg[k].size,
			rg[k].offset);
		if (form != FORM_KIB)
			fprintf(f, ",\"page_size\":%llu", PAGE);
		if (form != FORM_PAGE_SIZE)
			fprintf(f, ",\"page_size_kib\":%llu", PAGE);
		fputc('}', f);
	}
	fputc(']', f);
	if (fclose(f) != 0) {
		ret = -ENOMEM;
		goto exit;
	}

	uffd = uffd_open();
	if (uffd < 0) {
		ret = uffd;
		goto exit;
	}
	if (ioctl(uffd, UFFDIO_API, &api) < 0) {
		ret = -errno;
		goto exit;
	}
	for (k = 0; k < n; k++) {
		struct uffdio_register reg = {
			.range = { .start = (uintptr_t)rg[k].addr, .len = rg[k].size },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
			ret = -errno;
			goto exit;
		}
	}
	ret = send_handoff(sock, json, len, uffd);
	if (ret == 0) {
		ret = uffd;
		uffd = -1;
	}
exit:
	/* Closing the uffd unregisters the regions again. */
	if (uffd >= 0)
		close(uffd);
	free(json);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size",       required_argument, NULL, 's' },
		{ "image",      required_argument, NULL, 'i' },
		{ "regions",    required_argument, NULL, 'r' },
		{ "random",     required_argument, NULL, 'n' },
		{ "verify",     required_argument, NULL, 'v' },
		{ "seed",       required_argument, NULL, 'S' },
		{ "kill-after", required_argument, NULL, 'K' },
		{ "stop-after", required_argument, NULL, 'T' },
		{ "handoff-form", required_argument, NULL, 'F' },
		{ "hot",        required_argument, NULL, 'H' },
		{ "help",       no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pgc_lazy_region lr[MAX_REGIONS];
	struct region rg[MAX_REGIONS];
	const char *image = NULL, *verify = NULL, *sock;
	const unsigned char *want = NULL;
	uint64_t size = 0, want_size = 0, nrand = 1000, kill_after = UINT64_MAX, seed = 1;
	uint64_t stop_after = UINT64_MAX, hot = 0, hot_pages, t_rand;
	uint64_t nregions = 1, pages, t0, t_attach, t_first, t_all, i, mismatches = 0;
	uint64_t first_bad = UINT64_MAX, *lat = NULL;
	enum form form = FORM_LIBRARY;
	int opt, uffd = -1, vfd = -1, ret = 2;
	size_t k;

	memset(rg, 0, sizeof(rg));
	while ((opt = getopt_long(argc, argv, "s:i:r:n:v:h", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			if (parse_size(optarg, &size) || !size) {
				fprintf(stderr, "lazy_consumer: bad size '%s'\n", optarg);
				return 1;
			}
			break;
		case 'i':
			image = optarg;
			break;
		case 'r':
			if (parse_size(optarg, &nregions) || !nregions || nregions > MAX_REGIONS) {
				fprintf(stderr, "lazy_consumer: bad region count '%s' (1..%d)\n", optarg,
					MAX_REGIONS);
				return 1;
			}
			break;
		case 'n':
			if (parse_size(optarg, &nrand)) {
				fprintf(stderr, "lazy_consumer: bad count '%s'\n", optarg);
				return 1;
			}
			break;
		case 'v':
			verify = optarg;
			break;
		case 'S':
			if (parse_size(optarg, &seed)) {
				fprintf(stderr, "lazy_consumer: bad seed '%s'\n", optarg);
				return 1;
			}
			break;
		case 'H':
			if (parse_size(optarg, &hot) || !hot) {
				fprintf(stderr, "lazy_consumer: bad hot size '%s'\n", optarg);
				return 1;
			}
			break;
		case 'K':
		case 'T':
			if (parse_size(optarg, opt == 'K' ? &kill_after : &stop_after)) {
				fprintf(stderr, "lazy_consumer: bad count '%s'\n", optarg);
				return 1;
			}
			break;
		case 'F':
			if (!strcmp(optarg, "page_size")) {
				form = FORM_PAGE_SIZE;
			} else if (!strcmp(optarg, "kib")) {
				form = FORM_KIB;
			} else if (!strcmp(optarg, "both")) {
				form = FORM_BOTH;
			} else {
				fprintf(stderr, "lazy_consumer: bad handoff form '%s'\n", optarg);
				return 1;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 1;
		}
	}
	if (argc - optind != 1) {
		fputs(usage, stderr);
		return 1;
	}
	sock = argv[optind];
	rng_state = seed * 0x9e3779b97f4a7c15ULL + 1;

	if (verify) {
		struct stat st;

		vfd = open(verify, O_RDONLY | O_CLOEXEC);
		if (vfd < 0 || fstat(vfd, &st) < 0) {
			fprintf(stderr, "lazy_consumer: %s: %s\n", verify, strerror(errno));
			goto exit;
		}
		want_size = (uint64_t)st.st_size;
		if (want_size) {
			/* Populated now, so that reading it is not part of the figures. */
			want = mmap(NULL, want_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, vfd, 0);
			if (want == MAP_FAILED) {
				fprintf(stderr, "lazy_consumer: %s: %s\n", verify, strerror(errno));
				want = NULL;
				goto exit;
			}
		}
		if (!size)
			size = want_size;
	}
	if (!size && image) {
		int r = image_size(image, &size);

		if (r) {
			fprintf(stderr, "lazy_consumer: %s: cannot learn the size: %s\n", image,
				strerror(-r));
			goto exit;
		}
	}
	if (!size) {
		fprintf(stderr, "lazy_consumer: give --size, --verify or --image\n");
		ret = 1;
		goto exit;
	}
	pages = (size + PAGE - 1) / PAGE;
	if (nregions > pages)
		nregions = pages;

	/* Region k holds pages [k * pages / n, (k + 1) * pages / n), mapped on its own. */
	for (k = 0; k < nregions; k++) {
		uint64_t p0 = k * pages / nregions, p1 = (k + 1) * pages / nregions;
		void *a;

		rg[k].offset = p0 * PAGE;
		rg[k].size = (p1 - p0) * PAGE;
		a = mmap(NULL, rg[k].size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (a == MAP_FAILED) {
			fprintf(stderr, "lazy_consumer: mmap: %s\n", strerror(errno));
			goto exit;
		}
		rg[k].addr = a;
		lr[k] = (struct pgc_lazy_region){ a, rg[k].size, rg[k].offset };
	}
	lat = calloc(nrand ? nrand : 1, sizeof(*lat));
	if (!lat) {
		fprintf(stderr, "lazy_consumer: out of memory\n");
		goto exit;
	}

	t0 = now_ns();
	if (form == FORM_LIBRARY)
		uffd = pgc_lazy_attach(sock, lr, nregions);
	else
		uffd = attach_by_hand(sock, rg, nregions, form);
	if (uffd < 0) {
		fprintf(stderr, "lazy_consumer: %s: %s\n", sock, pgc_strerror(uffd));
		goto exit;
	}
	t_attach = now_ns() - t0;

	/* Random pages (of the last --hot bytes): the time of each first touch. */
	hot_pages = hot && hot / PAGE < pages ? (hot / PAGE ? hot / PAGE : 1) : pages;
	for (i = 0; i < nrand; i++) {
		uint64_t p = pages - hot_pages + rng_next() % hot_pages, t;
		const unsigned char *addr;

		for (k = 0; k + 1 < nregions && p >= (rg[k].offset + rg[k].size) / PAGE; k++)
			;
		addr = rg[k].addr + (p * PAGE - rg[k].offset);
		t = now_ns();
		(void)*(const volatile unsigned char *)addr;
		lat[i] = now_ns() - t;
		if (want && !page_matches(addr, p * PAGE, want, want_size)) {
			mismatches++;
			if (p * PAGE < first_bad)
				first_bad = p * PAGE;
		}
		if (i + 1 == kill_after) {
			fflush(NULL);
			raise(SIGKILL);
		}
		if (i + 1 == stop_after)
			raise(SIGSTOP);
	}
	t_rand = now_ns() - t0;
	/* Then every page, in order. */
	for (k = 0; k < nregions; k++) {
		for (i = 0; i < rg[k].size; i += PAGE) {
			const unsigned char *addr = rg[k].addr + i;

			if (want) {
				if (!page_matches(addr, rg[k].offset + i, want, want_size)) {
					mismatches++;
					if (rg[k].offset + i < first_bad)
						first_bad = rg[k].offset + i;
				}
			} else {
				(void)*(const volatile unsigned char *)addr;
			}
		}
	}
	t_all = now_ns() - t0;

	t_first = nrand ? lat[0] : 0;
	qsort(lat, nrand, sizeof(*lat), cmp_u64);
	printf("bytes=%" PRIu64 " regions=%" PRIu64 " attach_ms=%.3f first_access_ms=%.3f random=%"
	       PRIu64 " p50_us=%.1f p99_us=%.1f random_ms=%.1f all_ms=%.1f verified=%s",
	       (uint64_t)(pages * PAGE), nregions, (double)t_attach / 1e6, (double)t_first / 1e6,
	       nrand,
	       nrand ? (double)lat[nrand / 2] / 1e3 : 0.0,
	       nrand ? (double)lat[nrand * 99 / 100] / 1e3 : 0.0,
	       (double)t_rand / 1e6,
	       (double)t_all / 1e6, !want ? "no" : mismatches ? "MISMATCH" : "yes");
	if (mismatches)
		printf(" mismatched_pages=%" PRIu64 " first_mismatch=%" PRIu64, mismatches,
		       first_bad);
	printf("\n");
	if (mismatches)
		fprintf(stderr, "lazy_consumer: %" PRIu64 " page(s) differ from %s, first at offset %"
			PRIu64 "\n", mismatches, verify, first_bad);
	ret = mismatches ? 1 : 0;
exit:
	if (uffd >= 0)
		close(uffd);
	for (k = 0; k < MAX_REGIONS; k++)
		if (rg[k].addr)
			munmap(rg[k].addr, rg[k].size);
	if (want)
		munmap((void *)want, want_size);
	if (vfd >= 0)
		close(vfd);
	free(lat);
	return ret;
}
