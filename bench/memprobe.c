/* SPDX-License-Identifier: Apache-2.0 */
/*
 * memprobe.c - the machine's own limit for filling fresh memory: the
 * baseline an eager restore is compared with.
 *
 *   memprobe SOURCE [--json] [--runs N] [--dir DIR]
 *
 * It reads SOURCE into memory once (not timed), then, best of N runs,
 * creates a fresh memfd of the same size and times three ways of filling
 * it with SOURCE's bytes: plain memcpy into a fresh mapping (page faults
 * on first touch), fallocate + MADV_POPULATE_WRITE of the whole range
 * followed by memcpy, and the same split over two threads. The best of
 * these is the limit a restore cannot beat without reusing memory.
 *
 * It also times the fastest way one fresh file in DIR (default /dev/shm)
 * takes SOURCE's data: pwrite(2) of as many bytes as SOURCE has non-zero
 * pages, 1 MiB at a time from one cache-hot buffer. The host serialises
 * writes to one file (tmpfs: the inode lock; two threads, or faults
 * through a mapping, measured no faster), so this is a floor for any
 * tool that writes those pages into a new file: cp pays it once, a raw
 * save followed by a restore pays it twice (pages.img, then the target).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct part {
	unsigned char *dst;
	const unsigned char *src;
	size_t len;
	bool populate;
};

static void *fill(void *arg)
{
	struct part *p = arg;

	if (p->populate)
		madvise(p->dst, p->len, MADV_POPULATE_WRITE);
	memcpy(p->dst, p->src, p->len);
	return NULL;
}

/* One run of the file floor: @bytes pwritten into a fresh file in @dir. */
static double run_file(const char *dir, size_t bytes)
{
	static unsigned char buf[1 << 20];
	char path[4096];
	size_t off, n;
	double t0, t;
	int fd;

	memset(buf, 0x5a, sizeof(buf));
	snprintf(path, sizeof(path), "%s/memprobe.XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0) {
		perror(path);
		exit(2);
	}
	t0 = now_s();
	for (off = 0; off < bytes; off += n) {
		n = bytes - off < sizeof(buf) ? bytes - off : sizeof(buf);
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
			perror("pwrite");
			exit(2);
		}
	}
	t = now_s() - t0;
	close(fd);
	unlink(path);
	return t;
}

/* Bytes in the non-zero pages of @src. */
static size_t data_bytes(const unsigned char *src, size_t len)
{
	static const unsigned char zero[4096];
	size_t off, n = 0;

	for (off = 0; off < len; off += 4096)
		if (memcmp(src + off, zero, len - off < 4096 ? len - off : 4096))
			n += 4096;
	return n;
}

/* One run: a fresh memfd of @len filled from @src by @threads threads. */
static double run(const unsigned char *src, size_t len, bool populate, bool falloc, int threads)
{
	struct part parts[2];
	pthread_t tid[2];
	unsigned char *dst;
	double t0, t;
	int fd, i;

	fd = memfd_create("memprobe", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)len) != 0) {
		perror("memfd");
		exit(2);
	}
	t0 = now_s();
	if (falloc && fallocate(fd, 0, 0, (off_t)len) != 0) {
		perror("fallocate");
		exit(2);
	}
	dst = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (dst == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	for (i = 0; i < threads; i++) {
		size_t chunk = (len / (size_t)threads) & ~(size_t)4095;
		size_t off = chunk * (size_t)i;

		parts[i] = (struct part){ dst + off, src + off, i == threads - 1 ? len - off : chunk, populate };
		pthread_create(&tid[i], NULL, fill, &parts[i]);
	}
	for (i = 0; i < threads; i++)
		pthread_join(tid[i], NULL);
	t = now_s() - t0;
	munmap(dst, len);
	close(fd);
	return t;
}

int main(int argc, char **argv)
{
	static const char *names[] = { "memcpy", "populate+memcpy", "fallocate+populate+memcpy",
				       "populate+memcpy x2", "fallocate+populate+memcpy x2" };
	double best[5] = { 1e9, 1e9, 1e9, 1e9, 1e9 }, fill = 1e9;
	const char *dir = "/dev/shm";
	bool json = false;
	int runs = 3, i, k, fd, bi = 0;
	unsigned char *src;
	struct stat st;
	size_t len, data;

	if (argc < 2) {
		fprintf(stderr, "usage: memprobe SOURCE [--json] [--runs N] [--dir DIR]\n");
		return 1;
	}
	for (i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir = argv[++i];
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) != 0) {
		perror(argv[1]);
		return 2;
	}
	len = ((size_t)st.st_size + 4095) & ~(size_t)4095;
	src = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	if (src == MAP_FAILED) {
		perror("mmap source");
		return 2;
	}
	data = data_bytes(src, len);
	for (k = 0; k < runs; k++) {
		double f = run_file(dir, data);
		double t[5] = {
			run(src, len, false, false, 1),
			run(src, len, true, false, 1),
			run(src, len, true, true, 1),
			run(src, len, true, false, 2),
			run(src, len, true, true, 2),
		};
		for (i = 0; i < 5; i++)
			if (t[i] < best[i])
				best[i] = t[i];
		if (f < fill)
			fill = f;
	}
	for (i = 1; i < 5; i++)
		if (best[i] < best[bi])
			bi = i;
	if (json) {
		printf("{\"bytes\":%zu", len);
		for (i = 0; i < 5; i++)
			printf(",\"%s_s\":%.4f", i == 0 ? "memcpy" : i == 1 ? "populate" : i == 2 ? "fallocate"
						 : i == 3 ? "populate_x2" : "fallocate_x2", best[i]);
		printf(",\"limit_s\":%.4f,\"limit_gbps\":%.3f,\"limit_method\":\"%s\"", best[bi],
		       (double)len / best[bi] / 1e9, names[bi]);
		printf(",\"data_bytes\":%zu,\"file_fill_s\":%.4f,\"file_fill_gbps\":%.3f}\n", data, fill,
		       data ? (double)data / fill / 1e9 : 0.0);
	} else {
		for (i = 0; i < 5; i++)
			printf("%-32s %8.3f s  %6.2f GB/s\n", names[i], best[i], (double)len / best[i] / 1e9);
		printf("limit: %s\n", names[bi]);
		printf("%-32s %8.3f s  %6.2f GB/s  (%zu bytes of data, into %s)\n", "one file, pwrite",
		       fill, data ? (double)data / fill / 1e9 : 0.0, data, dir);
	}
	return 0;
}
