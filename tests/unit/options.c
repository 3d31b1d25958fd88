/* SPDX-License-Identifier: Apache-2.0 */
/*
 * options.c - unit tests of the tunables table (src/util/options.c): every
 * entry is sane and matches the format limits it mirrors, the *_init
 * functions and engine_jobs read through it, environment variables parse
 * as documented, test hooks are apart from user variables, and
 * docs/tunables.md lists exactly the table's rows.
 * `options --markdown` prints those rows, to paste into the doc.
 */
#include <limits.h>
#include <stdio.h>

#include "engine/engine.h"
#include "util/options.h"
#include "pgckpt.h"
#include "statefile/statefile.h"
#include "test.h"

#define KiB (1LL << 10)
#define MiB (1LL << 20)

static void fmt_num(char *buf, size_t len, int64_t v, bool bytes)
{
	if (v == INT_MAX)
		snprintf(buf, len, "INT_MAX");
	else if (v == UINT32_MAX)
		snprintf(buf, len, "UINT32_MAX");
	else if (bytes && v >= MiB && v % MiB == 0)
		snprintf(buf, len, "%lld MiB", (long long)(v / MiB));
	else if (bytes && v >= KiB && v % KiB == 0)
		snprintf(buf, len, "%lld KiB", (long long)(v / KiB));
	else
		snprintf(buf, len, "%lld", (long long)v);
}

/* The docs/tunables.md row of tunable @id. */
static void opt_row(enum opt_id id, char *buf, size_t len)
{
	const struct opt_desc *d = opt_desc(id);
	char def[32], lo[32], hi[32], bounds[80], env[64], field[128], flag[64];

	if (d->def_str) {
		snprintf(def, sizeof(def), "`%s`", d->def_str);
		snprintf(bounds, sizeof(bounds), "-");
	} else {
		fmt_num(def, sizeof(def), d->def, d->bytes);
		fmt_num(lo, sizeof(lo), d->min, d->bytes);
		fmt_num(hi, sizeof(hi), d->max, d->bytes);
		snprintf(bounds, sizeof(bounds), "%s .. %s", lo, hi);
	}
	snprintf(env, sizeof(env), d->env ? "`%s`" : "-", d->env);
	snprintf(field, sizeof(field), d->field ? "`%s`" : "-", d->field);
	snprintf(flag, sizeof(flag), d->flag ? "`pgckpt %s`" : "-", d->flag);
	snprintf(buf, len, "| `%s` | %s | %s | %s | %s | %s | %s |", d->name, env, def, bounds,
		 field, flag, d->doc);
}

static void hook_row(enum hook_id id, char *buf, size_t len)
{
	snprintf(buf, len, "| `%s` | %s |", hook_desc(id)->env, hook_desc(id)->doc);
}

static void test_table_sane(void)
{
	int i, j;

	for (i = 0; i < OPT_COUNT; i++) {
		const struct opt_desc *d = opt_desc(i);

		CHECK(d->name && d->doc);
		CHECK(d->env || d->field);
		if (d->def_str)
			continue;
		CHECK(d->min <= d->def && d->def <= d->max);
		CHECK_EQ(opt_default(i), d->def);
		CHECK_EQ(opt_min(i), d->min);
		CHECK_EQ(opt_max(i), d->max);
		if (d->env)
			CHECK(strncmp(d->env, "PGCKPT_", 7) == 0);
	}
	/* Test hooks are not user variables. */
	for (i = 0; i < HOOK_COUNT; i++) {
		CHECK(strncmp(hook_desc(i)->env, "PGCKPT_", 7) == 0);
		for (j = 0; j < OPT_COUNT; j++)
			CHECK(!opt_desc(j)->env || strcmp(opt_desc(j)->env, hook_desc(i)->env));
	}
	/* Bounds that are the image format's own. */
	CHECK_EQ(opt_max(OPT_SAVE_BLOCK_SIZE), SF_MAX_BLOCK);
	CHECK_EQ(opt_min(OPT_SAVE_BLOCK_SIZE), PGC_PAGE_SIZE);
	CHECK_EQ(opt_min(OPT_LAZY_FAULT_BYTES), PGC_PAGE_SIZE);
}

