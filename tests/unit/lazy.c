/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lazy.c - unit tests of lazy restore over userfaultfd: the handoff JSON
 * parser (good, bad, truncated and mutated input); a consumer that
 * attaches to a server restoring in the background reads a far page
 * before the load is done, random pages, then everything, byte-exact;
 * a fault is served at once while the push (or another session sharing
 * the MemoryFile) waits for a block that decodes slowly; a recorded
 * working set is placed before it is asked for, and a consumer touching
 * pages inside and outside it reads every byte right;
 * MADV_DONTNEED'd pages come back as zeros; bad handoffs are refused; a
 * consumer that dies mid-way ends the session cleanly; the most regions a
 * handoff may carry fit its size limit; a consumer that forks with
 * UFFD_FEATURE_EVENT_FORK leaks no fd into the server.
 */
#include <dirent.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "lazy/lazy.h"
#include "memgen.h"
#include "pgckpt.h"
#include "test.h"

#define PAGE PGC_PAGE_SIZE
#define MIB (1ULL << 20)
#define SIZE (64 * MIB)
#define SOCK "lazy.sock"

static uint64_t seed;
static pgc_range whole;

static void make_image(const char *path, uint64_t len)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = { .kind = PGC_KIND_ANONYMOUS };

	CHECK_EQ(pgc_allocate(mf, len, &o, &whole), 0);
	CHECK_EQ(memgen_fill(mf, seed, whole), 0);
	CHECK_EQ(pgc_save(mf, path, NULL), 0);
	pgc_memfile_destroy(mf);
}

static pgc_memfile *load_bg(const char *path, uint32_t inflight)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_load_opts lo;

	pgc_load_opts_init(&lo);
	lo.background = true;
	lo.max_inflight = inflight;
	CHECK_EQ(pgc_load(mf, path, &lo), 0);
	return mf;
}

/* ---- JSON --------------------------------------------------------------- */

static int parse(const char *s, struct lazy_map *m, size_t max, size_t *n)
{
	return lazy_parse_regions(s, strlen(s), m, max, n);
}

#define R0 "\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0"

/* Each form a Firecracker version writes, and unknown fields of every kind. */
static void test_json_forms(void)
{
	static const char *good[] = {
		"[{" R0 ",\"page_size\":4096}]",                            /* pgckpt */
		"[{" R0 ",\"page_size_kib\":4096}]",                        /* FC 1.0-1.6 */
		"[{" R0 ",\"page_size\":4096,\"page_size_kib\":4096}]",     /* FC 1.7+ */
		"[{\"page_size_kib\":4096," R0 ",\"page_size\":4096}]",
		"[{" R0 ",\"page_size\":4096,\"x\":null,\"y\":true,\"z\":false}]",
		"[{" R0 ",\"page_size\":4096,\"n\":-1.5e+3,\"m\":0,\"k\":0.25,\"j\":1E9,\"i\":-0}]",
		"[{" R0 ",\"page_size\":4096,\"s\":\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\"}]",
		"[{" R0 ",\"page_size\":4096,\"u\":\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}]",
		"[{\"nested\":{\"a\":[1,{\"b\":[]},{}],\"c\":{\"d\":\"}]\"}}," R0
		",\"page_size\":4096,\"e\":[[[]]]}]",
		"[{" R0 ",\"page_size\":4096,\"x\":1,\"x\":2}]",          /* unknown keys: not tracked */
		"[{" R0 ",\"page_size\":4096,\"a-key-longer-than-sixty-four-bytes-"
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\":[]}]",
	};
	static const char *bad[] = {
		"[{" R0 ",\"page_size\":4096,\"page_size_kib\":4}]",       /* disagree */
		"[{" R0 ",\"page_size_kib\":4096,\"page_size\":8192}]",
		"[{" R0 ",\"page_size\":4096,\"page_size\":4096}]",        /* same key twice */
		"[{" R0 ",\"page_size_kib\":4096,\"page_size_kib\":4096}]",
		"[{" R0 ",\"offset\":0,\"page_size\":4096}]",
		"[{" R0 "}]",                                              /* no page size */
		"[{" R0 ",\"page_size_kib\":\"4096\"}]",
		"[{" R0 ",\"page_size_kib\":4096.0}]",
		"[{" R0 ",\"page_size\":4096,\"x\":01}]",                  /* bad numbers */
		"[{" R0 ",\"page_size\":4096,\"x\":-}]",
		"[{" R0 ",\"page_size\":4096,\"x\":1.}]",
		"[{" R0 ",\"page_size\":4096,\"x\":.5}]",
		"[{" R0 ",\"page_size\":4096,\"x\":1e}]",
		"[{" R0 ",\"page_size\":4096,\"x\":+1}]",
		"[{" R0 ",\"page_size\":4096,\"x\":tru}]",
		"[{" R0 ",\"page_size\":4096,\"x\":nul1}]",
		"[{" R0 ",\"page_size\":4096,\"x\":True}]",
		"[{" R0 ",\"page_size\":4096,\"x\":\"\\x\"}]",             /* bad escapes */
		"[{" R0 ",\"page_size\":4096,\"x\":\"\\u12G4\"}]",
		"[{" R0 ",\"page_size\":4096,\"x\":\"a\tb\"}]",            /* control byte */
		"[{" R0 ",\"page_size\":4096,\"x\":\"\xff\"}]",            /* bad UTF-8 */
		"[{" R0 ",\"page_size\":4096,\"x\":\"\xc0\xaf\"}]",
		"[{" R0 ",\"page_size\":4096,\"x\":\"\xed\xa0\x80\"}]",
		"[{" R0 ",\"page_size\":4096,\"x\":\"\xf4\x90\x80\x80\"}]",
		"[{" R0 ",\"page_size\":4096,\"x\":[1,]}]",                /* bad containers */
		"[{" R0 ",\"page_size\":4096,\"x\":[1}]",
		"[{" R0 ",\"page_size\":4096,\"x\":{\"a\"}}]",
		"[{" R0 ",\"page_size\":4096,\"x\":{\"a\":1,}}]",
		"[{" R0 ",\"page_size\":4096,\"x\":{1:2}}]",
		"[{" R0 ",\"page_size\":4096,\"x\":{\"a\":1]}]",
		"[{" R0 ",\"page_size\":4096,\"x\":}]",
		"[{" R0 ",\"page_size\":4096,\"x\" 1}]",
		"[{" R0 ",\"page_size\":4096,\"\\u0073ize\":1}]",          /* escaped key */
	};
	struct lazy_map m[2], back[2];
	char deep[1024], buf[512];
	size_t i, n, k, f;
	int len;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int r = parse(good[i], m, 2, &n);

		if (r != 0)
			printf("  good[%zu] gave %d\n", i, r);
		CHECK_EQ(r, 0);
		CHECK_EQ(n, 1);
		CHECK(m[0].base == 4096 && m[0].size == 8192 && m[0].offset == 0);
		CHECK_EQ(m[0].page_size, 4096);
		/* Every proper prefix is incomplete. */
		for (k = 0; k < strlen(good[i]); k++)
			CHECK_EQ(lazy_parse_regions(good[i], k, m, 2, &n), -ENODATA);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse(bad[i], m, 2, &n);

		if (r != -EINVAL)
			printf("  bad[%zu] gave %d\n", i, r);
		CHECK_EQ(r, -EINVAL);
	}
	/* Nesting: 32 containers are skipped, 33 are refused. */
	for (k = 32; k <= 33; k++) {
		size_t d;

		len = snprintf(deep, sizeof(deep), "[{" R0 ",\"page_size\":4096,\"x\":");
		for (d = 0; d < k; d++)
			len += snprintf(deep + len, sizeof(deep) - (size_t)len, d % 2 ? "{\"a\":" : "[");
		deep[len++] = '1';
		for (d = k; d-- > 0;)
			deep[len++] = d % 2 ? '}' : ']';
		len += snprintf(deep + len, sizeof(deep) - (size_t)len, "}]");
		CHECK_EQ(lazy_parse_regions(deep, (size_t)len, m, 2, &n), k == 32 ? 0 : -EINVAL);
	}
	/* Each form the formatter writes parses back to the same regions. */
	m[0] = (struct lazy_map){ 1ULL << 40, 1 << 20, 4096, 4096 };
	m[1] = (struct lazy_map){ 1ULL << 41, 8192, 1 << 20, 4096 };
	for (f = LAZY_FORM_PAGE_SIZE; f <= LAZY_FORM_BOTH; f++) {
		len = lazy_format_regions(m, 2, (enum lazy_form)f, buf, sizeof(buf));
		CHECK(len > 0);
		CHECK_EQ(strstr(buf, "\"page_size\":") != NULL, f != LAZY_FORM_KIB);
		CHECK_EQ(strstr(buf, "\"page_size_kib\":") != NULL, f != LAZY_FORM_PAGE_SIZE);
		CHECK_EQ(lazy_parse_regions(buf, (size_t)len, back, 2, &n), 0);
		CHECK_EQ(n, 2);
		CHECK(!memcmp(m, back, sizeof(m)));
	}
}

