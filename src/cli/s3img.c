/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3img.c - images at s3://BUCKET/PREFIX for the commands that take an
 * IMAGE (docs/s3.md), through one narrow seam: the command runs as usual
 * on local copies in a private temporary directory (the stage), and this
 * file decides what goes there and what comes back (s3xfer.c moves it).
 *
 * The stage holds a tree mirroring the bucket's keys: the image at PREFIX
 * is staged at tree/PREFIX. A child image names its parent by a path
 * relative to its own directory, so in the tree that path leads to the
 * parent's prefix, a sibling in the same bucket: readers fetch the chain
 * link by link (pgc_image_parent says where the next one is), and save
 * --parent stages the parent's chain and writes the child beside it.
 * restore (eager, lazy, and flatten's load) leaves every pages.img
 * remote and reads it by range (s3src.c); inspect and save's parent need
 * only placeholders; verify and export fetch it whole. save and flatten
 * to s3:// upload the image they wrote, memfile.img last.
 * S3 failures exit 2 with the request that failed; a bad image exits 3.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "s3img.h"

/*
 * Restores from S3: the fill's GETs in flight (the loader's workers) and
 * the most bytes of neighbouring blocks it asks for in one GET. Eager
 * restores want throughput; lazy ones a small window, since a demand GET
 * queues at the server behind the fill's (docs/s3.md, "Reads").
 */
#define S3_JOBS 4
#define S3_FILL_READ (8u << 20)
#define S3_LAZY_JOBS 2
#define S3_LAZY_FILL_READ (4u << 20)

#define CHAIN_MAX CLI_S3SRC_LAYERS    /* images in a chain: PGC_MAX_DEPTH + 1 */

/* One cli_s3_run: the transfer state, the tree, the images involved. */
struct run {
	struct s3img x;
	char tree[4200];                  /* stage/tree: the bucket's keys as paths */
	struct s3where img;               /* the IMAGE (when s3://) */
	struct s3where other;             /* save's --parent, or flatten's OUT */
	char chain[CHAIN_MAX][1024];      /* prefixes of the image's chain, fetched */
	int nchain;
	char parent_arg[5500];            /* "--parent=DIR" in place of the URL */
	char tree_url[80];                /* "s3://BUCKET": what the tree stands for */
};

/* Local copies and the URLs they stand for (cli_image_name). */
static struct {
	const char *local, *url;
} shown[2];
static char shown_buf[4400];
/* The image whose load reads through shown_src (cli_s3_load_opts). */
static const char *src_local;
static struct cli_s3src *shown_src;

void cli_s3_load_opts(const char *img, struct pgc_load_opts *lo)
{
	if (!shown_src || !img || !src_local || strcmp(img, src_local) != 0)
		return;
	lo->pages_source = cli_s3src_ops(shown_src);
	if (!lo->jobs)
		lo->jobs = lo->background ? S3_LAZY_JOBS : S3_JOBS;
	lo->max_read = lo->background ? S3_LAZY_FILL_READ : S3_FILL_READ;
}

const char *cli_image_name(const char *path)
{
	size_t i, n;

	for (i = 0; path && i < 2 && shown[i].local; i++) {
		n = strlen(shown[i].local);
		if (strncmp(path, shown[i].local, n) != 0 || (path[n] && path[n] != '/'))
			continue;
		snprintf(shown_buf, sizeof(shown_buf), "%s%s", shown[i].url, path + n);
		return shown_buf;
	}
	return path;
}

static const char *env_lookup(const char *name)
{
	return getenv(name);
}

/* Whether @p is "" or names made of plain components (no "", ".", ".."). */
static bool prefix_plain(const char *p)
{
	const char *c = p;

	if (!*p)
		return true;
	for (;;) {
		const char *e = strchr(c, '/');
		size_t n = e ? (size_t)(e - c) : strlen(c);

		if (!n || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		if (!e)
			return true;
		c = e + 1;
	}
}

/*
 * Fill @w for the image at @url (or, @url NULL, at @prefix of @bucket),
 * staged at @dir (NULL: tree/PREFIX). Returns EXIT_OK or a usage error.
 */
static int where(struct run *m, const char *url, const char *bucket, const char *prefix,
		 const char *dir, struct s3where *w)
{
	if (url && s3_parse_url(url, w->bucket, sizeof(w->bucket), w->prefix,
				sizeof(w->prefix)) != 1)
		return cli_usage(m->x.cmd, "'%s' is not s3://BUCKET/PREFIX (a bucket name is 3 to "
				 "63 of a-z 0-9 . -)", url);
	if (!url) {
		snprintf(w->bucket, sizeof(w->bucket), "%s", bucket);
		snprintf(w->prefix, sizeof(w->prefix), "%s", prefix);
	}
	if (!prefix_plain(w->prefix))
		return cli_usage(m->x.cmd, "'%s': a PREFIX may not have empty, '.' or '..' parts",
				 url ? url : prefix);
	snprintf(w->url, sizeof(w->url), "s3://%s/%s", w->bucket, w->prefix);
	/* The bucket's root has no place in the tree: no chain can reach it. */
	if (dir)
		snprintf(w->dir, sizeof(w->dir), "%s", dir);
	else if (!w->prefix[0])
		snprintf(w->dir, sizeof(w->dir), "%s/root", m->x.stage);
	else
		snprintf(w->dir, sizeof(w->dir), "%s/%s", m->tree, w->prefix);
	if (!dir && !shown[0].local) {
		snprintf(m->tree_url, sizeof(m->tree_url), "s3://%s", w->bucket);
		shown[0].local = m->tree;
		shown[0].url = m->tree_url;
	}
	return EXIT_OK;
}

/* Make the directories above @dir inside the stage (not @dir). Returns 0 or -errno. */
static int make_parents(char *dir)
{
	char *s;

	for (s = strchr(dir + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdir(dir, 0700) && errno != EEXIST) {
			*s = '/';
			return -errno;
		}
		*s = '/';
	}
	return 0;
}

/* @in with ".", ".." and repeated '/' resolved by name only, into @out. */
static void normalize(const char *in, char *out, size_t len)
{
	size_t o = 0;
	const char *c = in;

	if (*in == '/' && len > 1)
		out[o++] = '/';
	out[o] = '\0';
	while (*c) {
		const char *e = strchr(c, '/');
		size_t n = e ? (size_t)(e - c) : strlen(c);

		if (n == 2 && c[0] == '.' && c[1] == '.') {
			char *slash = strrchr(out, '/');

			o = slash ? (size_t)(slash - out) : 0;
			out[o] = '\0';
		} else if (n && !(n == 1 && c[0] == '.') && o + n + 2 < len) {
			if (o && out[o - 1] != '/')
				out[o++] = '/';
			memcpy(out + o, c, n);
			o += n;
			out[o] = '\0';
		}
		c = e ? e + 1 : c + n;
	}
}

/* Whether the path @norm (normalized) is an image of the chain fetched so far. */
static bool in_chain(const struct run *m, const char *norm, const char *tree)
{
	size_t n = strlen(tree);
	int i;

	if (strncmp(norm, tree, n) != 0 || norm[n] != '/')
		return false;
	for (i = 0; i < m->nchain; i++)
		if (strcmp(norm + n + 1, m->chain[i]) == 0)
			return true;
	return false;
}

/*
 * Fetch the image at @w and then its chain of parents, each at the
 * prefix its recorded path leads to in the tree, with pages.img as
 * @pages says; their prefixes into m->chain. Returns an exit status.
 */
static int fetch_chain(struct run *m, const struct s3where *w, enum s3_pages pages)
{
	char par[PATH_MAX], norm[PATH_MAX], tree[4200];
	struct s3where cur = *w;
	size_t n;
	int ret;

	normalize(m->tree, tree, sizeof(tree));
	n = strlen(tree);
	for (m->nchain = 0;; ) {
		ret = make_parents(cur.dir);
		if (ret)
			return cli_fail(m->x.cmd, cur.dir, ret);
		ret = s3x_fetch(&m->x, &cur, pages);
		if (ret)
			return ret;
		snprintf(m->chain[m->nchain++], sizeof(m->chain[0]), "%s", cur.prefix);
		ret = pgc_image_parent(cur.dir, par, sizeof(par));
		if (ret == -ENODATA)
			return EXIT_OK;          /* standalone: the chain is whole */
		if (ret && ret != -PGC_EPARENT)
			return cli_fail_image(m->x.cmd, cur.dir, ret);
		normalize(par, norm, sizeof(norm));
		/* 0: staged already, so the chain loops; or it leaves the bucket. */
		if (!ret || in_chain(m, norm, tree) || m->nchain == CHAIN_MAX ||
		    strncmp(norm, tree, n) != 0 || norm[n] != '/') {
			cli_error(m->x.cmd, cur.url, "its parent (%s) is %s", cli_image_name(norm),
				  !ret || in_chain(m, norm, tree) ? "in its own chain" :
				  m->nchain == CHAIN_MAX ? "too far up the chain" : "outside the bucket");
			return EXIT_IMAGE;
		}
		ret = where(m, NULL, w->bucket, norm + n + 1, NULL, &cur);
		if (ret)
			return EXIT_IMAGE;
	}
}

/*
 * Take --cache-dir DIR (or --cache-dir=DIR) out of @argv (before any
 * "--"), into *@dir. Returns the new argc, or -1 for one without DIR.
 */
static int take_cache_dir(int argc, char **argv, const char **dir)
{
	int i, n;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strncmp(argv[i], "--cache-dir", 11) != 0 || (argv[i][11] && argv[i][11] != '='))
			continue;
		n = argv[i][11] ? 1 : 2;
		if (i + n > argc || (n == 1 && !argv[i][12]))
			return -1;
		*dir = n == 1 ? argv[i] + 12 : argv[i + 1];
		memmove(argv + i, argv + i + n, (size_t)(argc - i - n + 1) * sizeof(*argv));
		argc -= n;
		i--;
	}
	return argc;
}

