/* SPDX-License-Identifier: Apache-2.0 */
/*
 * aio_bench.c - throughput of the async I/O queue (src/aio) per backend,
 * request size and queue depth: reads from the page cache and with
 * O_DIRECT from a file under /var/tmp (1 GiB by default), cold (each
 * cell first drops the file from the page cache with fadvise), and with
 * --write buffered writes to tmpfs (/dev/shm) and to disk, the save
 * path. Reads go in file-offset order into one pre-faulted buffer, the
 * way a restore fills a memory file. Prints a table of MiB/s and, per
 * row, the share of wall time spent inside aio_submit() at the deepest
 * queue (native AIO does buffered I/O inside io_submit). --repeat N
 * reports the best of N runs per cell, to see past other load.
 *
 * Usage: aio_bench [--size BYTES[K|M|G]] [--quick] [--time SECS]
 *                  [--dir DIR] [--write] [--backends a,b,c] [--repeat N]
 * $PGCKPT_AIO_THREADS sets the thread pool's size, as for the library.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "aio/aio.h"

static const size_t req_sizes[] = { 4096, 65536, 262144, 1048576 };
static const unsigned depths[] = { 1, 16, 128 };
static unsigned repeat = 1;	/* --repeat: best of this many runs per cell */
#define NSIZES (sizeof(req_sizes) / sizeof(req_sizes[0]))
#define NDEPTHS (sizeof(depths) / sizeof(depths[0]))

struct cell {
	double mibs;		/* MiB/s, < 0: failed */
	double submit_share;	/* of wall time inside aio_submit */
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	uint64_t v = strtoull(s, &end, 0);

	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end || !v)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Create @path of @size bytes of incompressible data; returns 0 or -errno. */
static int make_file(const char *path, uint64_t size)
{
	enum { CH = 1 << 20 };
	uint64_t x = 0x9e3779b97f4a7c15ULL, off;
	uint64_t *buf = malloc(CH);
	size_t i;
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || !buf) {
		ret = fd < 0 ? -errno : -ENOMEM;
		goto exit;
	}
	for (off = 0; off < size; off += CH) {
		size_t n = size - off < CH ? (size_t)(size - off) : CH;

		for (i = 0; i < CH / 8; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = x;
		}
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
			ret = -EIO;
			goto exit;
		}
	}
	if (fsync(fd))
		ret = -errno;
exit:
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

/*
 * Move up to @size bytes between @fd and @mem in @rsz requests, @depth in
 * flight, for at most @limit seconds. Returns 0 or -errno.
 */
static int run(enum aio_backend b, int fd, bool write, unsigned char *mem,
	       uint64_t size, size_t rsz, unsigned depth, double limit,
	       struct cell *out)
{
	struct aio_completion comp[128];
	struct aio_queue *q = NULL;
	uint64_t next = 0, moved = 0;
	double t0, t1, tsub = 0, ts;
	int ret, n, i;

	ret = aio_queue_new(b, depth, &q, NULL);
	if (ret)
		goto exit;
	t0 = now();
	for (;;) {
		bool stop = now() - t0 > limit;

		while (!stop && next + rsz <= size) {
			struct aio_req r = {
				.id = next, .op = write ? AIO_OP_WRITE : AIO_OP_READ,
				.fd = fd, .off = next, .buf = mem + next, .len = rsz,
			};
			if (aio_add(q, &r) == -EAGAIN)
				break;
			next += rsz;
		}
		ts = now();
		ret = aio_submit(q);
		tsub += now() - ts;
		if (ret)
			goto exit;
		if (!aio_inflight(q))
			break;
		n = aio_wait(q, 1, comp, 128);
		if (n < 0) {
			ret = n;
			goto exit;
		}
		for (i = 0; i < n; i++) {
			if (comp[i].res != (int64_t)rsz) {
				ret = comp[i].res < 0 ? (int)comp[i].res : -EIO;
				goto exit;
			}
			moved += rsz;
		}
	}
	t1 = now();
	out->mibs = (double)moved / (1 << 20) / (t1 - t0);
	out->submit_share = tsub / (t1 - t0);
exit:
	aio_queue_destroy(q);
	return ret;
}

static void print_row(const char *mode, enum aio_backend b, size_t rsz,
		      const struct cell *c)
{
	unsigned d;

	printf("%-8s %-8s %5zuK", mode, aio_backend_name(b), rsz >> 10);
	for (d = 0; d < NDEPTHS; d++) {
		if (c[d].mibs < 0)
			printf(" %9s", "error");
		else
			printf(" %9.0f", c[d].mibs);
	}
	printf(" %7.0f%%\n", c[NDEPTHS - 1].submit_share * 100);
}

static void header(const char *what)
{
	unsigned d;

	printf("\n%s (MiB/s)\n%-8s %-8s %6s", what, "mode", "backend", "req");
	for (d = 0; d < NDEPTHS; d++)
		printf("    qd%-4u", depths[d]);
	printf(" %8s\n", "sub%qd128");
}