static void test_json(void)
{
	static const char *bad[] = {
		"", "x", "{}", "[]", "[{}]", "[1]", "[{\"size\":1}]",
		"[{\"base_host_virt_addr\":1,\"size\":2,\"offset\":3}]",
		"[{\"base_host_virt_addr\":1,\"size\":2,\"offset\":3,\"page_size\":-4}]",
		"[{\"base_host_virt_addr\":1,\"size\":2,\"offset\":3,\"page_size\":4.0}]",
		"[{\"base_host_virt_addr\":1,\"size\":2,\"offset\":3,\"page_size\":4e3}]",
		"[{\"base_host_virt_addr\":01,\"size\":2,\"offset\":3,\"page_size\":4}]",
		"[{\"base_host_virt_addr\":1,\"size\":2,\"size\":2,\"offset\":3,\"page_size\":4}]",
		"[{\"base_host_virt_addr\":18446744073709551616,\"size\":2,\"offset\":3,\"page_size\":4}]",
		"[{\"base_host_virt_addr\":1,\"size\":\"2\",\"offset\":3,\"page_size\":4}]",
		"[{\"base_host_virt_addr\":1,\"size\":2,\"offset\":3,\"page_size\":4},]",
		"[{\"base_host_virt_addr\":1,\"size\":2,\"offset\":3,\"page_size\":4}] x",
		"[{\"base_host_virt_addr\":1,\"size\":2,\"offset\":3,\"page_size\":4,}]",
		"[{\"base_host_virt_addr\":1,\"si\\ze\":2,\"offset\":3,\"page_size\":4}]",
		"[{\"base_host_virt_addr\":1,\"size\":2,\"offset\":3,\"page_size\":4,\"x\":nul}]",
		"[{\"base_host_virt_addr\" 1,\"size\":2,\"offset\":3,\"page_size\":4}]",
	};
	static const char *good =
		" [ {\"base_host_virt_addr\": 140000000000, \"size\":4096,\n"
		"\"offset\":0,\"page_size_kib\":4096, \"future\": 7},"
		"{\"size\":8192,\"offset\":18446744073709551615,\"page_size\":4096,"
		"\"base_host_virt_addr\":0}]\n";
	struct lazy_map m[4], back[4];
	char buf[512];
	size_t n, i, k;
	int len;

	CHECK_EQ(parse(good, m, 4, &n), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(m[0].base, 140000000000ULL);
	CHECK_EQ(m[0].page_size, 4096);
	CHECK(m[1].offset == UINT64_MAX);
	CHECK_EQ(m[1].size, 8192);
	CHECK_EQ(parse(good, m, 1, &n), -E2BIG);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse(bad[i], m, 4, &n);

		if (r != -EINVAL && r != -ENODATA)
			printf("  bad[%zu] gave %d\n", i, r);
		CHECK(r == -EINVAL || r == -ENODATA);
	}
	/* Every proper prefix of a good message is incomplete, never accepted. */
	for (i = 0; i < strlen(good) - 1; i++)
		CHECK_EQ(lazy_parse_regions(good, i, m, 4, &n) == 0, 0);
	CHECK_EQ(lazy_parse_regions(good, 20, m, 4, &n), -ENODATA);
	/* Round trip through the formatter. */
	CHECK_EQ(parse(good, m, 4, &n), 0);
	len = lazy_format_regions(m, n, LAZY_FORM_PAGE_SIZE, buf, sizeof(buf));
	CHECK(len > 0);
	CHECK_EQ(lazy_parse_regions(buf, (size_t)len, back, 4, &k), 0);
	CHECK_EQ(k, 2);
	CHECK(!memcmp(m, back, sizeof(m[0]) * 2));
	CHECK_EQ(lazy_format_regions(m, n, LAZY_FORM_BOTH, buf, 20), -ENOBUFS);
	/* Mutations: any result but a crash (the sanitizer builds check). */
	for (i = 0; i < 20000; i++) {
		char mut[256];
		size_t l = strlen(good), j;

		memcpy(mut, good, l);
		for (j = 0; j < 1 + test_rand_below(4); j++)
			mut[test_rand_below(l)] = (char)test_rand();
		l = test_rand_below(l + 1);
		(void)lazy_parse_regions(mut, l, m, 4, &n);
		CHECK(n <= 4);
	}
}

