/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tests/unit/aio.c - the async I/O queue (src/aio), one suite run against
 * every backend: read, write, readv and writev of random data at two
 * capacities, O_DIRECT, errors in completions (bad fd, EOF, ENOSPC,
 * short writes), request validation, aio_wait(min) semantics, and
 * destroying a queue with requests in flight.
 *
 * With $PGCKPT_AIO=NAME only that backend runs, and the program exits 77
 * when it is unavailable; otherwise unavailable backends are skipped with
 * a note. Usage: aio [SEED].
 */
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "aio/aio.h"
#include "aio/aio_impl.h"
#include "test.h"

#define BLK 4096u
#define NBLK 1024u

static enum aio_backend cur;		/* the backend under test */

/* A queue on the backend under test; fails the case if it cannot be made. */
static struct aio_queue *qnew(unsigned cap)
{
	struct aio_queue *q = NULL;
	int ret = aio_queue_new(cur, cap, &q, NULL);

	CHECK_EQ(ret, 0);
	if (q)
		CHECK_EQ(aio_queue_backend(q), cur);
	return ret ? NULL : q;
}

/* A file of @len random bytes, also returned in *@data (malloc'd). */
static int make_file(const char *name, size_t len, unsigned char **data)
{
	unsigned char *d = malloc(len ? len : 1);
	int fd;

	test_fill_random(d, len);
	fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || pwrite(fd, d, len, 0) != (ssize_t)len) {
		printf("  cannot create %s: %s\n", name, strerror(errno));
		exit(1);
	}
	if (data)
		*data = d;
	else
		free(d);
	return fd;
}