/* One table block: every backend x size x depth for @mode on @path. */
static void sweep(const char *mode, const char *path, int oflags, bool write, bool cold,
		  unsigned char *mem, uint64_t size, double limit,
		  const enum aio_backend *bs, unsigned nb)
{
	struct cell cells[NDEPTHS], one;
	unsigned bi, si, d, r;
	int fd, ret;

	for (bi = 0; bi < nb; bi++) {
		for (si = 0; si < NSIZES; si++) {
			for (d = 0; d < NDEPTHS; d++) {
				cells[d].mibs = -1;
				cells[d].submit_share = 0;
				fd = open(path, oflags, 0600);
				if (fd < 0) {
					fprintf(stderr, "%s: %s\n", path, strerror(errno));
					continue;
				}
				for (r = 0, ret = 0; r < repeat && !ret; r++) {
					/* cold: out of the page cache (this file only). */
					if (cold)
						posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
					ret = run(bs[bi], fd, write, mem, size, req_sizes[si],
						  depths[d], limit, &one);
					if (!ret && one.mibs > cells[d].mibs)
						cells[d] = one;
				}
				if (ret) {
					fprintf(stderr, "%s %s %zu qd%u: %s\n", mode,
						aio_backend_name(bs[bi]), req_sizes[si],
						depths[d], strerror(-ret));
					cells[d].mibs = -1;
				}
				close(fd);
			}
			print_row(mode, bs[bi], req_sizes[si], cells);
		}
	}
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--size BYTES[K|M|G]] [--quick] [--time SECS] [--dir DIR]\n"
		"          [--write] [--backends threads,libaio,uring] [--repeat N]\n", argv0);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "quick", no_argument, NULL, 'q' },
		{ "time", required_argument, NULL, 't' },
		{ "dir", required_argument, NULL, 'd' },
		{ "write", no_argument, NULL, 'w' },
		{ "backends", required_argument, NULL, 'b' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum aio_backend bs[3] = { AIO_THREADS, AIO_LIBAIO, AIO_URING }, avail[3];
	uint64_t size = 1ULL << 30;
	const char *dir = "/var/tmp", *notice = NULL;
	char path[512], wpath[512], *list = NULL, *tok, *save;
	bool quick = false, write = false;
	unsigned nb = 3, na = 0, i;
	double limit = 2.0, t0, t1;
	unsigned char *mem = NULL, *src = NULL;
	struct aio_queue *q;
	int c, ret = 1;

	while ((c = getopt_long(argc, argv, "s:qt:d:wb:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_size(optarg, &size)) {
				usage(argv[0]);
				return 1;
			}
			break;
		case 'q':
			quick = true;
			break;
		case 't':
			limit = strtod(optarg, NULL);
			break;
		case 'd':
			dir = optarg;
			break;
		case 'w':
			write = true;
			break;
		case 'b':
			list = optarg;
			break;
		case 'r':
			repeat = (unsigned)strtoul(optarg, NULL, 10);
			if (!repeat)
				repeat = 1;
			break;
		default:
			usage(argv[0]);
			return c == 'h' ? 0 : 1;
		}
	}
	if (quick) {
		if (size > (256ULL << 20))
			size = 256ULL << 20;
		if (limit > 0.3)
			limit = 0.3;
	}
	size &= ~((uint64_t)(1 << 20) - 1);
	if (size < (1 << 20)) {
		fprintf(stderr, "--size: at least 1M\n");
		return 1;
	}
	if (list) {
		nb = 0;
		for (tok = strtok_r(list, ",", &save); tok && nb < 3;
		     tok = strtok_r(NULL, ",", &save)) {
			if (aio_parse_backend(tok, &bs[nb]) || bs[nb] == AIO_AUTO) {
				fprintf(stderr, "unknown backend %s\n", tok);
				return 1;
			}
			nb++;
		}
	}
	for (i = 0; i < nb; i++) {
		q = NULL;
		if (aio_queue_new(bs[i], 1, &q, NULL) == 0)
			avail[na++] = bs[i];
		else
			printf("backend %s unavailable: skipped\n", aio_backend_name(bs[i]));
		aio_queue_destroy(q);
	}
	q = NULL;
	if (aio_queue_new(AIO_AUTO, 1, &q, &notice) == 0)
		printf("auto picks %s%s%s\n", aio_backend_name(aio_queue_backend(q)),
		       notice ? ": " : "", notice ? notice : "");
	aio_queue_destroy(q);

	snprintf(path, sizeof(path), "%s/pgckpt-aio-bench.%d", dir, (int)getpid());
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	src = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (mem == MAP_FAILED || src == MAP_FAILED) {
		fprintf(stderr, "cannot map %" PRIu64 " bytes\n", size);
		goto exit;
	}
	memset(mem, 1, size);
	memset(src, 2, size);
	printf("file %s, %" PRIu64 " MiB, up to %.1f s per cell, best of %u, threads pool %s\n",
	       path, size >> 20, limit, repeat,
	       getenv("PGCKPT_AIO_THREADS") ? getenv("PGCKPT_AIO_THREADS") : "default");
	t0 = now();
	memcpy(mem, src, size);
	t1 = now();
	printf("memcpy baseline: %.0f MiB/s\n", (double)size / (1 << 20) / (t1 - t0));

	if (make_file(path, size)) {
		fprintf(stderr, "cannot create %s\n", path);
		goto exit;
	}
	/* The file was just written through the page cache: it is all cached. */
	header("read");
	sweep("cache", path, O_RDONLY, false, false, mem, size, limit, avail, na);
	sweep("cold", path, O_RDONLY, false, true, mem, size, limit, avail, na);
	sweep("direct", path, O_RDONLY | O_DIRECT, false, false, mem, size, limit, avail, na);
	unlink(path);

	if (write) {
		header("buffered write");
		snprintf(wpath, sizeof(wpath), "/dev/shm/pgckpt-aio-bench.%d", (int)getpid());
		sweep("tmpfs", wpath, O_WRONLY | O_CREAT, true, false, src, size, limit, avail, na);
		unlink(wpath);
		sweep("disk", path, O_WRONLY | O_CREAT, true, false, src, size, limit, avail, na);
		unlink(path);
	}
	ret = 0;
exit:
	unlink(path);
	if (mem && mem != MAP_FAILED)
		munmap(mem, size);
	if (src && src != MAP_FAILED)
		munmap(src, size);
	return ret;
}