/* ---- server in a thread ------------------------------------------------- */

struct server {
	pthread_t t;
	pgc_memfile *mf;
	int lfd;
	struct pgc_lazy_serve_opts o;
	struct pgc_lazy_stats st;
	int ret;
};

static void *server_main(void *arg)
{
	struct server *sv = arg;

	sv->ret = pgc_lazy_serve(sv->mf, sv->lfd, &sv->o, &sv->st);
	return NULL;
}

static void server_start(struct server *sv, pgc_memfile *mf)
{
	sv->mf = mf;
	sv->lfd = pgc_lazy_listen(SOCK);
	CHECK(sv->lfd >= 0);
	sv->o.accept_timeout_ms = 10000;
	CHECK_EQ(pthread_create(&sv->t, NULL, server_main, sv), 0);
}

static void server_join(struct server *sv)
{
	pthread_join(sv->t, NULL);
	close(sv->lfd);
	unlink(SOCK);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * A consumer's memory for the whole test file (SIZE bytes at whole.start),
 * mapped and handed to the server at SOCK: the uffd, or < 0 (checked).
 */
static int attach_whole(unsigned char **mem)
{
	struct pgc_lazy_region reg;
	int uffd;

	*mem = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(*mem != MAP_FAILED);
	reg = (struct pgc_lazy_region){ *mem, SIZE, whole.start };
	uffd = pgc_lazy_attach(SOCK, &reg, 1);
	CHECK(uffd >= 0);
	return uffd;
}

static bool uffd_available(void)
{
	int fd = lazy_uffd_open();

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static void test_lazy_restore(void)
{
	struct server sv = { 0 };
	struct pgc_load_stats ls;
	uint64_t pages = SIZE / PAGE, lat[256], t, first, bad = 0, i;
	unsigned char *mem;
	pgc_memfile *mf;
	int uffd;

	mf = load_bg("img", 2);
	pgc_lazy_serve_opts_init(&sv.o);
	server_start(&sv, mf);
	uffd = attach_whole(&mem);
	if (uffd < 0) {
		server_join(&sv);   /* times out waiting for a consumer */
		goto unmap;
	}
	/* A page near the end, long before the loader would get there. */
	t = test_now_ns();
	CHECK_EQ(memgen_check(seed, whole.start + SIZE - 3 * PAGE, mem + SIZE - 3 * PAGE, PAGE),
		 UINT64_MAX);
	first = test_now_ns() - t;
	CHECK_EQ(pgc_load_stats(mf, &ls), 0);
	printf("  first access %.3f ms, with %llu of %llu bytes loaded\n", first / 1e6,
	       (unsigned long long)ls.bytes_loaded, (unsigned long long)ls.bytes_total);
	CHECK(ls.done || ls.bytes_loaded < ls.bytes_total);
	for (i = 0; i < 256; i++) {
		uint64_t p = test_rand_below(pages);

		t = test_now_ns();
		if (memgen_check(seed, whole.start + p * PAGE, mem + p * PAGE, PAGE) != UINT64_MAX)
			bad++;
		lat[i] = test_now_ns() - t;
	}
	qsort(lat, 256, sizeof(lat[0]), cmp_u64);
	printf("  random access p50 %.1f us, p99 %.1f us\n", lat[128] / 1e3, lat[253] / 1e3);
	CHECK_EQ(bad, 0);
	CHECK_EQ(memgen_check(seed, whole.start, mem, SIZE), UINT64_MAX);
	server_join(&sv);
	CHECK_EQ(sv.ret, 0);
	CHECK(!sv.st.consumer_gone);
	CHECK_EQ(sv.st.bytes_copied + sv.st.bytes_zeroed, SIZE);
	CHECK(sv.st.ns_all_placed > 0);
	printf("  %llu faults (mean %.1f us, max %.1f us), %llu MiB copied, %llu MiB zero, "
	       "%llu MiB pushed, all placed after %.1f ms\n",
	       (unsigned long long)sv.st.faults,
	       sv.st.faults ? sv.st.fault_ns_total / 1e3 / (double)sv.st.faults : 0.0,
	       sv.st.fault_ns_max / 1e3, (unsigned long long)(sv.st.bytes_copied >> 20),
	       (unsigned long long)(sv.st.bytes_zeroed >> 20),
	       (unsigned long long)(sv.st.bytes_pushed >> 20), sv.st.ns_all_placed / 1e6);
	/* Unregistered now: the memory stays, and DONTNEED reads zeros. */
	CHECK_EQ(memgen_check(seed, whole.start, mem, SIZE), UINT64_MAX);
	close(uffd);
unmap:
	munmap(mem, SIZE);
	pgc_memfile_destroy(mf);
}

#define SLOW_MS 1500   /* $PGCKPT_LOADER_SLOW_BLOCK0_MS: block 0 decodes this late */

/* A background load whose block 0 takes SLOW_MS to decode. */
static pgc_memfile *load_slow_block0(void)
{
	pgc_memfile *mf;

	setenv("PGCKPT_LOADER_SLOW_BLOCK0_MS", "1500", 1);
	mf = load_bg("img", 4);
	unsetenv("PGCKPT_LOADER_SLOW_BLOCK0_MS");
	return mf;
}

/* Touch one page at @off of @mem (offset @base in the file); returns the ns it took. */
static uint64_t touch_ns(unsigned char *mem, uint64_t off, uint64_t base)
{
	uint64_t t = test_now_ns();

	CHECK_EQ(memgen_check(seed, base + off, mem + off, PAGE), UINT64_MAX);
	return test_now_ns() - t;
}

/*
 * The push starts at block 0, which takes SLOW_MS to decode: a fault far
 * from it is served at once, not behind the push.
 */
static void test_fault_during_push(void)
{
	struct server sv = { 0 };
	unsigned char *mem;
	uint64_t dt;
	pgc_memfile *mf;
	int uffd;

	mf = load_slow_block0();
	pgc_lazy_serve_opts_init(&sv.o);
	server_start(&sv, mf);
	uffd = attach_whole(&mem);
	if (uffd >= 0) {
		usleep(100 * 1000);   /* the push is at block 0 by now */
		dt = touch_ns(mem, SIZE - 5 * PAGE, whole.start);
		printf("  fault during a push stuck on a slow block: %.1f ms\n", dt / 1e6);
		CHECK(dt < (uint64_t)SLOW_MS * 1000000 / 3);
		CHECK_EQ(memgen_check(seed, whole.start, mem, SIZE), UINT64_MAX);
		close(uffd);
	}
	server_join(&sv);
	CHECK_EQ(sv.ret, 0);
	munmap(mem, SIZE);
	pgc_memfile_destroy(mf);
}

/*
 * The push places its spans in slices and stops for a waiting fault: a
 * fully loaded image pushed in 4 MiB spans while the consumer faults,
 * page after page from the end, is cut short (stats.push_yields), and
 * every byte arrives.
 */
static void test_push_slices(void)
{
	struct server sv = { 0 };
	unsigned char *mem;
	pgc_memfile *mf;
	uint64_t off;
	int uffd;

	mf = load_bg("img", 4);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_lazy_serve_opts_init(&sv.o);
	sv.o.push_bytes = 4 * MIB;
	server_start(&sv, mf);
	uffd = attach_whole(&mem);
	if (uffd >= 0) {
		/* Faults from the end while the push works from the start. */
		for (off = SIZE - PAGE; off >= SIZE / 2; off -= 16 * PAGE)
			(void)touch_ns(mem, off, whole.start);
		CHECK_EQ(memgen_check(seed, whole.start, mem, SIZE), UINT64_MAX);
		close(uffd);
	}
	server_join(&sv);
	CHECK_EQ(sv.ret, 0);
	printf("  %" PRIu64 " faults, %" PRIu64 " pushes cut short for one\n", sv.st.faults,
	       sv.st.push_yields);
	CHECK(sv.st.push_yields > 0);
	munmap(mem, SIZE);
	pgc_memfile_destroy(mf);
}

/*
 * One lazy session of a load of "img" (recording or replaying @ws): the
 * consumer touches the @n @pages (offsets), then every page, every byte
 * checked; @no_push for the server.
 */
/*
 * Wait (up to 10 s) until the server has placed each of @pages in @mem
 * without being asked: mincore sees a page table entry once UFFDIO_COPY
 * put it there, and reading it does not fault.
 */
static bool await_placed(const unsigned char *mem, const uint64_t *pages, size_t n)
{
	uint64_t until = test_now_ns() + 10000000000ull;
	unsigned char in;
	size_t i = 0;

	while (i < n) {
		CHECK_EQ(mincore((void *)(mem + pages[i]), PAGE, &in), 0);
		if (in & 1)
			i++;
		else if (test_now_ns() > until)
			return false;
		else
			usleep(200);
	}
	return true;
}

/*
 * One lazy session of "img" whose consumer reads @pages, then everything.
 * @record: record a working set into @ws; otherwise replay @ws. @await:
 * the consumer first waits until the replay has placed all of @pages, so
 * none of them is a fault however the threads are scheduled.
 */
static void ws_session(const char *ws, bool record, bool no_push, bool await,
		       const uint64_t *pages, size_t n, struct pgc_lazy_stats *st)
{
	struct server sv = { 0 };
	struct pgc_load_opts lo;
	unsigned char *mem;
	pgc_memfile *mf = memgen_memfile();
	int uffd;
	size_t i;

	pgc_load_opts_init(&lo);
	lo.background = true;
	lo.working_set = record ? NULL : ws;
	lo.record_working_set = record;
	CHECK_EQ(pgc_load(mf, "img", &lo), 0);
	pgc_lazy_serve_opts_init(&sv.o);
	sv.o.no_push = no_push;
	server_start(&sv, mf);
	uffd = attach_whole(&mem);
	if (uffd >= 0 && await)
		CHECK(await_placed(mem, pages, n));
	for (i = 0; uffd >= 0 && i < n; i++)
		CHECK_EQ(memgen_check(seed, whole.start + pages[i], mem + pages[i], PAGE),
			 UINT64_MAX);
	if (uffd >= 0)
		CHECK_EQ(memgen_check(seed, whole.start, mem, SIZE), UINT64_MAX);
	server_join(&sv);   /* every page is placed now */
	CHECK_EQ(sv.ret, 0);
	if (uffd >= 0)
		close(uffd);
	*st = sv.st;
	if (record)
		CHECK_EQ(pgc_load_ws_write(mf, ws), 0);
	munmap(mem, SIZE);
	pgc_memfile_destroy(mf);
}

/*
 * The working set "ws" of "img" holds the blocks of @pages in their order.
 * A fault's span may also reach into a neighbouring block, which is then
 * demanded too, so other blocks may stand between them.
 */
static void ws_check_order(const uint64_t *pages, size_t n)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_load_opts lo;
	pgc_range r[64];
	size_t i, k = 0;
	int got;

	pgc_load_opts_init(&lo);
	lo.background = true;
	lo.working_set = "ws";
	CHECK_EQ(pgc_load(mf, "img", &lo), 0);
	got = pgc_load_working_set(mf, r, 64);
	CHECK(got >= (int)n);
	for (i = 0; i < n && got > 0; i++, k++) {
		uint64_t at = whole.start + pages[i];

		while (k < (size_t)got && k < 64 && !(r[k].start <= at && at < r[k].end))
			k++;
		CHECK(k < (size_t)got && k < 64);
	}
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);
}