static void shuffle(unsigned *a, unsigned n)
{
	unsigned i, j, t;

	for (i = 0; i < n; i++)
		a[i] = i;
	for (i = n; i > 1; i--) {
		j = (unsigned)test_rand_below(i);
		t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
}

/*
 * Run @n requests through @q, keeping it full, waiting with random min
 * and max; check every id completes exactly once with expect[id].
 */
static void drive(struct aio_queue *q, const struct aio_req *reqs, unsigned n,
		  const int64_t *expect)
{
	struct aio_completion comp[160];
	unsigned char *seen = calloc(n, 1);
	unsigned next = 0, got = 0, inflight, min, max, i;
	int ret;

	while (got < n) {
		while (next < n) {
			ret = aio_add(q, &reqs[next]);
			if (ret == -EAGAIN)
				break;
			CHECK_EQ(ret, 0);
			if (ret)
				goto exit;
			next++;
		}
		CHECK(aio_inflight(q) <= aio_capacity(q));
		CHECK_EQ(aio_submit(q), 0);
		inflight = aio_inflight(q);
		min = 1 + (unsigned)test_rand_below(inflight);
		max = 1 + (unsigned)test_rand_below(sizeof(comp) / sizeof(comp[0]));
		ret = aio_wait(q, min, comp, max);
		CHECK(ret >= 0);
		if (ret < 0)
			goto exit;
		CHECK((unsigned)ret >= (min < max ? min : max));
		CHECK((unsigned)ret <= max);
		CHECK_EQ(aio_inflight(q), inflight - (unsigned)ret);
		for (i = 0; i < (unsigned)ret; i++) {
			CHECK(comp[i].id < n);
			if (comp[i].id >= n)
				goto exit;
			CHECK(!seen[comp[i].id]);
			seen[comp[i].id] = 1;
			if (comp[i].res != expect[comp[i].id])
				printf("  id %" PRIu64 ": res %" PRId64 ", expected %" PRId64 "\n",
				       comp[i].id, comp[i].res, expect[comp[i].id]);
			CHECK_EQ(comp[i].res, expect[comp[i].id]);
		}
		got += (unsigned)ret;
	}
	CHECK_EQ(aio_inflight(q), 0);
	CHECK_EQ(aio_wait(q, 1, comp, 1), 0);
exit:
	free(seen);
}

/*
 * One data round trip with @op at capacity @cap: 1024 x 4 KiB blocks
 * in random order; vectored ops gather 1..8 file blocks from scattered
 * buffer blocks (buffer block perm[b] holds file block b).
 */
static void roundtrip(enum aio_op op, unsigned cap)
{
	bool vec = op == AIO_OP_READV || op == AIO_OP_WRITEV;
	bool wr = op == AIO_OP_WRITE || op == AIO_OP_WRITEV;
	unsigned char *file_data, *buf, *check;
	struct aio_req *reqs = calloc(NBLK, sizeof(*reqs));
	struct iovec *iov = calloc(NBLK, sizeof(*iov));
	int64_t *expect = calloc(NBLK, sizeof(*expect));
	unsigned perm[NBLK], order[NBLK], n = 0, b, j, nb;
	struct aio_queue *q;
	int fd;

	fd = make_file("data", (size_t)NBLK * BLK, &file_data);
	buf = malloc((size_t)NBLK * BLK);
	check = malloc((size_t)NBLK * BLK);
	shuffle(perm, NBLK);
	if (wr) {
		/* Source buffer: the data scattered by perm; file starts zero. */
		for (b = 0; b < NBLK; b++)
			memcpy(buf + (size_t)perm[b] * BLK, file_data + (size_t)b * BLK, BLK);
		CHECK_EQ(ftruncate(fd, 0), 0);
		CHECK_EQ(ftruncate(fd, (off_t)NBLK * BLK), 0);
	} else {
		memset(buf, 0, (size_t)NBLK * BLK);
	}

	for (b = 0; b < NBLK; b += nb) {
		nb = vec ? 1 + (unsigned)test_rand_below(8) : 1;
		if (nb > NBLK - b)
			nb = NBLK - b;
		reqs[n].id = n;
		reqs[n].op = op;
		reqs[n].fd = fd;
		reqs[n].off = (uint64_t)b * BLK;
		if (vec) {
			for (j = 0; j < nb; j++) {
				iov[b + j].iov_base = buf + (size_t)perm[b + j] * BLK;
				iov[b + j].iov_len = BLK;
			}
			reqs[n].iov = &iov[b];
			reqs[n].len = nb;
		} else {
			reqs[n].buf = buf + (size_t)perm[b] * BLK;
			reqs[n].len = BLK;
		}
		expect[n] = (int64_t)nb * BLK;
		n++;
	}
	/* Issue them in random order, ids stay as built. */
	{
		struct aio_req *shuf = calloc(n, sizeof(*shuf));

		shuffle(order, n);
		for (j = 0; j < n; j++)
			shuf[j] = reqs[order[j]];
		q = qnew(cap);
		if (q)
			drive(q, shuf, n, expect);
		aio_queue_destroy(q);
		free(shuf);
	}

	if (wr) {
		CHECK_EQ(pread(fd, check, (size_t)NBLK * BLK, 0), (ssize_t)NBLK * BLK);
		CHECK(memcmp(check, file_data, (size_t)NBLK * BLK) == 0);
	} else {
		for (b = 0; b < NBLK; b++)
			if (memcmp(buf + (size_t)perm[b] * BLK, file_data + (size_t)b * BLK, BLK))
				break;
		CHECK_EQ(b, NBLK);
	}
	close(fd);
	unlink("data");
	free(file_data);
	free(buf);
	free(check);
	free(reqs);
	free(iov);
	free(expect);
}

static void test_read_cap8(void) { roundtrip(AIO_OP_READ, 8); }
static void test_read_cap128(void) { roundtrip(AIO_OP_READ, 128); }
static void test_write_cap8(void) { roundtrip(AIO_OP_WRITE, 8); }
static void test_write_cap128(void) { roundtrip(AIO_OP_WRITE, 128); }
static void test_readv_cap8(void) { roundtrip(AIO_OP_READV, 8); }
static void test_readv_cap128(void) { roundtrip(AIO_OP_READV, 128); }
static void test_writev_cap8(void) { roundtrip(AIO_OP_WRITEV, 8); }
static void test_writev_cap128(void) { roundtrip(AIO_OP_WRITEV, 128); }

/* Open @name under the test dir, else /var/tmp, with O_DIRECT; -1: refused. */
static int open_direct(char *path, size_t pathlen, unsigned char **data, size_t len)
{
	const char *dirs[] = { ".", "/var/tmp" };
	unsigned i;
	int fd, dfd;

	for (i = 0; i < 2; i++) {
		snprintf(path, pathlen, "%s/pgckpt-aio-direct.%d", dirs[i], (int)getpid());
		fd = make_file(path, len, data);
		fsync(fd);
		close(fd);
		dfd = open(path, O_RDONLY | O_DIRECT);
		if (dfd >= 0)
			return dfd;
		printf("  note: O_DIRECT refused in %s: %s\n", dirs[i], strerror(errno));
		unlink(path);
		free(*data);
		*data = NULL;
	}
	return -1;
}

static void test_direct_read(void)
{
	enum { N = 256 };
	unsigned char *data = NULL, *buf = NULL;
	struct aio_req reqs[N + 1];
	int64_t expect[N + 1];
	struct iovec iov[N][2];
	unsigned i, perm[N];
	struct aio_queue *q;
	char path[128];
	int fd;

	fd = open_direct(path, sizeof(path), &data, (size_t)N * BLK);
	if (fd < 0) {
		printf("  note: no file system here takes O_DIRECT; case skipped\n");
		return;
	}
	if (posix_memalign((void **)&buf, BLK, (size_t)N * BLK + BLK)) {
		CHECK(0);
		goto exit;
	}
	memset(buf, 0, (size_t)N * BLK);
	shuffle(perm, N);
	/* Even ids: 4 KiB reads; odd: readv of two 2 KiB halves swapped. */
	for (i = 0; i < N; i++) {
		reqs[i].id = i;
		reqs[i].fd = fd;
		reqs[i].off = (uint64_t)perm[i] * BLK;
		expect[i] = BLK;
		if (i % 2 == 0) {
			reqs[i].op = AIO_OP_READ;
			reqs[i].buf = buf + (size_t)perm[i] * BLK;
			reqs[i].len = BLK;
		} else {
			/* Halves of 2 KiB stay 512-aligned. */
			iov[i][0].iov_base = buf + (size_t)perm[i] * BLK;
			iov[i][0].iov_len = BLK / 2;
			iov[i][1].iov_base = buf + (size_t)perm[i] * BLK + BLK / 2;
			iov[i][1].iov_len = BLK / 2;
			reqs[i].op = AIO_OP_READV;
			reqs[i].iov = iov[i];
			reqs[i].len = 2;
		}
	}
	/* And a misaligned one: the kernel refuses it in the completion. */
	reqs[N] = (struct aio_req){ .id = N, .op = AIO_OP_READ, .fd = fd, .off = 1,
				    .buf = buf + N * BLK + 1, .len = 100 };
	expect[N] = -EINVAL;
	q = qnew(32);
	if (q)
		drive(q, reqs, N + 1, expect);
	aio_queue_destroy(q);
	CHECK(memcmp(buf, data, (size_t)N * BLK) == 0);
exit:
	close(fd);
	unlink(path);
	free(buf);
	free(data);
}

/* Run @n requests and check the results against @expect. */
static void run_expect(const struct aio_req *reqs, unsigned n, const int64_t *expect)
{
	struct aio_queue *q = qnew(8);

	if (q)
		drive(q, reqs, n, expect);
	aio_queue_destroy(q);
}

static void test_errors(void)
{
	unsigned char buf[3 * BLK], *data;
	struct iovec iov[3] = {
		{ buf, BLK }, { buf + BLK, BLK }, { buf + 2 * BLK, BLK },
	};
	int fd, rofd, closed, full;

	fd = make_file("short", 10000, &data);
	rofd = open("short", O_RDONLY);
	closed = open("short", O_RDONLY);
	close(closed);		/* a number that is no longer open */
	full = open("/dev/full", O_WRONLY);

	{
		struct aio_req r[] = {
			{ .id = 0, .op = AIO_OP_READ, .fd = -1, .buf = buf, .len = BLK },
			{ .id = 1, .op = AIO_OP_READ, .fd = closed, .buf = buf, .len = BLK },
			{ .id = 2, .op = AIO_OP_WRITEV, .fd = 1000000, .iov = iov, .len = 3 },
			{ .id = 3, .op = AIO_OP_WRITE, .fd = rofd, .buf = buf, .len = BLK },
			{ .id = 4, .op = AIO_OP_READ, .fd = fd, .off = 8192, .buf = buf, .len = BLK },
			{ .id = 5, .op = AIO_OP_READ, .fd = fd, .off = 10000, .buf = buf, .len = BLK },
			{ .id = 6, .op = AIO_OP_READ, .fd = fd, .off = 1 << 20, .buf = buf, .len = BLK },
			{ .id = 7, .op = AIO_OP_READV, .fd = fd, .off = 4096, .iov = iov, .len = 3 },
			{ .id = 8, .op = AIO_OP_READ, .fd = fd, .off = 0, .buf = buf, .len = 0 },
			{ .id = 9, .op = AIO_OP_WRITE, .fd = full, .buf = buf, .len = BLK },
		};
		int64_t e[] = { -EBADF, -EBADF, -EBADF, -EBADF, 10000 - 8192, 0, 0,
				10000 - 4096, 0, -ENOSPC };

		run_expect(r, sizeof(r) / sizeof(r[0]), e);
	}
	/* The short readv really read what is there. */
	CHECK(memcmp(buf, data + 4096, 10000 - 4096) == 0);

	close(full);
	close(rofd);
	close(fd);
	free(data);
}

/*
 * A write cut short by RLIMIT_FSIZE: the layer continues it, and the
 * continuation fails with EFBIG (a write never completes short).
 */
static void test_short_write(void)
{
	unsigned char buf[2 * BLK];
	struct rlimit old, lim;
	void (*oldsig)(int);
	int fd;

	fd = open("fsize", O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	memset(buf, 0x5a, sizeof(buf));
	oldsig = signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = 3 * BLK;
	CHECK_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
	{
		struct aio_req r[] = {
			{ .id = 0, .op = AIO_OP_WRITE, .fd = fd, .off = 2 * BLK, .buf = buf, .len = 2 * BLK },
			{ .id = 1, .op = AIO_OP_WRITE, .fd = fd, .off = 0, .buf = buf, .len = 2 * BLK },
		};
		int64_t e[] = { -EFBIG, 2 * BLK };

		run_expect(r, 2, e);
	}
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, oldsig);
	/* The part before the limit was written. */
	{
		struct stat st;

		CHECK_EQ(fstat(fd, &st), 0);
		CHECK_EQ(st.st_size, 3 * BLK);
	}
	close(fd);
}

static void test_validation(void)
{
	struct iovec iov[2] = { { NULL, 0 }, { NULL, 16 } };
	struct aio_completion c;
	struct aio_queue *q = NULL;
	unsigned char buf[16];
	unsigned i;

	CHECK_EQ(aio_queue_new(cur, 0, &q, NULL), -EINVAL);
	CHECK_EQ(aio_queue_new(cur, 4097, &q, NULL), -EINVAL);
	CHECK_EQ(aio_queue_new(cur, 4, NULL, NULL), -EINVAL);
	q = qnew(4);
	if (!q)
		return;
	CHECK_EQ(aio_add(q, &(struct aio_req){ .op = (enum aio_op)9, .fd = 0, .buf = buf, .len = 1 }), -EINVAL);
	CHECK_EQ(aio_add(q, &(struct aio_req){ .op = AIO_OP_READ, .fd = 0, .buf = NULL, .len = 1 }), -EINVAL);
	CHECK_EQ(aio_add(q, &(struct aio_req){ .op = AIO_OP_READV, .fd = 0, .iov = iov, .len = IOV_MAX + 1 }), -EINVAL);
	CHECK_EQ(aio_add(q, &(struct aio_req){ .op = AIO_OP_READV, .fd = 0, .iov = iov, .len = 2 }), -EINVAL);
	CHECK_EQ(aio_add(q, &(struct aio_req){ .op = AIO_OP_READ, .fd = 0, .off = (uint64_t)INT64_MAX, .buf = buf, .len = 2 }), -EINVAL);
	CHECK_EQ(aio_add(q, NULL), -EINVAL);
	CHECK_EQ(aio_inflight(q), 0);
	CHECK_EQ(aio_wait(q, 1, NULL, 1), -EINVAL);
	/* Full at capacity. */
	for (i = 0; i < 4; i++)
		CHECK_EQ(aio_add(q, &(struct aio_req){ .id = i, .op = AIO_OP_READ, .fd = -1, .buf = buf, .len = 1 }), 0);
	CHECK_EQ(aio_add(q, &(struct aio_req){ .op = AIO_OP_READ, .fd = -1, .buf = buf, .len = 1 }), -EAGAIN);
	CHECK_EQ(aio_capacity(q), 4);
	CHECK_EQ(aio_inflight(q), 4);
	/* aio_wait starts what was added but not submitted. */
	for (i = 0; i < 4; i++) {
		CHECK_EQ(aio_wait(q, 1, &c, 1), 1);
		CHECK_EQ(c.res, -EBADF);
	}
	CHECK_EQ(aio_inflight(q), 0);
	aio_queue_destroy(q);
}

static void test_wait_semantics(void)
{
	enum { N = 12 };
	struct aio_completion c[N];
	unsigned char *data, buf[N][512];
	struct aio_queue *q;
	unsigned i, total = 0;
	uint64_t seen = 0;
	int fd, n;

	fd = make_file("w", N * 512, &data);
	q = qnew(16);
	if (!q)
		goto exit;
	/* Nothing in flight: returns 0 at once, whatever min. */
	CHECK_EQ(aio_wait(q, 5, c, N), 0);
	CHECK_EQ(aio_wait(q, 0, c, N), 0);
	for (i = 0; i < N; i++)
		CHECK_EQ(aio_add(q, &(struct aio_req){ .id = i, .op = AIO_OP_READ, .fd = fd,
				      .off = i * 512, .buf = buf[i], .len = 512 }), 0);
	CHECK_EQ(aio_submit(q), 0);
	CHECK_EQ(aio_submit(q), 0);	/* nothing new: a no-op */
	/* min 3, max 2: blocks for 3, returns 2, keeps the rest. */
	n = aio_wait(q, 3, c, 2);
	CHECK_EQ(n, 2);
	CHECK_EQ(aio_inflight(q), N - 2);
	for (i = 0; i < (unsigned)n; i++)
		seen |= 1ull << c[i].id;
	total += (unsigned)n;
	/* min 0 does not block; it may return anything ready. */
	n = aio_wait(q, 0, c, N);
	CHECK(n >= 0);
	for (i = 0; i < (unsigned)(n > 0 ? n : 0); i++)
		seen |= 1ull << c[i].id;
	total += (unsigned)(n > 0 ? n : 0);
	/* min beyond what is in flight is clamped: returns all the rest. */
	n = aio_wait(q, 1000, c, N);
	CHECK_EQ((unsigned)n, N - total);
	for (i = 0; i < (unsigned)(n > 0 ? n : 0); i++) {
		CHECK_EQ(c[i].res, 512);
		seen |= 1ull << c[i].id;
	}
	CHECK_EQ(seen, (1ull << N) - 1);
	CHECK_EQ(aio_inflight(q), 0);
	for (i = 0; i < N; i++)
		CHECK(memcmp(buf[i], data + i * 512, 512) == 0);
	/* The queue is reusable after it drained. */
	CHECK_EQ(aio_add(q, &(struct aio_req){ .id = 77, .op = AIO_OP_READ, .fd = fd,
			      .off = 0, .buf = buf[0], .len = 512 }), 0);
	CHECK_EQ(aio_wait(q, 1, c, N), 1);
	CHECK_EQ(c[0].id, 77);
	CHECK_EQ(c[0].res, 512);
exit:
	aio_queue_destroy(q);
	close(fd);
	free(data);
}

/*
 * The fault hook's "wait:N:ERRNO": the Nth aio_wait fails before reaping,
 * its requests stay in flight, and destroying the queue ends them.
 */
static void test_fault_wait(void)
{
	struct aio_completion c[4];
	unsigned char buf[4][512];
	struct aio_queue *q;
	unsigned i;
	int fd;

	fd = make_file("fw", 4 * 512, NULL);
	setenv("PGCKPT_FAULT_AIO", "wait:2:5", 1);
	q = qnew(4);
	unsetenv("PGCKPT_FAULT_AIO");
	if (!q)
		goto exit;
	for (i = 0; i < 4; i++)
		CHECK_EQ(aio_add(q, &(struct aio_req){ .id = i, .op = AIO_OP_READ, .fd = fd,
				      .off = i * 512, .buf = buf[i], .len = 512 }), 0);
	CHECK_EQ(aio_submit(q), 0);
	CHECK_EQ(aio_wait(q, 1, c, 1), 1);      /* the first wait works */
	CHECK_EQ(aio_wait(q, 1, c, 4), -EIO);   /* the second fails */
	CHECK_EQ(aio_inflight(q), 3);           /* nothing was reaped */
exit:
	aio_queue_destroy(q);
	close(fd);
}

/* A big iovec array, right at IOV_MAX. */
static void test_iov_max(void)
{
	struct iovec *iov = calloc(IOV_MAX, sizeof(*iov));
	unsigned char *data, *buf = calloc(IOV_MAX, 16);
	struct aio_req r = { .id = 0, .op = AIO_OP_READV, .off = 16, .len = IOV_MAX };
	int64_t e = (int64_t)IOV_MAX * 16 - 16;
	unsigned i;
	int fd;

	fd = make_file("iovmax", (size_t)IOV_MAX * 16, &data);
	for (i = 0; i < IOV_MAX; i++) {
		iov[i].iov_base = buf + (size_t)(IOV_MAX - 1 - i) * 16;
		iov[i].iov_len = 16;
	}
	r.fd = fd;
	r.iov = iov;
	run_expect(&r, 1, &e);
	for (i = 0; i + 1 < IOV_MAX; i++)
		if (memcmp(buf + (size_t)(IOV_MAX - 1 - i) * 16, data + 16 + (size_t)i * 16, 16))
			break;
	CHECK_EQ(i, IOV_MAX - 1);
	close(fd);
	free(data);
	free(buf);
	free(iov);
}

/*
 * Destroy with requests added, submitted, and completed but not reaped.
 * Afterwards the buffers are refilled and must stay untouched.
 */
static void test_destroy_inflight(void)
{
	enum { CAP = 128, SZ = 256 * 1024 };
	unsigned char *buf = malloc((size_t)CAP * SZ);
	struct aio_completion c[4];
	struct aio_queue *q;
	unsigned i, round;
	size_t k;
	int fd, ret;

	memset(buf, 0, (size_t)CAP * SZ);
	fd = make_file("big", (size_t)CAP * SZ, NULL);
	for (round = 0; round < 3; round++) {
		q = qnew(CAP);
		if (!q)
			break;
		for (i = 0; i < CAP; i++) {
			ret = aio_add(q, &(struct aio_req){ .id = i, .op = i % 2 ? AIO_OP_READ : AIO_OP_WRITE,
					       .fd = fd, .off = (uint64_t)i * SZ,
					       .buf = buf + (size_t)i * SZ, .len = SZ });
			CHECK_EQ(ret, 0);
			/* Round 0: half never submitted; 1: all submitted; 2: some reaped. */
			if (round == 0 && i == CAP / 2)
				CHECK_EQ(aio_submit(q), 0);
		}
		if (round > 0)
			CHECK_EQ(aio_submit(q), 0);
		if (round == 2)
			CHECK(aio_wait(q, 2, c, 4) >= 2);
		aio_queue_destroy(q);
		memset(buf, 0xa5, (size_t)CAP * SZ);
		usleep(20000);
		for (k = 0; k < (size_t)CAP * SZ; k++)
			if (buf[k] != 0xa5)
				break;
		CHECK_EQ(k, (size_t)CAP * SZ);
	}
	close(fd);
	free(buf);
}

/*
 * The thread pool runs writes to one file one at a time, in the order
 * they were added (as io_uring runs buffered writes to a regular file):
 * rounds of 16 overlapping writes to one range of each of two files,
 * submitted at once, must leave the last one's bytes; a read of a third
 * file runs beside them.
 */
static void test_write_order(void)
{
	enum { N = 16, SZ = 1 << 20 };
	struct aio_completion c[2 * N + 1];
	unsigned char *buf, *got;
	struct iovec iov[N];
	struct aio_queue *q;
	int fd[3], round, n, i, f;

	if (cur != AIO_THREADS)
		return;		/* the other backends give no order guarantee */
	buf = malloc((size_t)N * SZ);
	got = malloc(SZ);
	for (i = 0; i < N; i++) {
		memset(buf + (size_t)i * SZ, i + 1, SZ);
		iov[i] = (struct iovec){ buf + (size_t)i * SZ, SZ };
	}
	fd[0] = make_file("order0", SZ, NULL);
	fd[1] = make_file("order1", SZ, NULL);
	fd[2] = make_file("order2", SZ, NULL);
	q = qnew(2 * N + 1);
	for (round = 0; q && round < 8; round++) {
		for (i = 0; i < N; i++)
			for (f = 0; f < 2; f++) {
				struct aio_req r = { .id = (uint64_t)(f * N + i), .fd = fd[f] };

				if (i % 2) {
					r.op = AIO_OP_WRITE;
					r.buf = buf + (size_t)i * SZ;
					r.len = SZ;
				} else {
					r.op = AIO_OP_WRITEV;
					r.iov = &iov[i];
					r.len = 1;
				}
				CHECK_EQ(aio_add(q, &r), 0);
			}
		CHECK_EQ(aio_add(q, &(struct aio_req){ .id = 2 * N, .op = AIO_OP_READ, .fd = fd[2],
					.buf = got, .len = SZ }), 0);
		CHECK_EQ(aio_submit(q), 0);
		for (n = 0; n < 2 * N + 1;) {
			int k = aio_wait(q, 1, c, 2 * N + 1);

			CHECK(k > 0);
			if (k <= 0)
				break;
			for (i = 0; i < k; i++)
				CHECK_EQ(c[i].res, SZ);
			n += k;
		}
		for (f = 0; f < 2; f++) {
			CHECK_EQ(pread(fd[f], got, SZ, 0), SZ);
			CHECK(memcmp(got, buf + (size_t)(N - 1) * SZ, SZ) == 0);
		}
	}
	aio_queue_destroy(q);
	for (f = 0; f < 3; f++)
		close(fd[f]);
	free(buf);
	free(got);
}

/* What a backend does with a call's result: retry -EAGAIN, then go synchronous; stop. */
static void test_complete(void)
{
	unsigned char buf[100], *data;
	struct aio_slot s = { .total = 100 };
	int fd, i;

	if (cur != AIO_THREADS)
		return;		/* backend-independent: once is enough */
	fd = make_file("complete", 100, &data);
	s.req = (struct aio_req){ .op = AIO_OP_READ, .fd = fd, .buf = buf, .len = 100 };
	/* A short call: the backend submits the next one. */
	CHECK(!aio_slot_complete(&s, 30, false));
	CHECK_EQ(s.done, 30);
	/* -EAGAIN: tried again AIO_EAGAIN_RETRIES times, then done here. */
	for (i = 0; i < AIO_EAGAIN_RETRIES; i++)
		CHECK(!aio_slot_complete(&s, -EAGAIN, false));
	CHECK(aio_slot_complete(&s, -EAGAIN, false));
	CHECK_EQ(s.res, 100);
	CHECK(memcmp(buf + 30, data + 30, 70) == 0);
	/* Stopping: a short call ends the request with what it moved. */
	s.done = 0;
	s.res = 0;
	CHECK(aio_slot_complete(&s, 40, true));
	CHECK_EQ(s.res, 40);
	s.done = 0;
	CHECK(aio_slot_complete(&s, -EAGAIN, true));
	CHECK_EQ(s.res, -EAGAIN);
	/* The last call of a request finishes it. */
	s.done = 60;
	CHECK(aio_slot_complete(&s, 40, false));
	CHECK_EQ(s.res, 100);
	close(fd);
	free(data);
}

/* The remainder logic of short transfers, on a slot directly. */
static void test_calls(void)
{
	char a[10], b[20], c[30];
	struct iovec iov[4] = { { a, 10 }, { NULL, 0 }, { b, 20 }, { c, 30 } };
	struct aio_slot s = { .req = { .op = AIO_OP_READV, .fd = 3, .off = 100, .iov = iov, .len = 4 },
			      .total = 60 };
	struct aio_call call;

	if (cur != AIO_THREADS)
		return;		/* backend-independent: once is enough */
	aio_slot_next_call(&s, &call);
	CHECK(call.vec && call.iov == iov && call.iovcnt == 4 && call.off == 100 && !call.write);
	CHECK(!aio_slot_advance(&s, 10));
	aio_slot_next_call(&s, &call);
	CHECK(call.vec && call.iov == &iov[2] && call.iovcnt == 2 && call.off == 110);
	CHECK(!aio_slot_advance(&s, 5));
	aio_slot_next_call(&s, &call);
	CHECK(!call.vec && call.buf == b + 5 && call.len == 15 && call.off == 115);
	CHECK(!aio_slot_advance(&s, 15));
	aio_slot_next_call(&s, &call);
	CHECK(call.vec && call.iov == &iov[3] && call.iovcnt == 1 && call.off == 130);
	/* EOF after 40 bytes: the short count. */
	CHECK(aio_slot_advance(&s, 0));
	CHECK_EQ(s.res, 30);
	/* A read error after data: the data; a write error: the error. */
	s.done = 20;
	CHECK(aio_slot_advance(&s, -EIO));
	CHECK_EQ(s.res, 20);
	s.req.op = AIO_OP_WRITEV;
	s.done = 20;
	CHECK(aio_slot_advance(&s, -ENOSPC));
	CHECK_EQ(s.res, -ENOSPC);
	s.done = 20;
	CHECK(aio_slot_advance(&s, 0));
	CHECK_EQ(s.res, -EIO);
	s.done = 20;
	CHECK(aio_slot_advance(&s, 40));
	CHECK_EQ(s.res, 60);
}

static void test_names(void)
{
	enum aio_backend b;
	const char *env = getenv("PGCKPT_AIO");
	char *saved = env ? strdup(env) : NULL;
	struct aio_queue *q = NULL;
	const char *notice = "x";

	if (cur != AIO_THREADS)
		return;
	CHECK_EQ(aio_parse_backend("threads", &b), 0);
	CHECK_EQ(b, AIO_THREADS);
	CHECK_EQ(aio_parse_backend("libaio", &b), 0);
	CHECK_EQ(b, AIO_LIBAIO);
	CHECK_EQ(aio_parse_backend("uring", &b), 0);
	CHECK_EQ(b, AIO_URING);
	CHECK_EQ(aio_parse_backend("auto", &b), 0);
	CHECK_EQ(b, AIO_AUTO);
	CHECK_EQ(aio_parse_backend("bogus", &b), -EINVAL);
	setenv("PGCKPT_AIO", "libaio", 1);
	CHECK_EQ(aio_parse_backend(NULL, &b), 0);
	CHECK_EQ(b, AIO_LIBAIO);
	CHECK_EQ(aio_parse_backend("", &b), 0);
	CHECK_EQ(b, AIO_LIBAIO);
	setenv("PGCKPT_AIO", "nope", 1);
	CHECK_EQ(aio_parse_backend(NULL, &b), -EINVAL);
	unsetenv("PGCKPT_AIO");
	CHECK_EQ(aio_parse_backend(NULL, &b), 0);
	CHECK_EQ(b, AIO_AUTO);
	if (saved)
		setenv("PGCKPT_AIO", saved, 1);
	free(saved);
	CHECK(strcmp(aio_backend_name(AIO_URING), "uring") == 0);
	CHECK(strcmp(aio_backend_name(AIO_AUTO), "auto") == 0);
	CHECK(strcmp(aio_backend_name(AIO_THREADS), "threads") == 0);
	CHECK(strcmp(aio_backend_name(AIO_LIBAIO), "libaio") == 0);
	/* auto: a real backend, and a notice only on fallback. */
	CHECK_EQ(aio_queue_new(AIO_AUTO, 8, &q, &notice), 0);
	if (q) {
		CHECK(aio_queue_backend(q) != AIO_AUTO);
		if (notice)
			printf("  auto notice: %s\n", notice);
		else
			printf("  auto chose %s\n", aio_backend_name(aio_queue_backend(q)));
		CHECK(notice == NULL || aio_queue_backend(q) == AIO_THREADS);
	}
	aio_queue_destroy(q);
	aio_queue_destroy(NULL);
}

/* Make io_uring_setup fail with @err in this process (a seccomp filter). */
static int deny_uring(int err)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -errno;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		return -errno;
	return 0;
}

