/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3src.c - the pages source of an s3:// image (pgc_pages_source in
 * pgckpt.h): the loader's threads read the pages.img of the image and of
 * each ancestor in its chain (a layer each) by ranged GETs, each
 * thread through its own S3 client (one curl handle, its connection kept
 * alive), so as many requests are in flight as the load has workers.
 * Every GET carries If-Match with the ETag its pages.img had when the
 * image was opened, so bytes of a pages.img replaced meanwhile are refused by
 * the server (exit 2), never mixed in; the index's checksums check every
 * byte that arrives. The first failed request is kept, in words, for the
 * command's message. Retries and timeouts are src/s3's. With a cache
 * (s3cache.c), reads it holds whole are served from it, and blocks the
 * loader has verified are kept in it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3cache.h"
#include "s3src.h"

/* One image of the chain: its pages.img. */
struct layer {
	char key[1100], etag[S3_ETAG_MAX];
	uint64_t size;
	struct cli_s3cache *cache;       /* or NULL */
};

struct cli_s3src {
	struct pgc_pages_source ops;
	struct s3_config cfg;
	char bucket[64];
	struct layer layer[CLI_S3SRC_LAYERS];
	unsigned nlayers;
	pthread_key_t tls;               /* this thread's client */
	pthread_mutex_t mu;
	struct s3_client **clients;      /* every client made, under mu */
	size_t nclients;
	char err[600];                   /* the first failed request, under mu */
	_Atomic uint64_t bytes, requests;
};

/* This thread's client, made on its first read. NULL when out of memory. */
static struct s3_client *thread_client(struct cli_s3src *src)
{
	struct s3_client *s = pthread_getspecific(src->tls), **n;

	if (s)
		return s;
	if (s3_client_new(&src->cfg, &s))
		return NULL;
	pthread_mutex_lock(&src->mu);
	n = realloc(src->clients, (src->nclients + 1) * sizeof(*n));
	if (n) {
		src->clients = n;
		n[src->nclients++] = s;
	}
	pthread_mutex_unlock(&src->mu);
	if (!n || pthread_setspecific(src->tls, s)) {
		if (!n)
			s3_client_free(s);
		return NULL;
	}
	return s;
}

static void note_error(struct cli_s3src *src, const char *what)
{
	pthread_mutex_lock(&src->mu);
	if (!src->err[0])
		snprintf(src->err, sizeof(src->err), "%s", what);
	pthread_mutex_unlock(&src->mu);
}

static void s3src_verified(void *arg, uint32_t depth, const void *buf, size_t len, uint64_t off)
{
	struct cli_s3src *src = arg;

	if (depth < src->nlayers && src->layer[depth].cache)
		cli_s3cache_put(src->layer[depth].cache, buf, len, off);
}

static ssize_t s3src_read(void *arg, uint32_t depth, void *buf, size_t len, uint64_t off)
{
	struct cli_s3src *src = arg;
	struct s3_client *s = thread_client(src);
	struct layer *y;
	int ret;

	if (!s)
		return -ENOMEM;
	if (depth >= src->nlayers)
		return -EIO;   /* a chain longer than the one fetched: cannot happen */
	y = &src->layer[depth];
	if (off > y->size || len > y->size - off)
		return -EIO;   /* the index and the object disagree */
	if (y->cache && cli_s3cache_read(y->cache, buf, len, off) == (ssize_t)len)
		return (ssize_t)len;
	ret = s3_get_range_if(s, src->bucket, y->key, y->etag, off, buf, len);
	atomic_fetch_add_explicit(&src->requests, 1, memory_order_relaxed);
	if (ret == -ESTALE) {
		note_error(src, "pages.img was replaced while it was read; try again");
		return ret;
	}
	if (ret) {
		note_error(src, s3_last_error(s));
		return ret;
	}
	atomic_fetch_add_explicit(&src->bytes, len, memory_order_relaxed);
	return (ssize_t)len;
}

int cli_s3src_new(const struct s3_config *cfg, const char *bucket, struct cli_s3src **out)
{
	struct cli_s3src *src = calloc(1, sizeof(*src));

	if (!src)
		return -ENOMEM;
	if (pthread_key_create(&src->tls, NULL)) {
		free(src);
		return -ENOMEM;
	}
	pthread_mutex_init(&src->mu, NULL);
	src->cfg = *cfg;
	snprintf(src->bucket, sizeof(src->bucket), "%s", bucket);
	src->ops.read = s3src_read;
	src->ops.verified = s3src_verified;
	src->ops.arg = src;
	*out = src;
	return 0;
}

void cli_s3src_free(struct cli_s3src *src)
{
	size_t i;

	if (!src)
		return;
	for (i = 0; i < src->nlayers; i++)
		cli_s3cache_close(src->layer[i].cache);
	for (i = 0; i < src->nclients; i++)
		s3_client_free(src->clients[i]);
	free(src->clients);
	pthread_key_delete(src->tls);
	pthread_mutex_destroy(&src->mu);
	memset(&src->cfg, 0, sizeof(src->cfg));   /* the secrets */
	free(src);
}

int cli_s3src_add(struct cli_s3src *src, const char *key, const char *etag, uint64_t size)
{
	struct layer *y = &src->layer[src->nlayers];

	if (src->nlayers == CLI_S3SRC_LAYERS)
		return -E2BIG;
	snprintf(y->key, sizeof(y->key), "%s", key);
	snprintf(y->etag, sizeof(y->etag), "%s", etag);
	y->size = size;
	src->nlayers++;
	return 0;
}

int cli_s3src_cache(struct cli_s3src *src, const char *dir, const char *id)
{
	struct layer *y = &src->layer[src->nlayers - 1];

	return cli_s3cache_open(dir, id, y->size, &y->cache);
}

const struct pgc_pages_source *cli_s3src_ops(const struct cli_s3src *src)
{
	return &src->ops;
}

const char *cli_s3src_error(struct cli_s3src *src)
{
	return src->err;
}

void cli_s3src_counts(const struct cli_s3src *src, uint64_t *bytes, uint64_t *requests)
{
	*bytes = atomic_load(&src->bytes);
	*requests = atomic_load(&src->requests);
}
