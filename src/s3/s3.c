/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3.c - the S3 requests of s3.h over one libcurl easy handle per client
 * (connections kept alive between requests): URL building with path-style
 * addressing when an endpoint is given, SigV4 signing by libcurl, the
 * retry loop with its backoff, and the mapping of answers to -errno.
 * Configuration loading and URL parsing are in s3_config.c.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "s3.h"

struct s3_client {
	struct s3_config cfg;
	CURL *curl;
	curl_socket_t fd;            /* the connection's socket (ack_headers) */
	char sigv4[96];
	char err[512];
};

/* One request: what to send, where the answer goes. */
struct req {
	struct s3_client *s;
	CURL *curl;
	const char *method;          /* GET HEAD PUT POST DELETE */
	const char *bucket, *key;    /* key may be NULL (bucket request) */
	const char *query;           /* canonical (sorted, encoded) or NULL */
	const char *range;           /* "a-b" or NULL */
	const char *if_match;        /* an ETag the object must have, or NULL */
	const unsigned char *body;   /* request body */
	size_t body_len;
	size_t body_pos;
	unsigned char *out;          /* answer body of a 2xx, up to out_cap */
	size_t out_cap, out_len;
	bool out_grow;               /* out is malloc'ed and grows (XML answers) */
	bool announced_timeout;      /* time allowed by the length announced (on_progress) */
	char errbody[512];           /* start of a non-2xx answer body */
	size_t errlen;
	char etag[S3_ETAG_MAX];
	uint64_t total;              /* object size from Content-Range, or UINT64_MAX */
	long status;
	bool overflow;
	bool acked;                  /* ack_headers done for this attempt */
	bool timed_out;              /* on_progress ended the attempt */
	struct timespec t0;          /* when the attempt started */
	long timeout_ms;             /* before the answer's length is known */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int s3_client_new(const struct s3_config *c, struct s3_client **out)
{
	struct s3_client *s;

	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK)
		return -ENOMEM;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *c;
	s->fd = CURL_SOCKET_BAD;
	s->curl = curl_easy_init();
	if (!s->curl) {
		free(s);
		return -ENOMEM;
	}
	snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%s:s3", c->region);
	*out = s;
	return 0;
}

void s3_client_free(struct s3_client *s)
{
	if (!s)
		return;
	curl_easy_cleanup(s->curl);
	/* The copy of the secrets goes with the client. */
	memset(&s->cfg, 0, sizeof(s->cfg));
	free(s);
}

const char *s3_last_error(const struct s3_client *s)
{
	return s->err;
}

/* Append @src to @dst (at *@pos, capacity @cap) percent-encoded as S3's
 * canonical URI wants: all but unreserved characters, and '/' kept when
 * @keep_slash. Returns -EINVAL when it does not fit. */
