/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3.h - a small client of S3-compatible object storage (AWS, GCS, R2,
 * MinIO, Ceph radosgw) over libcurl, for images kept as plain objects
 * (docs/s3.md): HEAD, ranged GET, PUT, DELETE, bucket creation and
 * multipart upload. Requests are signed with AWS Signature V4 (libcurl's
 * CURLOPT_AWS_SIGV4, payload UNSIGNED-PAYLOAD); every request has a
 * timeout, and network errors and 5xx answers are retried a bounded number
 * of times with backoff. Secrets never appear in an error message.
 *
 * The module reads no environment itself: s3_config_load() takes a lookup
 * function (the command passes getenv). It depends on nothing else of
 * src/ and is linked into the command, not into libpgckpt; src/statefile
 * stays free of network code. A client keeps one curl handle (keep-alive)
 * and is used by one thread at a time.
 */
#ifndef PGC_S3_H
#define PGC_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define S3_ETAG_MAX 128

struct s3_config {
	char endpoint[512];      /* "http://host:port", or "" for AWS */
	char region[64];
	char access_key[256];
	char secret_key[256];
	char session_token[4096];
	long timeout_ms;         /* per request, + 1 s per 64 KiB of body */
	long connect_timeout_ms;
	int retries;             /* after the first attempt */
	long backoff_ms;         /* first retry's wait, doubled each time */
};

/*
 * s3_config_load - fill @c the way AWS tools do: AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, else the profile AWS_PROFILE
 * (default "default") of the shared credentials file
 * (AWS_SHARED_CREDENTIALS_FILE, default $HOME/.aws/credentials);
 * AWS_REGION or AWS_DEFAULT_REGION (default us-east-1); AWS_ENDPOINT_URL_S3
 * or AWS_ENDPOINT_URL; PGCKPT_S3_TIMEOUT_MS and PGCKPT_S3_RETRIES.
 * @lookup returns a variable's value or NULL (getenv).
 * Returns 0, -EACCES when no credentials are found, -EINVAL for a value
 * too long or malformed; @err (if not NULL) then says which, without
 * any secret.
 */
int s3_config_load(struct s3_config *c, const char *(*lookup)(const char *name),
		   char *err, size_t errlen);

/*
 * s3_parse_url - split "s3://BUCKET/PREFIX" into @bucket and @prefix (no
 * leading or trailing '/'; may be empty).
 * Returns 1 when @url is an s3:// URL and fits, 0 when it is not an s3://
 * URL, -EINVAL when it is one but malformed or too long.
 */
int s3_parse_url(const char *url, char *bucket, size_t blen, char *prefix, size_t plen);

struct s3_client;

/* s3_client_new - a client for @c (copied). Returns 0 or -ENOMEM. */
int s3_client_new(const struct s3_config *c, struct s3_client **out);
void s3_client_free(struct s3_client *s);

/*
 * s3_last_error - one line on the last failed request of @s: method,
 * bucket/key, HTTP status and S3 error code or the network error. Never a
 * secret. "" when none failed.
 */
const char *s3_last_error(const struct s3_client *s);

/*
 * Each request below returns 0 or -errno: -EACCES (403, or 401),
 * -ENOENT (404: no such bucket or key), -EINVAL (other 4xx), -ERANGE
 * (416), -ESTALE (412, s3_get_range_if), -ETIMEDOUT (no answer within the timeout after the retries),
 * -ECONNREFUSED (nothing listening), -EIO (5xx after the retries, a
 * malformed answer, any other network error), -ENOMEM.
 */

/* s3_head - the size and ETag (quotes kept; may be NULL) of an object. */
int s3_head(struct s3_client *s, const char *bucket, const char *key,
	    uint64_t *size, char etag[S3_ETAG_MAX]);

/* s3_get_range - exactly @len bytes of the object from @off into @buf. */
int s3_get_range(struct s3_client *s, const char *bucket, const char *key,
		 uint64_t off, void *buf, size_t len);

/*
 * s3_get_range_if - s3_get_range of the object only while its ETag is
 * @etag (If-Match; NULL or "": any): -ESTALE (412) once it was replaced.
 */
int s3_get_range_if(struct s3_client *s, const char *bucket, const char *key,
		    const char *etag, uint64_t off, void *buf, size_t len);

/*
 * s3_get_first - the start of an object in one GET, with what a HEAD
 * would say, so that no HEAD is needed: up to @cap bytes from byte 0 into
 * @buf (*@got of them: all of it when it is at most @cap), its whole size
 * (*@size, from Content-Range) and its ETag (quotes kept; may be NULL).
 * Read the rest with s3_get_range_if and that ETag, so that a replaced
 * object is never mixed in. @cap > 0. Returns 0 or -errno as below.
 */
int s3_get_first(struct s3_client *s, const char *bucket, const char *key, void *buf,
		 size_t cap, size_t *got, uint64_t *size, char etag[S3_ETAG_MAX]);

/* s3_put - store @len bytes as the object (replacing it); @etag may be NULL. */
int s3_put(struct s3_client *s, const char *bucket, const char *key,
	   const void *buf, size_t len, char etag[S3_ETAG_MAX]);

/* s3_delete - remove the object (0 also when it did not exist). */
int s3_delete(struct s3_client *s, const char *bucket, const char *key);

/* s3_create_bucket - create @bucket (0 also when the caller owns it). */
int s3_create_bucket(struct s3_client *s, const char *bucket);

/*
 * Multipart upload: s3_upload_begin, then s3_upload_part for parts 1, 2,
 * ... in order (each but the last at least 5 MiB), then either
 * s3_upload_complete (the object appears whole) or s3_upload_abort (the
 * parts are dropped; nothing appears). Both end the upload and free @u.
 */
struct s3_upload;
int s3_upload_begin(struct s3_client *s, const char *bucket, const char *key,
		    struct s3_upload **out);
int s3_upload_part(struct s3_upload *u, const void *buf, size_t len);
int s3_upload_complete(struct s3_upload *u, char etag[S3_ETAG_MAX]);
/* s3_upload_abort - returns 0 or -errno of the abort request; @u is freed either way. */
int s3_upload_abort(struct s3_upload *u);

/*
 * s3_count_uploads - the multipart uploads in progress on keys starting
 * with @prefix (ListMultipartUploads; at most the first 1000 counted).
 */
int s3_count_uploads(struct s3_client *s, const char *bucket, const char *prefix, int *count);

/* s3_upload_id - the UploadId of @u (valid until @u ends). */
const char *s3_upload_id(const struct s3_upload *u);

/*
 * s3_abort_upload - abort the multipart upload @upload_id of @key from
 * another client than the one uploading (a signal's cleanup): its parts
 * are dropped, and parts still arriving are refused. Returns 0 or -errno.
 */
int s3_abort_upload(struct s3_client *s, const char *bucket, const char *key,
		    const char *upload_id);

#endif /* PGC_S3_H */
