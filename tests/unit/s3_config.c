/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3_config.c - unit tests of the S3 client's settings (src/s3/s3_config.c)
 * without a server: the AWS variables and their precedence, the shared
 * credentials file's profiles, the timeout and retry variables' bounds,
 * the errors that must not show a secret, and s3://BUCKET/PREFIX parsing.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "s3/s3.h"
#include "test.h"

/* The fake environment: NAME=VALUE strings, NULL-terminated. */
static const char **fake_env;

static const char *fake(const char *name)
{
	size_t n = strlen(name);

	for (const char **e = fake_env; e && *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

static int load(struct s3_config *c, const char **env, char *err)
{
	fake_env = env;
	return s3_config_load(c, fake, err, 256);
}

static void t_env(void)
{
	const char *env[] = { "AWS_ACCESS_KEY_ID=AKID", "AWS_SECRET_ACCESS_KEY=SECRET1",
			      "AWS_SESSION_TOKEN=TOK", "AWS_DEFAULT_REGION=eu-west-3",
			      "AWS_ENDPOINT_URL=http://127.0.0.1:9000/",
			      "AWS_ENDPOINT_URL_S3=http://127.0.0.1:9001//", NULL };
	const char *env2[] = { "AWS_ACCESS_KEY_ID=AKID", "AWS_SECRET_ACCESS_KEY=S",
			       "AWS_REGION=ap-south-1", "AWS_DEFAULT_REGION=eu-west-3",
			       "PGCKPT_S3_TIMEOUT_MS=1500", "PGCKPT_S3_RETRIES=0", NULL };
	const char *env3[] = { "AWS_ACCESS_KEY_ID=AKID", "AWS_SECRET_ACCESS_KEY=S",
			       "PGCKPT_S3_TIMEOUT_MS=5", "PGCKPT_S3_RETRIES=x", NULL };
	struct s3_config c;
	char err[256];

	CHECK_EQ(load(&c, env, err), 0);
	CHECK(strcmp(c.access_key, "AKID") == 0);
	CHECK(strcmp(c.secret_key, "SECRET1") == 0);
	CHECK(strcmp(c.session_token, "TOK") == 0);
	CHECK(strcmp(c.region, "eu-west-3") == 0);
	CHECK(strcmp(c.endpoint, "http://127.0.0.1:9001") == 0); /* _S3 wins, no '/' */
	CHECK(c.timeout_ms > 0 && c.retries > 0);

	CHECK_EQ(load(&c, env2, err), 0);
	CHECK(strcmp(c.region, "ap-south-1") == 0); /* AWS_REGION wins */
	CHECK(c.endpoint[0] == '\0');
	CHECK_EQ(c.timeout_ms, 1500);
	CHECK_EQ(c.retries, 0);

	CHECK_EQ(load(&c, env3, err), 0); /* out of bounds: the defaults */
	CHECK(c.timeout_ms >= 100);
	CHECK(c.retries > 0);
	CHECK(strcmp(c.region, "us-east-1") == 0);
}

static void t_errors(void)
{
	const char *none[] = { "HOME=/nonexistent-pgckpt", NULL };
	const char *half[] = { "AWS_ACCESS_KEY_ID=AKID", "HOME=/nonexistent-pgckpt", NULL };
	const char *ep[] = { "AWS_ACCESS_KEY_ID=AKID", "AWS_SECRET_ACCESS_KEY=TOPSECRET",
			     "AWS_ENDPOINT_URL=ftp://x", NULL };
	static char longv[600];
	const char *lng[] = { "AWS_ACCESS_KEY_ID=AKID", longv, NULL };
	struct s3_config c;
	char err[256];

	CHECK_EQ(load(&c, none, err), -EACCES);
	CHECK(strstr(err, "AWS_ACCESS_KEY_ID") != NULL);
	CHECK_EQ(load(&c, half, err), -EACCES);
	CHECK_EQ(load(&c, ep, err), -EINVAL);
	CHECK(strstr(err, "http://") != NULL);
	CHECK(strstr(err, "TOPSECRET") == NULL);
	CHECK(c.secret_key[0] == '\0'); /* wiped on failure */
	memcpy(longv, "AWS_SECRET_ACCESS_KEY=", 22);
	memset(longv + 22, 'k', sizeof(longv) - 23);
	CHECK_EQ(load(&c, lng, err), -EINVAL);
	CHECK(strstr(err, "AWS_SECRET_ACCESS_KEY is too long") != NULL);
	CHECK(strstr(err, "kkkk") == NULL);
}

static void t_credentials_file(void)
{
	const char *text = "# comment\n[default]\naws_access_key_id = DEFID\n"
			   "aws_secret_access_key=DEFSECRET\n\n[ other ]\r\n"
			   "aws_access_key_id=OTHERID\r\naws_secret_access_key = OTHERSECRET \r\n"
			   "aws_session_token = OTHERTOK\n[third]\naws_access_key_id=X\n";
	const char *dflt[] = { "AWS_SHARED_CREDENTIALS_FILE=creds", NULL };
	const char *other[] = { "AWS_SHARED_CREDENTIALS_FILE=creds", "AWS_PROFILE=other", NULL };
	const char *third[] = { "AWS_SHARED_CREDENTIALS_FILE=creds", "AWS_PROFILE=third", NULL };
	const char *home[] = { "HOME=.", "AWS_PROFILE=other", NULL };
	const char *envwins[] = { "AWS_SHARED_CREDENTIALS_FILE=creds", "AWS_ACCESS_KEY_ID=E",
				  "AWS_SECRET_ACCESS_KEY=ES", NULL };
	const char *fifo[] = { "AWS_SHARED_CREDENTIALS_FILE=fifo", NULL };
	struct s3_config c;
	char err[256];
	FILE *f = fopen("creds", "w");

	CHECK(f != NULL);
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	CHECK_EQ(load(&c, dflt, err), 0);
	CHECK(strcmp(c.access_key, "DEFID") == 0 && strcmp(c.secret_key, "DEFSECRET") == 0);
	CHECK(c.session_token[0] == '\0');
	CHECK_EQ(load(&c, other, err), 0);
	CHECK(strcmp(c.access_key, "OTHERID") == 0 && strcmp(c.secret_key, "OTHERSECRET") == 0);
	CHECK(strcmp(c.session_token, "OTHERTOK") == 0);
	CHECK_EQ(load(&c, third, err), -EACCES); /* no secret in that profile */
	CHECK(mkdir(".aws", 0700) == 0 && rename("creds", ".aws/credentials") == 0);
	CHECK_EQ(load(&c, home, err), 0);
	CHECK(strcmp(c.access_key, "OTHERID") == 0);
	CHECK(rename(".aws/credentials", "creds") == 0);
	CHECK_EQ(load(&c, envwins, err), 0);
	CHECK(strcmp(c.access_key, "E") == 0);
	/* A FIFO is not read (nor waited on). */
	CHECK(mkfifo("fifo", 0600) == 0);
	CHECK_EQ(load(&c, fifo, err), -EACCES);
}

static void t_url(void)
{
	char b[64], p[1024];

	CHECK_EQ(s3_parse_url("s3://bucket-1/a/b/", b, sizeof(b), p, sizeof(p)), 1);
	CHECK(strcmp(b, "bucket-1") == 0 && strcmp(p, "a/b") == 0);
	CHECK_EQ(s3_parse_url("s3://my.bucket", b, sizeof(b), p, sizeof(p)), 1);
	CHECK(strcmp(b, "my.bucket") == 0 && p[0] == '\0');
	CHECK_EQ(s3_parse_url("s3://bkt//x", b, sizeof(b), p, sizeof(p)), 1);
	CHECK(strcmp(p, "x") == 0);
	CHECK_EQ(s3_parse_url("/tmp/img", b, sizeof(b), p, sizeof(p)), 0);
	CHECK_EQ(s3_parse_url("S3://bkt/x", b, sizeof(b), p, sizeof(p)), 0);
	CHECK_EQ(s3_parse_url("s3://", b, sizeof(b), p, sizeof(p)), -EINVAL);
	CHECK_EQ(s3_parse_url("s3://ab/x", b, sizeof(b), p, sizeof(p)), -EINVAL);
	CHECK_EQ(s3_parse_url("s3://Upper/x", b, sizeof(b), p, sizeof(p)), -EINVAL);
	CHECK_EQ(s3_parse_url("s3://bkt/x", b, sizeof(b), p, 1), -EINVAL);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	TEST_RUN(t_env);
	TEST_RUN(t_errors);
	TEST_RUN(t_credentials_file);
	TEST_RUN(t_url);
	return test_done();
}