static int url_encode(char *dst, size_t cap, size_t *pos, const char *src, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t p = *pos;

	for (; *src; src++) {
		unsigned char ch = (unsigned char)*src;
		bool plain = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			     (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
			     ch == '.' || ch == '~' || (keep_slash && ch == '/');
		if (p + 4 > cap)
			return -EINVAL;
		if (plain) {
			dst[p++] = (char)ch;
		} else {
			dst[p++] = '%';
			dst[p++] = hex[ch >> 4];
			dst[p++] = hex[ch & 15];
		}
	}
	dst[p] = '\0';
	*pos = p;
	return 0;
}

static int build_url(const struct s3_client *s, const struct req *r, char *url, size_t cap)
{
	size_t pos;
	int n;

	if (s->cfg.endpoint[0]) /* path-style */
		n = snprintf(url, cap, "%s/%s", s->cfg.endpoint, r->bucket);
	else
		n = snprintf(url, cap, "https://%s.s3.%s.amazonaws.com", r->bucket,
			     s->cfg.region);
	if (n < 0 || (size_t)n >= cap)
		return -EINVAL;
	pos = (size_t)n;
	if (r->key) {
		if (pos + 2 > cap)
			return -EINVAL;
		url[pos++] = '/';
		if (url_encode(url, cap, &pos, r->key, true))
			return -EINVAL;
	} else if (!s->cfg.endpoint[0]) {
		if (pos + 2 > cap)
			return -EINVAL;
		url[pos++] = '/';
		url[pos] = '\0';
	}
	if (r->query) {
		n = snprintf(url + pos, cap - pos, "?%s", r->query);
		if (n < 0 || (size_t)n >= cap - pos)
			return -EINVAL;
	}
	return 0;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
	struct req *r = arg;
	size_t n = sz * nm;

	if (r->status == 0)
		curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->status < 200 || r->status >= 300) {
		size_t room = sizeof(r->errbody) - 1 - r->errlen;
		size_t k = n < room ? n : room;

		memcpy(r->errbody + r->errlen, p, k);
		r->errlen += k;
		r->errbody[r->errlen] = '\0';
		return n;
	}
	if (!r->out && !r->out_grow)
		return n; /* an answer nobody asked for */
	if (r->out_len + n > r->out_cap) {
		if (!r->out_grow || r->out_len + n > (1u << 20)) {
			r->overflow = true;
			return 0; /* aborts the transfer */
		}
		size_t cap = (r->out_len + n) * 2;
		unsigned char *nb = realloc(r->out, cap + 1);

		if (!nb) {
			r->overflow = true;
			return 0;
		}
		r->out = nb;
		r->out_cap = cap;
	}
	memcpy(r->out + r->out_len, p, n);
	r->out_len += n;
	if (r->out_grow)
		r->out[r->out_len] = '\0';
	return n;
}

/*
 * The first header line of an answer has arrived: ACK it now. A server
 * that writes its headers and a small body separately (radosgw does)
 * holds the body back (Nagle) until the headers are ACKed, and on a
 * connection kept alive the kernel delays that ACK (40 ms): every GET of
 * a small object took 40 ms longer. TCP_QUICKACK sends the pending ACK.
 */