static int setup(struct run *m)
{
	char err[256];
	const char *tmp = getenv("TMPDIR");
	int ret = s3_config_load(&m->x.cfg, env_lookup, err, sizeof(err));

	if (ret) {
		cli_error(m->x.cmd, m->x.url, "%s", err);
		return EXIT_IO;
	}
	ret = s3_client_new(&m->x.cfg, &m->x.s);
	m->x.buf = malloc(S3IMG_PART);
	if (ret || !m->x.buf)
		return cli_fail(m->x.cmd, NULL, -ENOMEM);
	snprintf(m->x.stage, sizeof(m->x.stage), "%s/pgckpt-s3.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	cli_cleanup_lock(); /* no signal between the mkdtemp and its registration */
	if (!mkdtemp(m->x.stage)) {
		cli_cleanup_unlock();
		ret = -errno;
		m->x.stage[0] = '\0';
		return cli_fail(m->x.cmd, tmp && *tmp ? tmp : "/tmp", ret);
	}
	cli_cleanup_stage(m->x.stage);
	cli_cleanup_unlock();
	snprintf(m->tree, sizeof(m->tree), "%s/tree", m->x.stage);
	if (mkdir(m->tree, 0700))
		return cli_fail(m->x.cmd, m->tree, -errno);
	return EXIT_OK;
}

/* Whether @arg is an s3:// URL. */
static bool is_url(const char *arg)
{
	return strncmp(arg, "s3://", 5) == 0;
}

/*
 * The argument of save's --parent (its index in *@at; for "--parent=P",
 * *@eq is set), or NULL.
 */
static const char *parent_arg(int argc, char **argv, int *at, bool *eq)
{
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strncmp(argv[i], "--parent", 8) != 0 || (argv[i][8] && argv[i][8] != '='))
			continue;
		*eq = argv[i][8] == '=';
		*at = *eq ? i : i + 1;
		return *eq ? argv[i] + 9 : i + 1 < argc ? argv[i + 1] : NULL;
	}
	return NULL;
}