/*
 * A random page of [lo, lo + n pages) of the region that the image stores
 * (memgen makes a quarter of the pages zero: a zero page between two
 * blocks belongs to no block, so no working set can hold it).
 */
static uint64_t stored_page(uint64_t lo, uint64_t n)
{
	uint64_t off;

	do
		off = lo + test_rand_below(n) * PAGE;
	while (!(memgen_mix(seed ^ ((whole.start + off) / PAGE)) & 3));
	return off;
}

/*
 * Record a working set of far-apart pages through a lazy session, then
 * replay it: its pages are placed before they are asked for, and a
 * consumer touching pages inside and outside it reads every byte right.
 */
static void test_working_set(void)
{
	uint64_t in[6], mixed[12];
	struct pgc_lazy_stats st;
	size_t i;

	for (i = 0; i < 6; i++)
		in[i] = stored_page((SIZE / 6) * i, SIZE / 6 / PAGE);
	ws_session("ws", true, true, false, in, 6, &st);   /* no push: every page read is demanded */
	CHECK_EQ(st.bytes_prefetched, 0);
	ws_check_order(in, 6);
	for (i = 0; i < 12; i++)
		mixed[i] = i % 2 ? in[i / 2] : test_rand_below(SIZE / PAGE) * PAGE;
	ws_session("ws", false, false, false, mixed, 12, &st);
	printf("  working set: %.1f MiB placed before any fault asked\n",
	       st.bytes_prefetched / (double)MIB);
	CHECK(st.bytes_prefetched > 0);
	CHECK_EQ(st.bytes_copied + st.bytes_zeroed, SIZE);
	unlink("ws");
}