static void ack_headers(struct req *r)
{
#ifdef TCP_QUICKACK
	int one = 1;

	if (r->s->fd != CURL_SOCKET_BAD)
		(void)setsockopt(r->s->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
#endif
	r->acked = true;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *arg)
{
	struct req *r = arg;
	size_t n = sz * nm, k;

	if (!r->acked)
		ack_headers(r);

	if (n > 5 && strncasecmp(p, "ETag:", 5) == 0) {
		const char *v = p + 5;

		while (v < p + n && (*v == ' ' || *v == '\t'))
			v++;
		k = (size_t)(p + n - v);
		while (k && (v[k - 1] == '\r' || v[k - 1] == '\n' || v[k - 1] == ' '))
			k--;
		if (k < sizeof(r->etag)) {
			memcpy(r->etag, v, k);
			r->etag[k] = '\0';
		}
	} else if (n > 14 && strncasecmp(p, "Content-Range:", 14) == 0) {
		/* "bytes FIRST-LAST/TOTAL" */
		const char *slash = memchr(p, '/', n);
		char *end;
		unsigned long long t;

		if (slash && slash[1] >= '0' && slash[1] <= '9') {
			errno = 0;
			t = strtoull(slash + 1, &end, 10);
			if (!errno && end <= p + n)
				r->total = t;
		}
	}
	return n;
}

static size_t on_read(char *p, size_t sz, size_t nm, void *arg)
{
	struct req *r = arg;
	size_t n = sz * nm, left = r->body_len - r->body_pos;

	if (n > left)
		n = left;
	memcpy(p, r->body + r->body_pos, n);
	r->body_pos += n;
	return n;
}

/* The <Code> of an S3 error answer, or "". */
static void xml_code(const char *body, char *code, size_t cap)
{
	const char *a = strstr(body, "<Code>"), *b;

	code[0] = '\0';
	if (!a)
		return;
	a += 6;
	b = strstr(a, "</Code>");
	if (b && (size_t)(b - a) < cap) {
		memcpy(code, a, (size_t)(b - a));
		code[b - a] = '\0';
	}
}

static int status_errno(long st)
{
	if (st == 401 || st == 403)
		return -EACCES;
	if (st == 404)
		return -ENOENT;
	if (st == 416)
		return -ERANGE;
	if (st == 412)
		return -ESTALE;
	if (st >= 400 && st < 500)
		return -EINVAL;
	return -EIO;
}

static int curl_errno(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/* Whether an attempt that ended so is worth another try. */
static bool retryable(CURLcode rc, long st)
{
	if (rc == CURLE_OK)
		return st >= 500 || st == 429 || st == 408;
	return rc != CURLE_OUT_OF_MEMORY && rc != CURLE_WRITE_ERROR &&
	       rc != CURLE_URL_MALFORMAT && rc != CURLE_UNSUPPORTED_PROTOCOL;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/*
 * A GET asked for more than it may get (s3_get_first): its timeout grows
 * with the length the answer announces, not with what was asked for, so
 * a silent server times out as soon as for a HEAD.
 */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct req *r = arg;
	struct timespec now;
	long ms;

	(void)dlnow, (void)ultotal, (void)ulnow;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (now.tv_sec - r->t0.tv_sec) * 1000L + (now.tv_nsec - r->t0.tv_nsec) / 1000000L;
	if (ms <= r->timeout_ms + (long)((uint64_t)(dltotal > 0 ? dltotal : 0) >> 16) * 1000L)
		return 0;
	r->timed_out = true;
	return 1;
}

/* The client's connection: its socket kept for ack_headers. */
static curl_socket_t on_open(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct s3_client *s = arg;
	curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);

	if (purpose == CURLSOCKTYPE_IPCXN && fd != CURL_SOCKET_BAD)
		s->fd = fd;
	return fd;
}

static int on_close(void *arg, curl_socket_t fd)
{
	struct s3_client *s = arg;

	if (s->fd == fd)
		s->fd = CURL_SOCKET_BAD;
	return close(fd);
}

/* Set up the handle for one attempt of @r. Returns 0 or -errno. */
static int prepare(struct s3_client *s, struct req *r, const char *url, struct curl_slist **hdrs)
{
	CURL *c = s->curl;
	struct curl_slist *h = NULL, *t;
	char tok[4200];

	curl_easy_reset(c);
	r->curl = c;
	r->s = s;
	/* No "Expect:" removal header here: libcurl 7.88 would sign it. */
	h = curl_slist_append(h, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	if (h && s->cfg.session_token[0]) {
		snprintf(tok, sizeof(tok), "x-amz-security-token: %s", s->cfg.session_token);
		t = curl_slist_append(h, tok);
		memset(tok, 0, sizeof(tok));
		if (!t) {
			curl_slist_free_all(h);
			return -ENOMEM;
		}
		h = t;
	}
	if (h && r->if_match) {
		snprintf(tok, sizeof(tok), "If-Match: %s", r->if_match);
		t = curl_slist_append(h, tok);
		if (!t) {
			curl_slist_free_all(h);
			return -ENOMEM;
		}
		h = t;
	}
	if (!h)
		return -ENOMEM;
	*hdrs = h;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s->sigv4);
	curl_easy_setopt(c, CURLOPT_USERNAME, s->cfg.access_key);
	curl_easy_setopt(c, CURLOPT_PASSWORD, s->cfg.secret_key);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	/* The timeout, plus a second per 64 KiB of body either way: a 16 MiB
	 * part over a slow link is not cut short, a silent server still is. */
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
			 s->cfg.timeout_ms + (long)((r->body_len + r->out_cap) >> 16) * 1000L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, s->cfg.connect_timeout_ms);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	if (r->announced_timeout) {
		r->timeout_ms = s->cfg.timeout_ms;
		clock_gettime(CLOCK_MONOTONIC, &r->t0);
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(c, CURLOPT_XFERINFODATA, r);
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	}
	curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open);
	curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, s);
	curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, on_close);
	curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, s);
	if (r->range)
		curl_easy_setopt(c, CURLOPT_RANGE, r->range);
	if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "PUT") == 0) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, r);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
		curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 200L);
	} else if (strcmp(r->method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)r->body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
	}
	return 0;
}