/* In a child: auto on one CPU, with io_uring allowed, then denied. */
static int auto_child(void)
{
	const char *notice;
	struct aio_queue *q;
	cpu_set_t set;
	int fails = 0, cpu;

	sched_getaffinity(0, sizeof(set), &set);
	for (cpu = 0; cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &set); cpu++)
		;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return 100;
	/* One CPU: io_uring if it works here. */
	q = NULL;
	notice = "x";
	fails += aio_queue_new(AIO_AUTO, 8, &q, &notice) != 0;
	if (q && aio_queue_backend(q) == AIO_URING)
		fails += notice != NULL;
	else
		printf("  note: auto on one CPU: %s\n", notice ? notice : "(no notice)");
	aio_queue_destroy(q);

	if (deny_uring(EPERM))
		return 101;
	q = NULL;
	fails += aio_queue_new(AIO_URING, 8, &q, NULL) != -EPERM;
	fails += aio_queue_new(AIO_AUTO, 8, &q, &notice) != 0;
	fails += !q || aio_queue_backend(q) != AIO_THREADS;
	fails += !notice || !strstr(notice, "thread pool");
	if (notice)
		printf("  EPERM notice: %s\n", notice);
	aio_queue_destroy(q);

	if (deny_uring(ENOSYS))
		return 102;
	q = NULL;
	fails += aio_queue_new(AIO_URING, 8, &q, NULL) != -ENOSYS;
	fails += aio_queue_new(AIO_AUTO, 8, &q, &notice) != 0;
	fails += !q || aio_queue_backend(q) != AIO_THREADS;
	fails += !notice || !strstr(notice, "ENOSYS");
	if (notice)
		printf("  ENOSYS notice: %s\n", notice);
	aio_queue_destroy(q);
	return fails;
}