static void test_inits_read_table(void)
{
	struct pgc_save_opts so;
	struct pgc_load_opts lo;
	struct pgc_lazy_serve_opts zo;

	pgc_save_opts_init(&so);
	CHECK_EQ(so.level, opt_default(OPT_SAVE_LEVEL));
	CHECK_EQ(so.block_size, opt_default(OPT_SAVE_BLOCK_SIZE));
	CHECK_EQ(so.jobs, opt_default(OPT_JOBS));
	pgc_load_opts_init(&lo);
	CHECK_EQ(lo.max_read, opt_default(OPT_LOAD_MAX_READ));
	CHECK_EQ(lo.max_iovecs, opt_default(OPT_LOAD_MAX_IOVECS));
	CHECK_EQ(lo.max_inflight, opt_default(OPT_LOAD_MAX_INFLIGHT));
	CHECK_EQ(lo.jobs, opt_default(OPT_JOBS));
	pgc_lazy_serve_opts_init(&zo);
	CHECK_EQ(zo.fault_bytes, opt_default(OPT_LAZY_FAULT_BYTES));
	CHECK_EQ(zo.push_bytes, opt_default(OPT_LAZY_PUSH_BYTES));
	CHECK_EQ(zo.accept_timeout_ms, opt_default(OPT_LAZY_ACCEPT_TIMEOUT_MS));
	CHECK_EQ(zo.handshake_timeout_ms, opt_default(OPT_LAZY_HANDSHAKE_TIMEOUT_MS));
	CHECK_EQ(engine_jobs(1000), opt_max(OPT_JOBS));
	CHECK_EQ(engine_jobs(3), 3);
	CHECK(engine_jobs(0) >= 1 && engine_jobs(0) <= opt_max(OPT_JOBS));
}

static void test_env(void)
{
	static const struct {
		const char *val;
		int64_t want;
	} cases[] = {
		{ "3", 3 }, { "1", 1 }, { "256", 256 }, { "257", 256 }, { "99999999999999999999", 256 },
		{ "0", 8 }, { "-4", 8 }, { "x", 8 }, { "3x", 8 }, { "", 8 },
	};
	const char *name = opt_desc(OPT_AIO_THREADS)->env;
	size_t i;

	CHECK_EQ(opt_default(OPT_AIO_THREADS), 8);
	unsetenv(name);
	CHECK_EQ(opt_env_int(OPT_AIO_THREADS), 8);
	CHECK(opt_env(OPT_AIO_THREADS) == NULL);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		setenv(name, cases[i].val, 1);
		if (opt_env_int(OPT_AIO_THREADS) != cases[i].want) {
			printf("  %s=%s\n", name, cases[i].val);
			CHECK_EQ(opt_env_int(OPT_AIO_THREADS), cases[i].want);
		}
	}
	unsetenv(name);

	setenv("PGCKPT_AIO", "", 1);
	CHECK(opt_env(OPT_AIO) == NULL);
	setenv("PGCKPT_AIO", "threads", 1);
	CHECK(opt_env(OPT_AIO) && strcmp(opt_env(OPT_AIO), "threads") == 0);
	unsetenv("PGCKPT_AIO");
	CHECK(opt_env(OPT_JOBS) == NULL);   /* no variable */

	/* A hook is on when set at all, as before the table. */
	unsetenv("PGCKPT_LOADER_NO_PWRITE");
	CHECK(test_hook(HOOK_LOADER_NO_PWRITE) == NULL);
	setenv("PGCKPT_LOADER_NO_PWRITE", "", 1);
	CHECK(test_hook(HOOK_LOADER_NO_PWRITE) != NULL);
	unsetenv("PGCKPT_LOADER_NO_PWRITE");
}

/* docs/tunables.md holds every row of both tables, and no other row. */
static void test_doc_matches(void)
{
	const char *src = getenv("PGCKPT_SRC");
	char path[512], row[512], line[1024];
	size_t want = OPT_COUNT + HOOK_COUNT, rows = 0, found = 0;
	FILE *f;
	int i;

	if (!src)
		src = "..";
	snprintf(path, sizeof(path), "%s/docs/tunables.md", src);
	f = fopen(path, "r");
	CHECK(f != NULL);
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "| `", 3) != 0)
			continue;
		rows++;
		for (i = 0; i < OPT_COUNT + HOOK_COUNT; i++) {
			if (i < OPT_COUNT)
				opt_row(i, row, sizeof(row));
			else
				hook_row(i - OPT_COUNT, row, sizeof(row));
			if (strcmp(line, row) == 0) {
				found++;
				break;
			}
		}
		if (i == OPT_COUNT + HOOK_COUNT)
			printf("  not in the table (or differs): %s\n", line);
	}
	fclose(f);
	CHECK_EQ(rows, want);
	CHECK_EQ(found, want);
}

int main(int argc, char **argv)
{
	char row[512];
	int i;

	if (argc > 1 && strcmp(argv[1], "--markdown") == 0) {
		for (i = 0; i < OPT_COUNT; i++) {
			opt_row(i, row, sizeof(row));
			puts(row);
		}
		puts("");
		for (i = 0; i < HOOK_COUNT; i++) {
			hook_row(i, row, sizeof(row));
			puts(row);
		}
		return 0;
	}
	test_init(argc, argv);
	TEST_RUN(test_table_sane);
	TEST_RUN(test_inits_read_table);
	TEST_RUN(test_env);
	TEST_RUN(test_doc_matches);
	return test_done();
}