static void set_error(struct s3_client *s, const struct req *r, CURLcode rc, int attempts)
{
	const char *words;
	char code[64];

	if (rc != CURLE_OK) {
		snprintf(s->err, sizeof(s->err), "%s s3://%s/%s: %s (%d attempt%s)", r->method,
			 r->bucket, r->key ? r->key : "", curl_easy_strerror(rc), attempts,
			 attempts == 1 ? "" : "s");
		return;
	}
	xml_code(r->errbody, code, sizeof(code));
	/* In words too (a HEAD's answer has no body, so no code). */
	words = r->status == 403 ? "access denied" : r->status == 404 ? "no such bucket or key" : "";
	snprintf(s->err, sizeof(s->err), "%s s3://%s/%s: HTTP %ld%s%s%s%s%s (%d attempt%s)",
		 r->method, r->bucket, r->key ? r->key : "", r->status, code[0] ? " " : "", code,
		 words[0] ? (code[0] ? ", " : " (") : "", words, words[0] && !code[0] ? ")" : "",
		 attempts, attempts == 1 ? "" : "s");
}

/* Run @r with retries. Returns 0 for a 2xx answer, else -errno. */
static int perform(struct s3_client *s, struct req *r)
{
	char url[2048];
	long wait = s->cfg.backoff_ms;
	CURLcode rc = CURLE_OK;
	int attempt, ret;

	ret = build_url(s, r, url, sizeof(url));
	if (ret) {
		snprintf(s->err, sizeof(s->err), "s3://%s/%s: name too long", r->bucket,
			 r->key ? r->key : "");
		return ret;
	}
	for (attempt = 0;; attempt++) {
		struct curl_slist *h = NULL;

		r->status = 0;
		r->out_len = 0;
		r->body_pos = 0;
		r->errlen = 0;
		r->errbody[0] = '\0';
		r->etag[0] = '\0';
		r->total = UINT64_MAX;
		r->overflow = false;
		r->acked = false;
		r->timed_out = false;
		ret = prepare(s, r, url, &h);
		if (ret)
			return ret;
		rc = curl_easy_perform(s->curl);
		curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &r->status);
		curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, NULL);
		curl_slist_free_all(h);
		if (r->timed_out)
			rc = CURLE_OPERATION_TIMEDOUT;
		if (rc == CURLE_OK && r->status >= 200 && r->status < 300) {
			s->err[0] = '\0';
			return 0;
		}
		if (r->overflow) {
			snprintf(s->err, sizeof(s->err), "%s s3://%s/%s: answer longer than expected",
				 r->method, r->bucket, r->key ? r->key : "");
			return -EIO;
		}
		if (attempt >= s->cfg.retries || !retryable(rc, r->status))
			break;
		sleep_ms(wait);
		wait = wait * 2 > 5000 ? 5000 : wait * 2;
	}
	set_error(s, r, rc, attempt + 1);
	return rc != CURLE_OK ? curl_errno(rc) : status_errno(r->status);
}