/* The index of the IMAGE among s3:// arguments other than @skip; -1 none, -2 more. */
static int find_url(int argc, char **argv, int skip)
{
	int i, at = -1;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (i == skip || !is_url(argv[i]))
			continue;
		if (at >= 0)
			return -2;
		at = i;
	}
	return at;
}

/* save: the parent's chain staged, the child written beside it in the tree. */
static int stage_save(struct run *m, int argc, char **argv, int at)
{
	int pat = 0, ret;
	bool eq = false;
	const char *par = parent_arg(argc, argv, &pat, &eq);

	/* check_args made sure: in the IMAGE's bucket. */
	if (par) {
		ret = where(m, par, NULL, NULL, NULL, &m->other);
		if (ret)
			return ret;
		ret = fetch_chain(m, &m->other, S3_PAGES_PLACEHOLDER);
		if (ret)
			return ret;
		if (eq) {
			snprintf(m->parent_arg, sizeof(m->parent_arg), "--parent=%s", m->other.dir);
			argv[pat] = m->parent_arg;
		} else {
			argv[pat] = m->other.dir;
		}
	}
	ret = make_parents(m->img.dir);
	if (ret)
		return cli_fail(m->x.cmd, m->img.dir, ret);
	argv[at] = m->img.dir;
	return EXIT_OK;
}

