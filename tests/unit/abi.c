/* SPDX-License-Identifier: Apache-2.0 */
/*
 * abi.c - unit tests of the rules that keep binaries built against 0.1
 * working with later libraries (pgckpt.h, "Structs that grow"): the sizes
 * of the structs callers allocate are pinned, every function that takes
 * options refuses non-zero reserved[] words with -EINVAL and does nothing,
 * zero initialisers keep working, result structs come back with reserved[]
 * cleared; and pgc_version() against the compile-time macros.
 */
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memgen.h"
#include "pgckpt.h"
#include "test.h"

#define PAGE PGC_PAGE_SIZE
#define NRES(s) (sizeof((s).reserved) / sizeof((s).reserved[0]))

static bool all_zero(const uint64_t *w, size_t n)
{
	while (n--)
		if (w[n])
			return false;
	return true;
}

static void test_version(void)
{
	char s[32];
	unsigned v = pgc_version();

	CHECK_EQ(v, PGC_VERSION_NUMBER);
	CHECK_EQ(PGC_VERSION_NUMBER,
		 (PGC_VERSION_MAJOR << 16) | (PGC_VERSION_MINOR << 8) | PGC_VERSION_PATCH);
	snprintf(s, sizeof(s), "%u.%u.%u", v >> 16, (v >> 8) & 0xff, v & 0xff);
	CHECK(strcmp(pgc_version_string(), s) == 0);
	CHECK(strcmp(pgc_version_string(), PGC_VERSION_STRING) == 0);
}

/*
 * The 0.1 sizes on LP64: a field added anywhere but in place of reserved
 * words changes one of them (and breaks binaries built against 0.1). A
 * field that took reserved words moves the reserved offset, never the size.
 */
static void test_sizes_pinned(void)
{
#if defined(__LP64__)
#define PIN(s, size, res, nres)                                               \
	do {                                                                 \
		CHECK_EQ(sizeof(struct s), size);                            \
		CHECK_EQ(offsetof(struct s, reserved), res);                 \
		CHECK_EQ(sizeof(((struct s *)0)->reserved), nres);           \
	} while (0)
	PIN(pgc_memfile_opts, 96, 40, 56);     /* adopt_mapped took 1 word */
	PIN(pgc_alloc_opts, 96, 32, 64);
	PIN(pgc_save_opts, 120, 64, 56);       /* parent took 1 word */
	PIN(pgc_load_opts, 128, 88, 40);       /* working_set, record_working_set 2 words, pages_source 1 */
	PIN(pgc_pages_source, 64, 24, 40);   /* verified took 1 word */
	PIN(pgc_lazy_serve_opts, 96, 48, 48);  /* allow_uids, nallow_uids took 2 words */
	PIN(pgc_accounting, 120, 56, 64);
	PIN(pgc_load_stats, 128, 96, 32);      /* working_set_blocks, _error, demand_decodes, demand_partial took 4 words */
	PIN(pgc_image_info, 128, 72, 56);      /* depth took 1 word */
	PIN(pgc_lazy_stats, 168, 128, 40);     /* forks, bytes_prefetched, push_yields took 1 word each */
#undef PIN
	CHECK_EQ(sizeof(pgc_range), 16);
	CHECK_EQ(sizeof(struct pgc_lazy_region), 24);
	CHECK_EQ(sizeof(struct pgc_evictable_user), 8);
	CHECK_EQ(PGC_KIND_COUNT, 6);
#endif
}

/* A memory file holding @n pages of non-zero data, saved to @img. */
static pgc_memfile *saved_memfile(const char *img, unsigned n)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts ao = { .kind = PGC_KIND_ANONYMOUS };
	struct iovec iov;
	pgc_range r;

	CHECK_EQ(pgc_allocate(mf, n * PAGE, &ao, &r), 0);
	CHECK_EQ(pgc_map_internal(mf, r, PGC_ACCESS_WRITE, &iov, 1), 1);
	memset(iov.iov_base, 0x5a, iov.iov_len);
	CHECK_EQ(pgc_save(mf, img, NULL), 0);
	return mf;
}

static void test_memfile_reserved(void)
{
	struct pgc_memfile_opts o;
	pgc_memfile *mf = (pgc_memfile *)0x1;
	size_t i;

	for (i = 0; i < NRES(o); i++) {
		pgc_memfile_opts_init(&o);
		CHECK(all_zero(o.reserved, NRES(o)));
		o.reserved[i] = 1;
		CHECK_EQ(pgc_memfile_new(&o, &mf), -EINVAL);
		CHECK(mf == (pgc_memfile *)0x1);
	}
	/* A designated initialiser (reserved[] zero) is valid. */
	o = (struct pgc_memfile_opts){ .fd = -1 };
	CHECK_EQ(pgc_memfile_new(&o, &mf), 0);
	pgc_memfile_destroy(mf);
}