/*
 * A recording session, push on: for its first lazy.record_ms it serves
 * each fault alone and pushes nothing, so every page the consumer touches
 * is a fault and is recorded, in order, the page right after a touched one
 * too (a 64 KiB fault span or the push would have placed it unasked).
 * The replay hands exactly those pages to the server, and places them.
 */
static void test_record_window(void)
{
	uint64_t pages[12];
	struct pgc_lazy_stats st;
	pgc_memfile *mf;
	struct pgc_load_opts lo;
	pgc_range r[8];
	size_t i;
	int n;

	for (i = 0; i < 6; i++) {
		pages[2 * i] = (SIZE / 6 / PAGE * i + test_rand_below(SIZE / 6 / PAGE - 1)) * PAGE;
		pages[2 * i + 1] = pages[2 * i] + PAGE;
	}
	ws_session("ws", true, false, false, pages, 12, &st);
	mf = memgen_memfile();
	pgc_load_opts_init(&lo);
	lo.background = true;
	lo.working_set = "ws";
	CHECK_EQ(pgc_load(mf, "img", &lo), 0);
	n = pgc_load_working_set(mf, r, 8);
	CHECK(n >= 6);
	for (i = 0; i < 6 && n >= 6; i++)
		CHECK(r[i].start == whole.start + pages[2 * i] &&
		      r[i].end == whole.start + pages[2 * i] + 2 * PAGE);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);
	ws_session("ws", false, false, true, pages, 12, &st);
	CHECK(st.bytes_prefetched >= 12 * PAGE);
	unlink("ws");
}

/* Faults only, one page at a time; removed pages come back as zeros. */
static void test_naive_and_remove(void)
{
	static const unsigned char zero[PAGE];
	struct server sv = { 0 };
	uint64_t p = 0;
	unsigned char *mem;
	pgc_memfile *mf;
	int uffd;

	mf = load_bg("img", 8);
	pgc_lazy_serve_opts_init(&sv.o);
	sv.o.no_push = true;
	sv.o.fault_bytes = PAGE;
	server_start(&sv, mf);
	uffd = attach_whole(&mem);
	/* A non-zero page: read it, drop it, read zeros. */
	while (!memcmp(mem + p * PAGE, zero, PAGE))
		p++;
	CHECK_EQ(madvise(mem + p * PAGE, 4 * PAGE, MADV_DONTNEED), 0);
	CHECK(!memcmp(mem + p * PAGE, zero, PAGE));
	CHECK(!memcmp(mem + (p + 3) * PAGE, zero, PAGE));
	mem[(p + 1) * PAGE] = 1;   /* a write fault on a removed page */
	CHECK_EQ(mem[(p + 1) * PAGE], 1);
	CHECK_EQ(memgen_check(seed, whole.start + (p + 4) * PAGE, mem + (p + 4) * PAGE, PAGE),
		 UINT64_MAX);
	/* Touching everything ends the session. */
	CHECK_EQ(memgen_check(seed, whole.start + (p + 4) * PAGE, mem + (p + 4) * PAGE,
			      SIZE - (p + 4) * PAGE), UINT64_MAX);
	CHECK_EQ(memgen_check(seed, whole.start, mem, p * PAGE), UINT64_MAX);
	server_join(&sv);
	CHECK_EQ(sv.ret, 0);
	CHECK_EQ(sv.st.removes, 1);
	CHECK_EQ(sv.st.bytes_pushed, 0);
	printf("  naive: %llu faults, mean %.1f us, max %.1f us\n",
	       (unsigned long long)sv.st.faults,
	       sv.st.faults ? sv.st.fault_ns_total / 1e3 / (double)sv.st.faults : 0.0,
	       sv.st.fault_ns_max / 1e3);
	if (uffd >= 0)
		close(uffd);
	munmap(mem, SIZE);
	pgc_memfile_destroy(mf);
}

/* The same with a server that sleeps at once, not looking for the next fault first. */
static void test_naive_no_spin(void)
{
	setenv("PGCKPT_LAZY_SPIN_US", "0", 1);
	test_naive_and_remove();
	unsetenv("PGCKPT_LAZY_SPIN_US");
}

/*
 * Two regions in reverse file order; the consumer checks one, unmaps both
 * and closes its uffd early: the session still ends cleanly.
 */