/* flatten IMAGE OUT: either or both s3://; OUT never in IMAGE's chain. */
static int stage_flatten(struct run *m, char **argv)
{
	char out[4200];
	int i, ret;

	if (is_url(argv[1])) {
		ret = where(m, argv[1], NULL, NULL, NULL, &m->img);
		if (!ret)
			ret = fetch_chain(m, &m->img, S3_PAGES_SOURCE);
		if (ret)
			return ret;
		argv[1] = m->img.dir;
		src_local = m->img.dir;
	}
	if (is_url(argv[2])) {
		snprintf(out, sizeof(out), "%s/out", m->x.stage);
		ret = where(m, argv[2], NULL, NULL, out, &m->other);
		if (ret)
			return ret;
		for (i = 0; i < m->nchain; i++)
			if (!strcmp(m->other.bucket, m->img.bucket) &&
			    !strcmp(m->other.prefix, m->chain[i])) {
				cli_error(m->x.cmd, m->other.url, "is %s or one of its parents; give "
					  "another name", m->img.url);
				return EXIT_USAGE;
			}
		argv[2] = m->other.dir;
		shown[1].local = m->other.dir;
		shown[1].url = m->other.url;
	}
	return EXIT_OK;
}

/* Stage what @cmd needs of the IMAGE at argv[@at]. Returns an exit status. */
static int stage(struct run *m, int argc, char **argv, int at)
{
	const char *cmd = m->x.cmd;

	if (strcmp(cmd, "flatten") == 0)
		return stage_flatten(m, argv);
	if (strcmp(cmd, "save") == 0)
		return stage_save(m, argc, argv, at);
	argv[at] = m->img.dir;
	if (strcmp(cmd, "restore") == 0) {
		src_local = m->img.dir;
		return fetch_chain(m, &m->img, S3_PAGES_SOURCE);
	}
	return fetch_chain(m, &m->img, strcmp(cmd, "inspect") == 0 ? S3_PAGES_PLACEHOLDER
								 : S3_PAGES_WHOLE);
}