int s3_head(struct s3_client *s, const char *bucket, const char *key, uint64_t *size,
	    char etag[S3_ETAG_MAX])
{
	struct req r = { .method = "HEAD", .bucket = bucket, .key = key };
	curl_off_t len = -1;
	int ret = perform(s, &r);

	if (ret)
		return ret;
	curl_easy_getinfo(s->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
	if (len < 0) {
		snprintf(s->err, sizeof(s->err), "HEAD s3://%s/%s: no Content-Length", bucket, key);
		return -EIO;
	}
	if (size)
		*size = (uint64_t)len;
	if (etag)
		memcpy(etag, r.etag, S3_ETAG_MAX);
	return 0;
}

int s3_get_range(struct s3_client *s, const char *bucket, const char *key, uint64_t off,
		 void *buf, size_t len)
{
	return s3_get_range_if(s, bucket, key, NULL, off, buf, len);
}

int s3_get_range_if(struct s3_client *s, const char *bucket, const char *key, const char *etag,
		    uint64_t off, void *buf, size_t len)
{
	char range[64];
	struct req r = { .method = "GET", .bucket = bucket, .key = key, .range = range,
			 .if_match = etag && etag[0] ? etag : NULL, .out = buf, .out_cap = len };
	int ret;

	if (len == 0)
		return 0;
	snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, off, off + len - 1);
	ret = perform(s, &r);
	if (ret)
		return ret;
	if (r.out_len != len || (r.status != 206 && !(r.status == 200 && off == 0))) {
		snprintf(s->err, sizeof(s->err),
			 "GET s3://%s/%s: asked %zu bytes at %" PRIu64 ", got %zu (HTTP %ld)", bucket,
			 key, len, off, r.out_len, r.status);
		return -EIO;
	}
	return 0;
}

int s3_get_first(struct s3_client *s, const char *bucket, const char *key, void *buf,
		 size_t cap, size_t *got, uint64_t *size, char etag[S3_ETAG_MAX])
{
	char range[64];
	struct req r = { .method = "GET", .bucket = bucket, .key = key, .range = range,
			 .out = buf, .out_cap = cap, .announced_timeout = true };
	int ret;

	if (cap == 0)
		return -EINVAL;
	snprintf(range, sizeof(range), "0-%zu", cap - 1);
	ret = perform(s, &r);
	if (ret == -ERANGE) {            /* an empty object has no byte 0 */
		ret = s3_head(s, bucket, key, size, etag);
		if (!ret && *size) {
			snprintf(s->err, sizeof(s->err), "GET s3://%s/%s: refused byte 0 of "
				 "%" PRIu64, bucket, key, *size);
			return -EIO;
		}
		*got = 0;
		return ret;
	}
	if (ret)
		return ret;
	if (r.status == 200)             /* the whole object, the range ignored */
		r.total = r.out_len;
	if (r.status != 206 && r.status != 200)
		r.total = UINT64_MAX;
	if (r.total == UINT64_MAX || r.out_len != (r.total < cap ? r.total : cap)) {
		snprintf(s->err, sizeof(s->err), "GET s3://%s/%s: asked bytes 0-%zu, got %zu of "
			 "an object of unknown or other size (HTTP %ld)", bucket, key, cap - 1,
			 r.out_len, r.status);
		return -EIO;
	}
	*got = r.out_len;
	*size = r.total;
	if (etag)
		memcpy(etag, r.etag, S3_ETAG_MAX);
	return 0;
}

int s3_put(struct s3_client *s, const char *bucket, const char *key, const void *buf, size_t len,
	   char etag[S3_ETAG_MAX])
{
	struct req r = { .method = "PUT", .bucket = bucket, .key = key, .body = buf,
			 .body_len = len };
	int ret = perform(s, &r);

	if (!ret && etag)
		memcpy(etag, r.etag, S3_ETAG_MAX);
	return ret;
}

int s3_delete(struct s3_client *s, const char *bucket, const char *key)
{
	struct req r = { .method = "DELETE", .bucket = bucket, .key = key };
	int ret = perform(s, &r);

	return ret == -ENOENT ? 0 : ret;
}

