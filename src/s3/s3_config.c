/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3_config.c - where the S3 client's settings come from: the variables
 * every AWS tool reads, and the shared credentials file's profile, looked
 * up through the caller's function (the module reads no environment of
 * its own); and the parsing of s3://BUCKET/PREFIX URLs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3.h"

#define S3_TIMEOUT_MS_DEFAULT 30000L
#define S3_RETRIES_DEFAULT 4

static const char *var(const char *(*lookup)(const char *), const char *name)
{
	const char *v = lookup(name);

	return v && *v ? v : NULL;
}

/* Copy @v into @dst[@cap]; -EINVAL (with @what in @err) when it does not fit. */
static int set(char *dst, size_t cap, const char *v, const char *what, char *err, size_t errlen)
{
	if (strlen(v) >= cap) {
		if (err)
			snprintf(err, errlen, "%s is too long", what);
		return -EINVAL;
	}
	strcpy(dst, v);
	return 0;
}

/* Trim blanks and line ends at both ends of @s, in place. */
static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		e--;
	*e = '\0';
	return s;
}

/*
 * Read the keys of [@profile] from the INI file @path into @c. A missing
 * file is not an error. Returns 0 or -EINVAL (a value too long).
 */
static int read_credentials(struct s3_config *c, const char *path, const char *profile,
			    char *err, size_t errlen)
{
	char line[4400], *k, *v, *eq;
	bool in = false;
	struct stat st;
	FILE *f;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || !(f = fdopen(fd, "r"))) {
		close(fd);
		return 0;
	}
	while (!ret && fgets(line, sizeof(line), f)) {
		k = trim(line);
		if (*k == '[') {
			char *e = strchr(k, ']');

			if (e) {
				*e = '\0';
				in = strcmp(trim(k + 1), profile) == 0;
			}
			continue;
		}
		if (!in || *k == '#' || *k == ';' || !(eq = strchr(k, '=')))
			continue;
		*eq = '\0';
		v = trim(eq + 1);
		k = trim(k);
		if (strcmp(k, "aws_access_key_id") == 0)
			ret = set(c->access_key, sizeof(c->access_key), v, "aws_access_key_id", err,
				  errlen);
		else if (strcmp(k, "aws_secret_access_key") == 0)
			ret = set(c->secret_key, sizeof(c->secret_key), v,
				  "aws_secret_access_key", err, errlen);
		else if (strcmp(k, "aws_session_token") == 0)
			ret = set(c->session_token, sizeof(c->session_token), v,
				  "aws_session_token", err, errlen);
	}
	memset(line, 0, sizeof(line));
	fclose(f);
	return ret;
}

static long num(const char *v, long def, long lo, long hi)
{
	char *end;
	long n;

	if (!v)
		return def;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || *end || n < lo || n > hi)
		return def;
	return n;
}

int s3_config_load(struct s3_config *c, const char *(*lookup)(const char *name), char *err,
		   size_t errlen)
{
	const char *v, *id = var(lookup, "AWS_ACCESS_KEY_ID");
	const char *secret = var(lookup, "AWS_SECRET_ACCESS_KEY");
	char path[4096];
	int ret = 0;

	memset(c, 0, sizeof(*c));
	if (err && errlen)
		err[0] = '\0';
	if (id && secret) {
		ret = set(c->access_key, sizeof(c->access_key), id, "AWS_ACCESS_KEY_ID", err,
			  errlen);
		if (!ret)
			ret = set(c->secret_key, sizeof(c->secret_key), secret,
				  "AWS_SECRET_ACCESS_KEY", err, errlen);
		if (!ret && (v = var(lookup, "AWS_SESSION_TOKEN")))
			ret = set(c->session_token, sizeof(c->session_token), v,
				  "AWS_SESSION_TOKEN", err, errlen);
	} else {
		const char *file = var(lookup, "AWS_SHARED_CREDENTIALS_FILE");
		const char *home = var(lookup, "HOME");
		const char *profile = var(lookup, "AWS_PROFILE");

		if (file)
			snprintf(path, sizeof(path), "%s", file);
		else if (home)
			snprintf(path, sizeof(path), "%s/.aws/credentials", home);
		else
			path[0] = '\0';
		if (path[0])
			ret = read_credentials(c, path, profile ? profile : "default", err,
					       errlen);
	}
	if (!ret && (v = var(lookup, "AWS_REGION") ?: var(lookup, "AWS_DEFAULT_REGION")))
		ret = set(c->region, sizeof(c->region), v, "AWS_REGION", err, errlen);
	else if (!ret)
		strcpy(c->region, "us-east-1");
	if (!ret && (v = var(lookup, "AWS_ENDPOINT_URL_S3") ?: var(lookup, "AWS_ENDPOINT_URL"))) {
		ret = set(c->endpoint, sizeof(c->endpoint), v, "AWS_ENDPOINT_URL", err, errlen);
		if (!ret && strncmp(v, "http://", 7) && strncmp(v, "https://", 8)) {
			if (err)
				snprintf(err, errlen, "AWS_ENDPOINT_URL must start with http:// or https://");
			ret = -EINVAL;
		}
		/* No trailing '/': the bucket follows it. */
		while (!ret && c->endpoint[0] && c->endpoint[strlen(c->endpoint) - 1] == '/')
			c->endpoint[strlen(c->endpoint) - 1] = '\0';
	}
	if (!ret && (!c->access_key[0] || !c->secret_key[0])) {
		if (err)
			snprintf(err, errlen,
				 "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
				 "or a profile in the shared credentials file");
		ret = -EACCES;
	}
	c->timeout_ms = num(var(lookup, "PGCKPT_S3_TIMEOUT_MS"), S3_TIMEOUT_MS_DEFAULT, 100,
			    3600000L);
	c->connect_timeout_ms = c->timeout_ms < 10000 ? c->timeout_ms : 10000;
	c->retries = (int)num(var(lookup, "PGCKPT_S3_RETRIES"), S3_RETRIES_DEFAULT, 0, 20);
	c->backoff_ms = 100;
	if (ret)
		memset(c->secret_key, 0, sizeof(c->secret_key));
	return ret;
}

int s3_parse_url(const char *url, char *bucket, size_t blen, char *prefix, size_t plen)
{
	const char *b, *slash, *p;
	size_t n;

	if (strncmp(url, "s3://", 5) != 0)
		return 0;
	b = url + 5;
	slash = strchr(b, '/');
	n = slash ? (size_t)(slash - b) : strlen(b);
	/* S3 bucket names: 3..63 of [a-z0-9.-] */
	if (n < 3 || n > 63 || n >= blen || strspn(b, "abcdefghijklmnopqrstuvwxyz0123456789.-") < n)
		return -EINVAL;
	memcpy(bucket, b, n);
	bucket[n] = '\0';
	p = slash ? slash + 1 : "";
	while (*p == '/')
		p++;
	n = strlen(p);
	while (n && p[n - 1] == '/')
		n--;
	if (n >= plen || n > 900)
		return -EINVAL;
	memcpy(prefix, p, n);
	prefix[n] = '\0';
	return 1;
}