/* Which s3:// arguments @cmd may have; IMAGE's index into *@at (-1: none). */
static int check_args(const char *cmd, int argc, char **argv, int *at)
{
	char b1[64], b2[64], p1[1024], p2[1024];
	bool save = strcmp(cmd, "save") == 0;
	const char *par;
	bool eq = false;
	int pat = 0;

	if (strcmp(cmd, "flatten") == 0 && argc == 3 && (is_url(argv[1]) || is_url(argv[2]))) {
		*at = is_url(argv[1]) ? 1 : 2;
		return EXIT_OK;
	}
	if (!save || !parent_arg(argc, argv, &pat, &eq))
		pat = 0;
	*at = find_url(argc, argv, pat);
	if (*at == -2)
		return cli_usage(cmd, "only one s3:// argument, the IMAGE");
	par = pat ? argv[pat] + (eq ? 9 : 0) : "";
	if (*at == -1 && is_url(par))
		return cli_usage(cmd, "a parent on s3:// needs an s3:// IMAGE in its bucket");
	/* The same bucket (a chain names its parent by a relative path). */
	if (*at >= 0 && is_url(par) &&
	    (s3_parse_url(par, b1, sizeof(b1), p1, sizeof(p1)) != 1 ||
	     s3_parse_url(argv[*at], b2, sizeof(b2), p2, sizeof(p2)) != 1 || strcmp(b1, b2) != 0))
		return cli_usage(cmd, "the parent must be an s3:// image in the IMAGE's bucket");
	if (*at >= 0 && pat && !is_url(par))
		return cli_usage(cmd, "a parent of an s3:// IMAGE must be s3:// too, in its "
				 "bucket (a chain names its parent by a relative path)");
	if (*at >= 0 && (strcmp(cmd, "bench") == 0 || (save && *at != argc - 1)))
		return cli_usage(cmd, "only the IMAGE may be s3://BUCKET/PREFIX");
	return EXIT_OK;
}

int cli_s3_run(const char *cmd, int (*fn)(int, char **), int argc, char **argv)
{
	struct run *m = calloc(1, sizeof(*m));
	char **keep = NULL;
	int at = -1, ret;

	if (!m)
		return cli_fail(cmd, NULL, -ENOMEM);
	m->x.cmd = cmd;
	argc = take_cache_dir(argc, argv, &m->x.cache_dir);
	ret = argc < 0 ? cli_usage(cmd, "option '--cache-dir' needs an argument")
		       : check_args(cmd, argc, argv, &at);
	if (!ret && m->x.cache_dir && (at < 0 || strcmp(cmd, "restore") != 0))
		ret = cli_usage(cmd, "--cache-dir applies to restores of s3:// images only");
	if (ret || at < 0) {
		free(m);
		return ret ? ret : fn(argc, argv);
	}
	/* The arguments as given, put back after the run. */
	keep = malloc((size_t)(argc + 1) * sizeof(*keep));
	ret = keep ? EXIT_OK : cli_fail(cmd, NULL, -ENOMEM);
	if (!ret) {
		memcpy(keep, argv, (size_t)(argc + 1) * sizeof(*keep));
		m->x.url = argv[at];
		ret = setup(m);
	}
	if (!ret && strcmp(cmd, "flatten") != 0)
		ret = where(m, argv[at], NULL, NULL, NULL, &m->img);
	if (!ret)
		ret = stage(m, argc, argv, at);
	if (!ret) {
		shown_src = m->x.src;
		ret = fn(argc, argv);
		shown_src = NULL;
		if (ret && m->x.src && cli_s3src_error(m->x.src)[0])
			cli_error(cmd, m->x.url, "%s", cli_s3src_error(m->x.src));
	}
	if (!ret && strcmp(cmd, "save") == 0)
		ret = s3x_upload(&m->x, &m->img);
	if (!ret && strcmp(cmd, "flatten") == 0 && m->other.bucket[0])
		ret = s3x_upload(&m->x, &m->other);
	memset(shown, 0, sizeof(shown));
	src_local = NULL;
	if (keep)
		memcpy(argv, keep, (size_t)(argc + 1) * sizeof(*keep));
	free(keep);
	if (m->x.stage[0]) {
		cli_remove_tree(m->x.stage);
		cli_cleanup_stage(NULL);
	}
	cli_s3src_free(m->x.src);
	s3_client_free(m->x.s);
	s3_client_free(m->x.s2);
	free(m->x.buf2);
	memset(&m->x.cfg, 0, sizeof(m->x.cfg));   /* the secrets */
	free(m->x.buf);
	free(m);
	return ret;
}