int s3_create_bucket(struct s3_client *s, const char *bucket)
{
	struct req r = { .method = "PUT", .bucket = bucket };
	char code[64];
	int ret = perform(s, &r);

	xml_code(r.errbody, code, sizeof(code));
	if (ret && strcmp(code, "BucketAlreadyOwnedByYou") == 0)
		return 0;
	return ret;
}

/* ---- multipart upload ------------------------------------------------ */

struct s3_upload {
	struct s3_client *s;
	char *bucket, *key;
	char id[512];
	char (*etags)[S3_ETAG_MAX];
	int nparts, cap;
};

static void upload_free(struct s3_upload *u)
{
	free(u->bucket);
	free(u->key);
	free(u->etags);
	free(u);
}

/* The text between <@tag> and </@tag> in @xml into @dst. Returns 0 or -EIO. */
static int xml_text(const char *xml, const char *tag, char *dst, size_t cap)
{
	char open[64], close[64];
	const char *a, *b;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	a = xml ? strstr(xml, open) : NULL;
	if (!a)
		return -EIO;
	a += strlen(open);
	b = strstr(a, close);
	if (!b || (size_t)(b - a) >= cap || b == a)
		return -EIO;
	memcpy(dst, a, (size_t)(b - a));
	dst[b - a] = '\0';
	return 0;
}

int s3_upload_begin(struct s3_client *s, const char *bucket, const char *key,
		    struct s3_upload **out)
{
	struct req r = { .method = "POST", .bucket = bucket, .key = key, .query = "uploads=",
			 .body = (const unsigned char *)"", .out_grow = true };
	struct s3_upload *u = calloc(1, sizeof(*u));
	int ret;

	if (!u)
		return -ENOMEM;
	u->s = s;
	u->bucket = strdup(bucket);
	u->key = strdup(key);
	if (!u->bucket || !u->key) {
		upload_free(u);
		return -ENOMEM;
	}
	ret = perform(s, &r);
	if (!ret && xml_text((const char *)r.out, "UploadId", u->id, sizeof(u->id))) {
		snprintf(s->err, sizeof(s->err), "POST s3://%s/%s?uploads: no UploadId", bucket,
			 key);
		ret = -EIO;
	}
	free(r.out);
	if (ret) {
		upload_free(u);
		return ret;
	}
	*out = u;
	return 0;
}

/* "partNumber=N&uploadId=ID" (sorted, encoded), or with @part 0 just the id. */
static int upload_query(const struct s3_upload *u, int part, char *q, size_t cap)
{
	size_t pos;
	int n = part ? snprintf(q, cap, "partNumber=%d&uploadId=", part)
		     : snprintf(q, cap, "uploadId=");

	if (n < 0 || (size_t)n >= cap)
		return -EINVAL;
	pos = (size_t)n;
	return url_encode(q, cap, &pos, u->id, false);
}

int s3_upload_part(struct s3_upload *u, const void *buf, size_t len)
{
	char q[1600];
	struct req r = { .method = "PUT", .bucket = u->bucket, .key = u->key, .query = q,
			 .body = buf, .body_len = len };
	int ret;

	if (u->nparts >= 10000)
		return -EFBIG;
	if (u->nparts == u->cap) {
		int cap = u->cap ? u->cap * 2 : 16;
		void *n = realloc(u->etags, (size_t)cap * S3_ETAG_MAX);

		if (!n)
			return -ENOMEM;
		u->etags = n;
		u->cap = cap;
	}
	ret = upload_query(u, u->nparts + 1, q, sizeof(q));
	if (ret)
		return ret;
	ret = perform(u->s, &r);
	if (ret)
		return ret;
	if (!r.etag[0]) {
		snprintf(u->s->err, sizeof(u->s->err), "PUT s3://%s/%s part %d: no ETag",
			 u->bucket, u->key, u->nparts + 1);
		return -EIO;
	}
	memcpy(u->etags[u->nparts++], r.etag, S3_ETAG_MAX);
	return 0;
}