static void test_auto_fallback(void)
{
	int status = 0;
	pid_t pid;

	if (cur != AIO_THREADS)
		return;
	fflush(stdout);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(auto_child());
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 0);
}

static void run_suite(void)
{
	printf("# backend %s\n", aio_backend_name(cur));
	TEST_RUN(test_names);
	TEST_RUN(test_calls);
	TEST_RUN(test_complete);
	TEST_RUN(test_auto_fallback);
	TEST_RUN(test_validation);
	TEST_RUN(test_read_cap8);
	TEST_RUN(test_read_cap128);
	TEST_RUN(test_write_cap8);
	TEST_RUN(test_write_cap128);
	TEST_RUN(test_readv_cap8);
	TEST_RUN(test_readv_cap128);
	TEST_RUN(test_writev_cap8);
	TEST_RUN(test_writev_cap128);
	TEST_RUN(test_direct_read);
	TEST_RUN(test_errors);
	TEST_RUN(test_short_write);
	TEST_RUN(test_wait_semantics);
	TEST_RUN(test_fault_wait);
	TEST_RUN(test_iov_max);
	TEST_RUN(test_destroy_inflight);
	TEST_RUN(test_write_order);
}

/* 0 if backend @b can make a queue here, else its -errno. */
static int available(enum aio_backend b)
{
	struct aio_queue *q = NULL;
	int ret = aio_queue_new(b, 1, &q, NULL);

	aio_queue_destroy(q);
	return ret;
}

int main(int argc, char **argv)
{
	static const enum aio_backend all[] = { AIO_THREADS, AIO_LIBAIO, AIO_URING };
	enum aio_backend only;
	const char *env = getenv("PGCKPT_AIO");
	unsigned i;
	int ret;

	test_init(argc, argv);
	if (env && *env) {
		if (aio_parse_backend(env, &only)) {
			printf("bad PGCKPT_AIO=%s\n", env);
			return 1;
		}
		if (only == AIO_AUTO) {
			struct aio_queue *q = NULL;

			if (aio_queue_new(AIO_AUTO, 1, &q, NULL) == 0)
				only = aio_queue_backend(q);
			aio_queue_destroy(q);
		}
		ret = available(only);
		if (ret) {
			test_done();
			printf("backend %s unavailable: %s\n", aio_backend_name(only), strerror(-ret));
			test_skip("PGCKPT_AIO backend unavailable");
		}
		cur = only;
		run_suite();
		return test_done();
	}
	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		ret = available(all[i]);
		if (ret) {
			printf("# backend %s unavailable (%s): skipped\n",
			       aio_backend_name(all[i]), strerror(-ret));
			continue;
		}
		cur = all[i];
		run_suite();
	}
	return test_done();
}
