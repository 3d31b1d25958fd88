/* SPDX-License-Identifier: Apache-2.0 */
/*
 * replay.c - runs a fuzz harness without libFuzzer: every file of the
 * corpus directory (tests/fuzz/corpus/NAME under $PGCKPT_SRC or the
 * source tree, or the files and directories given as arguments) is fed
 * to LLVMFuzzerTestOneInput once. Built with the normal compiler (and
 * its sanitizers) into $(B)/tests/fuzz_replay_NAME, so `make check`
 * replays the saved corpus, crashers included. Prints one line per
 * directory and "N passed, 0 failed"; a crash fails the program.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FUZZ_NAME
#error "FUZZ_NAME (the corpus name) must be defined"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	struct stat st;
	uint8_t *buf;
	ssize_t got;
	size_t done = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -1;
	while (done < (size_t)st.st_size) {
		got = read(fd, buf + done, (size_t)st.st_size - done);
		if (got <= 0)
			break;
		done += (size_t)got;
	}
	close(fd);
	/* An exact-size copy, so ASan sees reads past the input's end. */
	{
		uint8_t *exact = malloc(done ? done : 1);

		if (!exact)
			return -1;
		memcpy(exact, buf, done);
		LLVMFuzzerTestOneInput(exact, done);
		free(exact);
	}
	free(buf);
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every regular file of @dir in name order. Returns the count or -1. */
static int run_dir(const char *dir)
{
	struct dirent *e;
	char **names = NULL, path[4096];
	size_t n = 0, cap = 0, i;
	int count = 0;
	DIR *d = opendir(dir);

	if (!d) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				return -1;
		}
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp);
	for (i = 0; i < n; i++) {
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && run_file(path) == 0)
			count++;
		free(names[i]);
	}
	free(names);
	printf("replay %s: %d inputs\n", dir, count);
	return count;
}

int main(int argc, char **argv)
{
	const char *src = getenv("PGCKPT_SRC");
	char dir[4096];
	struct stat st;
	int i, n, total = 0, bad = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1) {
		for (i = 1; i < argc; i++) {
			if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
				n = run_dir(argv[i]);
			else
				n = run_file(argv[i]) == 0 ? 1 : -1;
			if (n < 0)
				bad++;
			else
				total += n;
		}
	} else {
		snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s", src && *src ? src : ".",
			 FUZZ_NAME);
		n = run_dir(dir);
		if (n < 0)
			bad++;
		else
			total = n;
	}
	printf("%d passed, %d failed\n", total, bad);
	return bad ? 1 : 0;
}
