/* SPDX-License-Identifier: Apache-2.0 */
/*
 * inspect.c - the read-only subcommands: `pgckpt inspect` (a table of the
 * image's metadata, or one JSON object with --json whose keys are listed
 * in docs/cli.md and only ever grow), `pgckpt verify` (every checksum,
 * every block decoded) and `pgckpt export --criu` (a CRIU pagemap.img and
 * pages-1.img). The work is done by pgc_image_info, pgc_image_verify and
 * pgc_image_export_criu; this file parses arguments and prints.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct option help_only[] = {
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char *compress_name(enum pgc_compress c)
{
	return c == PGC_COMPRESS_NONE ? "none" : "zstd";
}

/*
 * The path of the ancestor @d links above @img, into @buf (the chain was
 * checked already: pgc_image_info opened it whole).
 */
static const char *chain_path(const char *img, uint64_t d, char *buf, size_t len)
{
	char cur[PATH_MAX];

	snprintf(cur, sizeof(cur), "%s", img);
	while (d--) {
		if (pgc_image_parent(cur, buf, len) != 0)
			return "?";
		snprintf(cur, sizeof(cur), "%s", buf);
	}
	return buf;
}

static void print_json(const char *img, const struct pgc_image_info *in)
{
	fputs("{\"image\": ", stdout);
	cli_json_string(stdout, cli_image_name(img));
	printf(", \"version\": %" PRIu32, in->version);
	printf(", \"file_size\": %" PRIu64, in->file_size);
	printf(", \"mem_bytes\": %" PRIu64, in->mem_bytes);
	printf(", \"pages_bytes\": %" PRIu64, in->pages_bytes);
	if (in->pages_bytes)
		printf(", \"ratio\": %.3f", (double)in->mem_bytes / (double)in->pages_bytes);
	else
		fputs(", \"ratio\": null", stdout);
	printf(", \"segments\": %" PRIu64, in->segments);
	printf(", \"blocks\": %" PRIu64, in->blocks);
	printf(", \"block_size\": %" PRIu32, in->block_size);
	printf(", \"compression\": \"%s\"", compress_name(in->compress));
	if (in->compress == PGC_COMPRESS_ZSTD)
		printf(", \"level\": %d", in->level);
	else
		fputs(", \"level\": null", stdout);
	/* The chain: the parent first, the root last. */
	fputs(", \"parents\": [", stdout);
	for (uint64_t d = 0; d < in->depth; d++) {
		char par[PATH_MAX];

		if (d)
			fputs(", ", stdout);
		cli_json_string(stdout, cli_image_name(chain_path(img, d + 1, par, sizeof(par))));
	}
	fputs("]}\n", stdout);
}

static void print_size(const char *label, uint64_t n)
{
	char h[32];

	cli_human_bytes(n, h, sizeof(h));
	printf("%-16s%s (%" PRIu64 " bytes)\n", label, h, n);
}

static void print_table(const char *img, const struct pgc_image_info *in)
{
	char h[32];

	printf("%-16s%s\n", "image:", cli_image_name(img));
	printf("%-16s%" PRIu32 "\n", "format version:", in->version);
	print_size("memory file:", in->file_size);
	print_size("stored memory:", in->mem_bytes);
	print_size("pages.img:", in->pages_bytes);
	if (in->pages_bytes)
		printf("%-16s%.2f\n", "ratio:", (double)in->mem_bytes / (double)in->pages_bytes);
	else
		printf("%-16s-\n", "ratio:");
	printf("%-16s%" PRIu64 "\n", "segments:", in->segments);
	printf("%-16s%" PRIu64 "\n", "blocks:", in->blocks);
	cli_human_bytes(in->block_size, h, sizeof(h));
	printf("%-16s%s\n", "block size:", h);
	if (in->compress == PGC_COMPRESS_ZSTD)
		printf("%-16szstd (level %d)\n", "compression:", in->level);
	else
		printf("%-16snone\n", "compression:");
	for (uint64_t d = 1; d <= in->depth; d++) {
		char par[PATH_MAX], label[32];

		snprintf(label, sizeof(label), "%s", d == 1 ? "parent:" : "ancestor:");
		printf("%-16s%s\n", label, cli_image_name(chain_path(img, d, par, sizeof(par))));
	}
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pgc_image_info info;
	bool json = false;
	int opt, ret;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'J':
			json = true;
			break;
		case 'h':
			cli_help("inspect");
			return EXIT_OK;
		default:
			return cli_bad_option("inspect", opt, argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage("inspect", "expected IMAGE");
	ret = pgc_image_info(argv[optind], &info);
	if (ret)
		return cli_fail_image("inspect", argv[optind], ret);
	if (json)
		print_json(argv[optind], &info);
	else
		print_table(argv[optind], &info);
	return EXIT_OK;
}

int cmd_verify(int argc, char **argv)
{
	struct cli_progress bar;
	const char *img;
	int opt, ret;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:h", help_only, NULL)) != -1) {
		if (opt != 'h')
			return cli_bad_option("verify", opt, argv);
		cli_help("verify");
		return EXIT_OK;
	}
	if (argc - optind != 1)
		return cli_usage("verify", "expected IMAGE");
	img = argv[optind];
	cli_progress_init(&bar, "verify");
	cli_cleanup_progress(&bar);
	ret = pgc_image_verify(img, cli_progress_cb, &bar);
	cli_cleanup_lock();
	cli_progress_end(&bar);
	cli_cleanup_progress(NULL);
	cli_cleanup_unlock();
	if (ret)
		return cli_fail_image("verify", img, ret);
	printf("%s: ok\n", cli_image_name(img));
	return EXIT_OK;
}

int cmd_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "criu", no_argument, NULL, 'C' },
		{ "force", no_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pgc_image_info info;
	unsigned flags = 0;
	bool criu = false;
	int opt, ret;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'C':
			criu = true;
			break;
		case 'F':
			flags |= PGC_EXPORT_FORCE;
			break;
		case 'h':
			cli_help("export");
			return EXIT_OK;
		default:
			return cli_bad_option("export", opt, argv);
		}
	}
	if (!criu)
		return cli_usage("export", "a format is required: --criu");
	if (argc - optind != 2)
		return cli_usage("export", "expected IMAGE and DIR");
	/* Open the image first, so that an error names the right path. */
	ret = pgc_image_info(argv[optind], &info);
	if (ret)
		return cli_fail_image("export", argv[optind], ret);
	ret = pgc_image_export_criu(argv[optind], argv[optind + 1], flags);
	if (ret == -EEXIST) {
		cli_error("export", argv[optind + 1], "already holds pagemap.img or pages-1.img "
			  "(use --force to replace them)");
		return EXIT_IO;
	}
	if (ret)
		return cli_fail("export", pgc_is_image_error(ret) ? argv[optind] :
				argv[optind + 1], ret);
	return EXIT_OK;
}