/* The CompleteMultipartUpload document of @u's parts (malloc'ed). */
static char *complete_xml(const struct s3_upload *u, size_t *len)
{
	size_t cap = 128 + (size_t)u->nparts * (S3_ETAG_MAX + 80), pos;
	char *x = malloc(cap);
	int i;

	if (!x)
		return NULL;
	pos = (size_t)snprintf(x, cap, "<CompleteMultipartUpload>");
	for (i = 0; i < u->nparts; i++)
		pos += (size_t)snprintf(x + pos, cap - pos,
					"<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
					i + 1, u->etags[i]);
	pos += (size_t)snprintf(x + pos, cap - pos, "</CompleteMultipartUpload>");
	*len = pos;
	return x;
}

int s3_upload_complete(struct s3_upload *u, char etag[S3_ETAG_MAX])
{
	char q[1600];
	struct req r = { .method = "POST", .bucket = u->bucket, .key = u->key, .query = q,
			 .out_grow = true };
	int ret = upload_query(u, 0, q, sizeof(q));
	char *x = NULL;

	if (ret)
		goto out;
	x = complete_xml(u, &r.body_len);
	if (!x) {
		ret = -ENOMEM;
		goto out;
	}
	r.body = (const unsigned char *)x;
	ret = perform(u->s, &r);
	/* S3 may answer 200 with an <Error> in the body. */
	if (!ret && r.out && strstr((const char *)r.out, "<Error>")) {
		snprintf(u->s->err, sizeof(u->s->err), "complete s3://%s/%s: error in answer",
			 u->bucket, u->key);
		ret = -EIO;
	}
	/* radosgw leaves <ETag></ETag> empty: then the header's, or a HEAD's. */
	if (!ret && etag && xml_text((const char *)r.out, "ETag", etag, S3_ETAG_MAX)) {
		memcpy(etag, r.etag, S3_ETAG_MAX);
		if (!etag[0] && s3_head(u->s, u->bucket, u->key, NULL, etag))
			etag[0] = '\0';
	}
out:
	free(x);
	free(r.out);
	if (ret) {
		s3_upload_abort(u);
		return ret;
	}
	upload_free(u);
	return 0;
}

int s3_count_uploads(struct s3_client *s, const char *bucket, const char *prefix, int *count)
{
	char q[1200];
	struct req r = { .method = "GET", .bucket = bucket, .query = q, .out_grow = true };
	size_t pos = 7;
	const char *p;
	int ret;

	memcpy(q, "prefix=", 8);
	if (url_encode(q, sizeof(q) - 16, &pos, prefix, false))
		return -EINVAL;
	memcpy(q + pos, "&uploads=", 10);
	ret = perform(s, &r);
	*count = 0;
	for (p = r.out ? (const char *)r.out : ""; !ret && (p = strstr(p, "<UploadId>")); p++)
		(*count)++;
	free(r.out);
	return ret;
}

const char *s3_upload_id(const struct s3_upload *u)
{
	return u->id;
}

int s3_abort_upload(struct s3_client *s, const char *bucket, const char *key,
		    const char *upload_id)
{
	char q[1600];
	struct req r = { .method = "DELETE", .bucket = bucket, .key = key, .query = q };
	struct s3_upload u = { .s = s };
	int ret;

	snprintf(u.id, sizeof(u.id), "%s", upload_id);
	ret = upload_query(&u, 0, q, sizeof(q));
	return ret ? ret : perform(s, &r);
}

int s3_upload_abort(struct s3_upload *u)
{
	char keep[sizeof(u->s->err)];
	int ret;

	/* The error that led to the abort is the one worth keeping. */
	memcpy(keep, u->s->err, sizeof(keep));
	ret = s3_abort_upload(u->s, u->bucket, u->key, u->id);
	if (keep[0])
		memcpy(u->s->err, keep, sizeof(keep));
	upload_free(u);
	return ret;
}