static void test_two_regions_early_close(void)
{
	struct server sv = { 0 };
	struct pgc_lazy_region reg[2];
	unsigned char *a, *b;
	pgc_memfile *mf;
	int uffd;

	mf = load_bg("img", 4);
	pgc_lazy_serve_opts_init(&sv.o);
	server_start(&sv, mf);
	a = mmap(NULL, SIZE / 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b = mmap(NULL, SIZE / 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(a != MAP_FAILED && b != MAP_FAILED);
	reg[0] = (struct pgc_lazy_region){ a, SIZE / 2, whole.start + SIZE / 2 };
	reg[1] = (struct pgc_lazy_region){ b, SIZE / 2, whole.start };
	uffd = pgc_lazy_attach(SOCK, reg, 2);
	CHECK(uffd >= 0);
	if (uffd >= 0) {
		CHECK_EQ(memgen_check(seed, whole.start, b, SIZE / 2), UINT64_MAX);
		CHECK_EQ(memgen_check(seed, whole.start + SIZE - PAGE, a + SIZE / 2 - PAGE, PAGE),
			 UINT64_MAX);
	}
	munmap(a, SIZE / 2);
	munmap(b, SIZE / 2);
	if (uffd >= 0)
		close(uffd);
	server_join(&sv);
	CHECK_EQ(sv.ret, 0);
	CHECK_EQ(sv.st.regions, 2);
	pgc_memfile_destroy(mf);
}

/*
 * Two sessions serving @mf with sv[0].o, the second accepting on the
 * first's socket, and two consumers attached to them: each maps SIZE
 * bytes at mem[i] and gets uffd[i] (< 0 if attaching failed).
 */
static void two_sessions_start(pgc_memfile *mf, struct server sv[2], unsigned char *mem[2],
			       int uffd[2])
{
	struct pgc_lazy_region reg;
	int i;

	server_start(&sv[0], mf);
	sv[1].o = sv[0].o;
	sv[1].mf = mf;
	sv[1].lfd = sv[0].lfd;
	CHECK_EQ(pthread_create(&sv[1].t, NULL, server_main, &sv[1]), 0);
	for (i = 0; i < 2; i++) {
		mem[i] = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		CHECK(mem[i] != MAP_FAILED);
		reg = (struct pgc_lazy_region){ mem[i], SIZE, whole.start };
		uffd[i] = pgc_lazy_attach(SOCK, &reg, 1);
		CHECK(uffd[i] >= 0);
	}
}

/* Two consumers of one MemoryFile, served by two sessions at once. */
static void test_two_consumers(void)
{
	struct server sv[2] = { { 0 }, { 0 } };
	unsigned char *mem[2];
	pgc_memfile *mf;
	int uffd[2], i;

	mf = load_bg("img", 4);
	pgc_lazy_serve_opts_init(&sv[0].o);
	two_sessions_start(mf, sv, mem, uffd);
	for (i = 0; i < 2; i++)
		if (uffd[i] >= 0)
			CHECK_EQ(memgen_check(seed, whole.start + SIZE / 2, mem[i] + SIZE / 2, SIZE / 2),
				 UINT64_MAX);
	for (i = 0; i < 2; i++)
		if (uffd[i] >= 0)
			CHECK_EQ(memgen_check(seed, whole.start, mem[i], SIZE / 2), UINT64_MAX);
	pthread_join(sv[1].t, NULL);
	server_join(&sv[0]);
	for (i = 0; i < 2; i++) {
		CHECK_EQ(sv[i].ret, 0);
		CHECK_EQ(sv[i].st.bytes_copied + sv[i].st.bytes_zeroed, SIZE);
		if (uffd[i] >= 0)
			close(uffd[i]);
		munmap(mem[i], SIZE);
	}
	pgc_memfile_destroy(mf);
}

struct toucher {
	unsigned char *mem;
	uint64_t off, ns;
};

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;

	t->ns = touch_ns(t->mem, t->off, whole.start);
	return NULL;
}

/*
 * Fairness between two sessions of one MemoryFile: while one consumer's
 * fault waits for the slow block 0, the other's far fault is served at once.
 */
static void test_sessions_fair(void)
{
	struct server sv[2] = { { 0 }, { 0 } };
	struct toucher slow;
	unsigned char *mem[2];
	pthread_t t;
	uint64_t dt = 0;
	pgc_memfile *mf;
	int uffd[2], i;

	mf = load_slow_block0();
	pgc_lazy_serve_opts_init(&sv[0].o);
	sv[0].o.no_push = true;   /* only the consumers' faults reach the loader */
	two_sessions_start(mf, sv, mem, uffd);
	if (uffd[0] >= 0 && uffd[1] >= 0) {
		slow = (struct toucher){ mem[0], 3 * PAGE, 0 };
		CHECK_EQ(pthread_create(&t, NULL, toucher_main, &slow), 0);
		usleep(100 * 1000);   /* consumer 0 waits for block 0 */
		dt = touch_ns(mem[1], SIZE - 7 * PAGE, whole.start);
		pthread_join(t, NULL);
		printf("  far fault %.1f ms while the other session waits %.1f ms\n", dt / 1e6,
		       slow.ns / 1e6);
		CHECK(dt < (uint64_t)SLOW_MS * 1000000 / 3);
		for (i = 0; i < 2; i++)
			CHECK_EQ(memgen_check(seed, whole.start, mem[i], SIZE), UINT64_MAX);
	}
	pthread_join(sv[1].t, NULL);
	server_join(&sv[0]);
	for (i = 0; i < 2; i++) {
		CHECK_EQ(sv[i].ret, 0);
		if (uffd[i] >= 0)
			close(uffd[i]);
		munmap(mem[i], SIZE);
	}
	pgc_memfile_destroy(mf);
}

/* ---- bad handoffs ------------------------------------------------------- */

static int connect_sock(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, SOCK);
	CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void send_with_fd(int sock, const char *s, int fd)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { (void *)s, strlen(s) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;

	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.b;
		msg.msg_controllen = sizeof(u.b);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	CHECK_EQ(sendmsg(sock, &msg, MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* Queue one client message, then serve it in this thread. */
static int serve_one(pgc_memfile *mf, const char *json, int fd, bool close_after)
{
	struct pgc_lazy_serve_opts o;
	int lfd = pgc_lazy_listen(SOCK), c, ret;

	pgc_lazy_serve_opts_init(&o);
	o.accept_timeout_ms = 1000;
	o.handshake_timeout_ms = 200;
	c = connect_sock();
	if (json)
		send_with_fd(c, json, fd);
	if (close_after) {
		close(c);
		c = -1;
	}
	ret = pgc_lazy_serve(mf, lfd, &o, NULL);
	if (c >= 0)
		close(c);
	close(lfd);
	unlink(SOCK);
	return ret;
}

static void test_bad_handoff(void)
{
	pgc_memfile *mf = load_bg("img", 8);
	struct pgc_lazy_serve_opts o;
	char ok[256], out[256];
	int uffd = lazy_uffd_open();
	int lfd;

	snprintf(ok, sizeof(ok),
		 "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":%llu,\"page_size\":4096}]",
		 (unsigned long long)whole.start);
	snprintf(out, sizeof(out),
		 "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":%llu,\"page_size\":4096}]",
		 (unsigned long long)(pgc_total_size(mf) - 4096));
	CHECK(uffd >= 0);
	CHECK_EQ(serve_one(mf, "[{\"base_host_virt_addr\":", uffd, true), -EPROTO);
	CHECK_EQ(serve_one(mf, "[{\"base_host_virt_addr\":x}]", uffd, false), -EINVAL);
	CHECK_EQ(serve_one(mf, "garbage", uffd, false), -EINVAL);
	CHECK_EQ(serve_one(mf, ok, -1, false), -EPROTO);             /* no fd */
	CHECK_EQ(serve_one(mf, ok, 0, false), -EPROTO);              /* not a uffd */
	CHECK_EQ(serve_one(mf, out, uffd, false), -EINVAL);          /* outside the file */
	ok[strlen(ok) - 6] = '1';                                    /* page_size 1096 */
	CHECK_EQ(serve_one(mf, ok, uffd, false), -EOPNOTSUPP);
	CHECK_EQ(serve_one(mf, NULL, -1, false), -ETIMEDOUT);        /* silent peer */
	CHECK_EQ(serve_one(mf, NULL, -1, true), -EPROTO);            /* peer closes */
	/* Nobody connects. */
	lfd = pgc_lazy_listen(SOCK);
	pgc_lazy_serve_opts_init(&o);
	o.accept_timeout_ms = 50;
	CHECK_EQ(pgc_lazy_serve(mf, lfd, &o, NULL), -ETIMEDOUT);
	/* A live socket is never replaced, a stale one is. */
	CHECK_EQ(pgc_lazy_listen(SOCK), -EADDRINUSE);
	close(lfd);
	lfd = pgc_lazy_listen(SOCK);
	CHECK(lfd >= 0);
	close(lfd);
	/* Only sockets are replaced. */
	CHECK_EQ(pgc_lazy_listen("img"), -EEXIST);
	close(uffd);
	pgc_memfile_destroy(mf);
}

/* A consumer process that dies after a few pages. */
static void test_consumer_dies(void)
{
	struct pgc_lazy_serve_opts o;
	struct pgc_lazy_stats st;
	int lfd, status = 0, ret, k;
	pgc_memfile *mf;
	pid_t pid;

	for (k = 0; k < 2; k++) {
		lfd = pgc_lazy_listen(SOCK);
		CHECK(lfd >= 0);
		pid = fork();
		if (pid == 0) {
			unsigned char *mem = mmap(NULL, SIZE, PROT_READ | PROT_WRITE,
						  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			struct pgc_lazy_region reg = { mem, SIZE, whole.start };
			volatile unsigned char sink;

			close(lfd);
			if (mem == MAP_FAILED || pgc_lazy_attach(SOCK, &reg, 1) < 0)
				_exit(2);
			sink = mem[SIZE / 2];
			(void)sink;
			if (k)
				raise(SIGKILL);
			_exit(memgen_check(seed, whole.start + SIZE / 2, mem + SIZE / 2, PAGE) ==
			      UINT64_MAX ? 0 : 1);
		}
		mf = load_bg("img", 2);
		pgc_lazy_serve_opts_init(&o);
		o.accept_timeout_ms = 10000;
		ret = pgc_lazy_serve(mf, lfd, &o, &st);
		CHECK_EQ(ret, 0);
		CHECK_EQ(waitpid(pid, &status, 0), pid);
		if (k)
			CHECK(WIFSIGNALED(status));
		else
			CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		printf("  consumer %s: session %.1f ms, %s, %llu MiB placed\n",
		       k ? "killed" : "exited", st.ns_session / 1e6,
		       st.consumer_gone ? "consumer gone" : "all placed",
		       (unsigned long long)((st.bytes_copied + st.bytes_zeroed) >> 20));
		close(lfd);
		unlink(SOCK);
		pgc_memfile_destroy(mf);
	}
}

/* ---- limits and hostile consumers ---------------------------------------- */

/*
 * A child of uid @uid connects to a socket in @dir and sends garbage; what
 * does the server say?
 */
static int serve_stranger(pgc_memfile *mf, const char *dir, uint32_t uid, const uint32_t *allow,
			  size_t nallow)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pgc_lazy_serve_opts o;
	int lfd, status, ret;
	struct stat st;
	pid_t pid;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s", dir);
	lfd = pgc_lazy_listen(sa.sun_path);
	CHECK(lfd >= 0);
	CHECK_EQ(stat(sa.sun_path, &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0600);
	chmod(sa.sun_path, 0666);   /* as if someone opened it up: the uid check remains */
	pid = fork();
	if (pid == 0) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (setresgid(uid, uid, uid) || setresuid(uid, uid, uid) ||
		    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
			_exit(2);
		/* A refused peer may find the connection closed already. */
		(void)!send(fd, "garbage", 7, MSG_NOSIGNAL);
		sleep(1);
		_exit(0);
	}
	pgc_lazy_serve_opts_init(&o);
	o.accept_timeout_ms = 5000;
	o.allow_uids = allow;
	o.nallow_uids = nallow;
	ret = pgc_lazy_serve(mf, lfd, &o, NULL);
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(lfd);
	unlink(sa.sun_path);
	return ret;
}

/* Only the server's own uid, root and allowed uids may hand over a uffd. */
static void test_peer_check(void)
{
	const uint32_t nobody = 65534;
	pgc_memfile *mf;

	if (geteuid() != 0) {
		printf("  not root: skipped\n");
		return;
	}
	/* The test's own directory may be closed to others: one they may enter. */
	char dir[] = "/tmp/pgckpt-peer.XXXXXX";

	CHECK(mkdtemp(dir) != NULL && chmod(dir, 0755) == 0);
	mf = load_bg("img", 8);
	CHECK_EQ(serve_stranger(mf, dir, nobody, NULL, 0), -EACCES);
	CHECK_EQ(serve_stranger(mf, dir, nobody, &nobody, 1), -EINVAL);   /* let in: its garbage */
	pgc_memfile_destroy(mf);
	rmdir(dir);
}

/* LAZY_MAX_REGIONS regions fit one handoff, whatever their values. */
static void test_many_regions(void)
{
	static struct lazy_map maps[LAZY_MAX_REGIONS];
	static char json[LAZY_MAX_MSG];
	struct pgc_lazy_region *reg;
	struct server sv = { 0 };
	size_t n = LAZY_MAX_REGIONS, i;
	unsigned char *mem;
	pgc_memfile *mf;
	int uffd;

	for (i = 0; i < n; i++)
		maps[i] = (struct lazy_map){ UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX };
	/* The longest form, with both page_size keys. */
	CHECK(lazy_format_regions(maps, n, LAZY_FORM_BOTH, json, sizeof(json)) > 0);

	mf = load_bg("img", 8);
	pgc_lazy_serve_opts_init(&sv.o);
	server_start(&sv, mf);
	mem = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	reg = calloc(n, sizeof(*reg));
	CHECK(mem != MAP_FAILED && reg);
	/* One page each, in reverse file order. */
	for (i = 0; i < n; i++)
		reg[i] = (struct pgc_lazy_region){ mem + i * PAGE, PAGE,
						   whole.start + (n - 1 - i) * PAGE };
	uffd = pgc_lazy_attach(SOCK, reg, n);
	CHECK(uffd >= 0);
	for (i = 0; uffd >= 0 && i < n; i++)
		CHECK_EQ(memgen_check(seed, whole.start + (n - 1 - i) * PAGE, mem + i * PAGE, PAGE),
			 UINT64_MAX);
	server_join(&sv);
	CHECK_EQ(sv.ret, 0);
	CHECK_EQ(sv.st.regions, n);
	if (uffd >= 0)
		close(uffd);
	CHECK_EQ(pgc_lazy_attach(SOCK, reg, n + 1), -EINVAL);
	free(reg);
	munmap(mem, n * PAGE);
	pgc_memfile_destroy(mf);
}

static int count_fds(void)
{
	struct dirent *d;
	DIR *dir = opendir("/proc/self/fd");
	int n = 0;

	while (dir && (d = readdir(dir)) != NULL)
		n += d->d_name[0] != '.';
	if (dir)
		closedir(dir);
	return n;
}

/*
 * The consumer of test_fork_events, in a process of its own (a fork waits
 * in the kernel until the server reads the event, holding glibc's malloc
 * locks: a server thread in the same process would deadlock). Exit
 * status 0 if every page read back right, 3 without EVENT_FORK.
 */
static int fork_consumer(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_FORK };
	struct uffdio_register r;
	unsigned char *mem;
	char json[256];
	int uffd, sock, i, status;
	pid_t pid;

	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0)
		return 3;
	mem = mmap(NULL, 4 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	r = (struct uffdio_register){ { (uintptr_t)mem, 4 * MIB }, UFFDIO_REGISTER_MODE_MISSING, 0 };
	if (mem == MAP_FAILED || ioctl(uffd, UFFDIO_REGISTER, &r) < 0)
		return 2;
	snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%llu,\"size\":%llu,"
		 "\"offset\":%llu,\"page_size\":4096}]", (unsigned long long)(uintptr_t)mem,
		 (unsigned long long)(4 * MIB), (unsigned long long)whole.start);
	sock = connect_sock();
	send_with_fd(sock, json, uffd);
	close(sock);
	/* Half the pages before the forks, half after. */
	if (memgen_check(seed, whole.start, mem, 2 * MIB) != UINT64_MAX)
		return 1;
	for (i = 0; i < 50; i++) {
		pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid < 0 || waitpid(pid, &status, 0) != pid)
			return 2;
	}
	return memgen_check(seed, whole.start + 2 * MIB, mem + 2 * MIB, 2 * MIB) == UINT64_MAX ?
	       0 : 1;
}

/*
 * A consumer with UFFD_FEATURE_EVENT_FORK that forks: each fork hands the
 * server a new uffd, which it must close (no fd leak).
 */
static void test_fork_events(void)
{
	struct pgc_lazy_serve_opts o;
	struct pgc_lazy_stats st;
	int lfd, fds0, status = 0;
	pgc_memfile *mf;
	pid_t pid;

	fds0 = count_fds();
	lfd = pgc_lazy_listen(SOCK);
	CHECK(lfd >= 0);
	pid = fork();
	if (pid == 0) {
		close(lfd);
		_exit(fork_consumer());
	}
	CHECK(pid > 0);
	mf = load_bg("img", 8);
	pgc_lazy_serve_opts_init(&o);
	o.accept_timeout_ms = 10000;
	o.no_push = true;   /* keep the session open while the consumer forks */
	CHECK_EQ(pgc_lazy_serve(mf, lfd, &o, &st), 0);
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	close(lfd);
	unlink(SOCK);
	pgc_memfile_destroy(mf);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
		printf("  no UFFD_FEATURE_EVENT_FORK here: skipped\n");
		return;
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_EQ(st.forks, 50);
	/* Every fork's uffd was closed again. */
	CHECK_EQ(count_fds(), fds0);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	seed = test_rand();
	TEST_RUN(test_json);
	TEST_RUN(test_json_forms);
	if (!uffd_available()) {
		printf("userfaultfd unavailable (%s)\n", strerror(errno));
		test_done();
		test_skip("userfaultfd unavailable");
	}
	make_image("img", SIZE);
	TEST_RUN(test_lazy_restore);
	TEST_RUN(test_fault_during_push);
	TEST_RUN(test_push_slices);
	TEST_RUN(test_working_set);
	TEST_RUN(test_record_window);
	TEST_RUN(test_naive_and_remove);
	TEST_RUN(test_naive_no_spin);
	TEST_RUN(test_two_regions_early_close);
	TEST_RUN(test_two_consumers);
	TEST_RUN(test_sessions_fair);
	TEST_RUN(test_bad_handoff);
	TEST_RUN(test_consumer_dies);
	TEST_RUN(test_peer_check);
	TEST_RUN(test_many_regions);
	TEST_RUN(test_fork_events);
	CHECK_EQ(system("rm -rf img"), 0);
	return test_done();
}