static void test_alloc_reserved(void)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = { .kind = PGC_KIND_TMPFS };
	struct pgc_accounting acct;
	pgc_range r = { 0, 0 };
	size_t i;

	for (i = 0; i < NRES(o); i++) {
		o.reserved[i] = 1ULL << 63;
		CHECK_EQ(pgc_allocate(mf, PAGE, &o, &r), -EINVAL);
		o.reserved[i] = 0;
	}
	CHECK_EQ(pgc_total_size(mf), 0);
	CHECK_EQ(pgc_allocate(mf, PAGE, &o, &r), 0);
	CHECK_EQ(r.end - r.start, PAGE);
	/* Result structs: reserved[] cleared, whatever the caller left there. */
	memset(&acct, 0xff, sizeof(acct));
	CHECK_EQ(pgc_update_usage(mf, NULL, 0), 0);
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acct), 0);
	CHECK(all_zero(acct.reserved, NRES(acct)));
	pgc_memfile_destroy(mf);
}

static void test_save_load_reserved(void)
{
	pgc_memfile *src = saved_memfile("base", 8), *dst;
	struct pgc_save_opts so;
	struct pgc_load_opts lo;
	struct pgc_load_stats st;
	struct pgc_image_info info;
	struct stat sb;

	pgc_save_opts_init(&so);
	so.reserved[NRES(so) - 1] = 7;
	CHECK_EQ(pgc_save(src, "img", &so), -EINVAL);
	CHECK(stat("img", &sb) != 0);
	/* Designated initialisers without reserved[] stay valid. */
	so = (struct pgc_save_opts){ .compress = PGC_COMPRESS_NONE };
	CHECK_EQ(pgc_save(src, "img", &so), 0);

	dst = memgen_memfile();
	pgc_load_opts_init(&lo);
	lo.reserved[0] = 1;
	CHECK_EQ(pgc_load(dst, "img", &lo), -EINVAL);
	/* Nothing happened: the same memory file still takes the image. */
	lo = (struct pgc_load_opts){ .jobs = 1 };
	CHECK_EQ(pgc_load(dst, "img", &lo), 0);
	CHECK_EQ(pgc_total_size(dst), pgc_total_size(src));

	memset(&st, 0xff, sizeof(st));
	CHECK_EQ(pgc_load_stats(dst, &st), 0);
	CHECK(all_zero(st.reserved, NRES(st)));
	CHECK_EQ(st.bytes_loaded, 8 * PAGE);
	memset(&info, 0xff, sizeof(info));
	CHECK_EQ(pgc_image_info("img", &info), 0);
	CHECK(all_zero(info.reserved, NRES(info)));
	CHECK_EQ(info.compress, PGC_COMPRESS_NONE);
	pgc_memfile_destroy(dst);
	pgc_memfile_destroy(src);
}

static void test_lazy_reserved(void)
{
	pgc_memfile *mf = saved_memfile("lazy", 2);
	struct pgc_lazy_serve_opts o;
	struct pgc_lazy_stats st;
	int sv[2], lfd;

	/* pgc_lazy_serve refuses before waiting for a consumer. */
	lfd = pgc_lazy_listen("sock");
	CHECK(lfd >= 0);
	pgc_lazy_serve_opts_init(&o);
	o.accept_timeout_ms = 0;
	o.reserved[3] = 1;
	CHECK_EQ(pgc_lazy_serve(mf, lfd, &o, &st), -EINVAL);
	close(lfd);
	unlink("sock");

	/* pgc_lazy_serve_conn refuses before reading the handoff. */
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	o.handshake_timeout_ms = 0;
	CHECK_EQ(pgc_lazy_serve_conn(mf, sv[0], &o, &st), -EINVAL);
	close(sv[1]);
	pgc_memfile_destroy(mf);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	TEST_RUN(test_version);
	TEST_RUN(test_sizes_pinned);
	TEST_RUN(test_memfile_reserved);
	TEST_RUN(test_alloc_reserved);
	TEST_RUN(test_save_load_reserved);
	TEST_RUN(test_lazy_reserved);
	return test_done();
}
