/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kvstore.c - a small in-memory key-value store whose whole heap lives in
 * a memfd, the kind of memory pgckpt is for (`make demo` uses it):
 *
 *   kvstore serve [-n RECORDS]   build the table, print "PID FD BYTES
 *                                RECORDS" on stdout, then wait for
 *                                SIGTERM or SIGINT
 *   kvstore check [-n RECORDS] FILE
 *                                look every key up in a saved or restored
 *                                copy of that memory and compare its value
 *
 * The heap: a header, an open-addressing hash table (linear probing) of
 * record offsets, then the records (key and value lengths, the key
 * "user:NNNNNNNN", a JSON-like value), packed in an arena as a malloc
 * would. The memfd is sized to a whole number of MiB; the tail that the
 * arena never reached stays a hole. The same RECORDS always give the same
 * bytes. Exit status: 0 ok, 1 usage or a lookup that fails, 2 system error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC    0x6b7673746f726531ULL   /* "kvstore1" */
#define KEY_MAX  16
#define VAL_MAX  160

struct header {
	uint64_t magic;
	uint64_t records;
	uint64_t buckets;      /* a power of two; the table follows the header */
	uint64_t arena_off;    /* first record */
	uint64_t arena_end;    /* end of the last record */
};

struct record {
	uint32_t klen, vlen;   /* key, then value, then padding to 8 bytes */
};

static uint64_t hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;   /* FNV-1a */

	while (n--)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static size_t make_key(uint64_t i, char *key)
{
	return (size_t)snprintf(key, KEY_MAX + 1, "user:%08" PRIu64, i);
}

/* The value of record @i: a JSON-like record with a few varying fields. */
static size_t make_value(uint64_t i, char *val)
{
	uint64_t r = (i + 1) * 0x9e3779b97f4a7c15ULL;

	return (size_t)snprintf(val, VAL_MAX, "{\"id\":%" PRIu64 ",\"name\":\"n%06u\",\"score\":%u,"
				"\"tags\":[%u,%u,%u],\"active\":%s}", i, (unsigned)(r >> 40) % 1000000,
				(unsigned)(r >> 20) % 10000, (unsigned)(r >> 8) % 100,
				(unsigned)(r >> 16) % 100, (unsigned)(r >> 24) % 100,
				(r >> 63) ? "true" : "false");
}

static uint64_t align8(uint64_t x)
{
	return (x + 7) & ~7ULL;
}

/* Bytes of heap for @n records, whole MiB; sets *@buckets. */
static uint64_t heap_size(uint64_t n, uint64_t *buckets)
{
	uint64_t b = 1;

	while (b < n * 2)
		b <<= 1;
	*buckets = b;
	return (sizeof(struct header) + b * 8 + n * align8(sizeof(struct record) + KEY_MAX + VAL_MAX) +
		(1 << 20) - 1) & ~((1ULL << 20) - 1);
}

static void build(unsigned char *heap, uint64_t n, uint64_t buckets)
{
	struct header *h = (struct header *)heap;
	uint64_t *table = (uint64_t *)(heap + sizeof(*h)), off, i;

	h->magic = MAGIC;
	h->records = n;
	h->buckets = buckets;
	h->arena_off = off = sizeof(*h) + buckets * 8;
	for (i = 0; i < n; i++) {
		struct record *r = (struct record *)(heap + off);
		char *k = (char *)(r + 1);
		uint64_t b;

		r->klen = (uint32_t)make_key(i, k);
		r->vlen = (uint32_t)make_value(i, k + r->klen);
		for (b = hash(k, r->klen) & (buckets - 1); table[b]; b = (b + 1) & (buckets - 1))
			;
		table[b] = off;
		off += align8(sizeof(*r) + r->klen + r->vlen);
	}
	h->arena_end = off;
}

/* Look up every key of @n records in @heap (@size bytes). Returns the failures. */
static uint64_t check(const unsigned char *heap, uint64_t size, uint64_t n)
{
	const struct header *h = (const struct header *)heap;
	const uint64_t *table = (const uint64_t *)(heap + sizeof(*h));
	char key[KEY_MAX + 1], val[VAL_MAX];
	uint64_t i, bad = 0;

	if (size < sizeof(*h) || h->magic != MAGIC || h->records != n || !h->buckets ||
	    (h->buckets & (h->buckets - 1)) || h->buckets > (size - sizeof(*h)) / 8)
		return n ? n : 1;
	for (i = 0; i < n; i++) {
		size_t kl = make_key(i, key), vl = make_value(i, val);
		uint64_t b = hash(key, kl) & (h->buckets - 1), probes;
		bool found = false;

		for (probes = 0; probes < h->buckets && table[b]; probes++, b = (b + 1) & (h->buckets - 1)) {
			const struct record *r;

			if (table[b] > size - sizeof(*r))
				break;
			r = (const struct record *)(heap + table[b]);
			if ((uint64_t)r->klen + r->vlen > size - table[b] - sizeof(*r))
				break;
			if (r->klen == kl && !memcmp(r + 1, key, kl)) {
				found = r->vlen == vl && !memcmp((const char *)(r + 1) + kl, val, vl);
				break;
			}
		}
		bad += !found;
	}
	return bad;
}

static int serve(uint64_t n)
{
	uint64_t buckets, size = heap_size(n, &buckets);
	unsigned char *heap;
	sigset_t set;
	char line[128];
	int fd, len, sig;

	fd = memfd_create("kvstore", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		perror("kvstore: memfd");
		return 2;
	}
	heap = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (heap == MAP_FAILED) {
		perror("kvstore: mmap");
		return 2;
	}
	build(heap, n, buckets);
	/* Wait in sigwait, so that SIGTERM ends the process without a handler. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	len = snprintf(line, sizeof(line), "%d %d %" PRIu64 " %" PRIu64 "\n", (int)getpid(), fd,
		       size, n);
	if (write(STDOUT_FILENO, line, (size_t)len) != len) {
		perror("kvstore: stdout");
		return 2;
	}
	sigwait(&set, &sig);
	return 0;
}

static int check_file(const char *path, uint64_t n)
{
	unsigned char *heap;
	struct stat st;
	uint64_t bad;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0) {
		fprintf(stderr, "kvstore: %s: %s\n", path, fd < 0 ? strerror(errno) : "empty");
		return 2;
	}
	heap = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (heap == MAP_FAILED) {
		perror("kvstore: mmap");
		return 2;
	}
	bad = check(heap, (uint64_t)st.st_size, n);
	munmap(heap, (size_t)st.st_size);
	if (bad) {
		fprintf(stderr, "kvstore: %s: %" PRIu64 " of %" PRIu64 " lookups failed\n", path, bad, n);
		return 1;
	}
	printf("%" PRIu64 " lookups ok\n", n);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t n = 400000;
	int i = 2;

	if (argc < 2)
		goto usage;
	if (argc > 3 && !strcmp(argv[2], "-n")) {
		char *end;

		errno = 0;
		n = strtoull(argv[3], &end, 10);
		if (errno || *end || !n || n > (1ULL << 26))
			goto usage;
		i = 4;
	}
	if (!strcmp(argv[1], "serve") && argc == i)
		return serve(n);
	if (!strcmp(argv[1], "check") && argc == i + 1)
		return check_file(argv[i], n);
usage:
	fputs("Usage: kvstore serve [-n RECORDS] | kvstore check [-n RECORDS] FILE\n", stderr);
	return 1;
}
