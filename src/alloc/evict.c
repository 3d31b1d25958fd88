/* SPDX-License-Identifier: Apache-2.0 */
/*
 * evict.c - evictable memory of a MemoryFile: per-user sets of evictable
 * ranges (a small hash keyed by the user pointer), eviction threads that
 * call user->evict one range at a time with no lock held, the delayed
 * eviction modes, and the optional host memory pressure trigger: a cgroup
 * v2 PSI trigger on memory.pressure, polled by a thread of its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "memfile.h"
#include "util/util.h"

/*
 * Stall of 150 ms within a 1 s window, as "some" tasks see it. Without
 * CAP_SYS_RESOURCE the kernel only accepts windows that are multiples of
 * 2 s: fall back to that.
 */
#define PSI_TRIGGER "some 150000 1000000"
#define PSI_TRIGGER_UNPRIV "some 150000 2000000"

struct evict_user {
	struct evict_user *next;        /* hash chain */
	pgc_evictable_user *user;
	struct rangeset ranges;         /* evictable ranges, user offsets */
	bool evicting;                  /* an eviction thread owns this entry */
};

struct evict_thread {
	struct evict_thread *next;
	struct pgc_memfile *mf;
	pgc_evictable_user *user;
	pthread_t tid;
	bool done;                      /* under mf->mu: about to exit */
};

static const uint8_t evictable_flag;

/* ---- the user table ---------------------------------------------------- */

static size_t user_slot(const struct pgc_memfile *mf, const void *user)
{
	uint64_t h = (uint64_t)(uintptr_t)user;

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (size_t)h & (mf->evict_nbuckets - 1);
}

static struct evict_user *user_find(const struct pgc_memfile *mf,
				    const pgc_evictable_user *user)
{
	struct evict_user *e;

	if (!mf->evict_nbuckets)
		return NULL;
	for (e = mf->evict_buckets[user_slot(mf, user)]; e; e = e->next)
		if (e->user == user)
			return e;
	return NULL;
}

/* Double the table (power of two buckets). Returns 0 or -ENOMEM. */
static int users_grow(struct pgc_memfile *mf)
{
	size_t old_n = mf->evict_nbuckets, n = old_n ? old_n * 2 : 16, i;
	struct evict_user **old = mf->evict_buckets, **b, *e, *next;

	b = calloc(n, sizeof(*b));
	if (!b)
		return -ENOMEM;
	mf->evict_buckets = b;
	mf->evict_nbuckets = n;
	for (i = 0; i < old_n; i++) {
		for (e = old[i]; e; e = next) {
			size_t s = user_slot(mf, e->user);

			next = e->next;
			e->next = b[s];
			b[s] = e;
		}
	}
	free(old);
	return 0;
}

static int user_get(struct pgc_memfile *mf, pgc_evictable_user *user,
		    struct evict_user **out)
{
	struct evict_user *e = user_find(mf, user);
	size_t s;
	int ret;

	if (e)
		goto exit;
	if (mf->evict_nusers >= mf->evict_nbuckets) {
		ret = users_grow(mf);
		if (ret)
			return ret;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->user = user;
	rs_init(&e->ranges, &flag_ops);
	s = user_slot(mf, user);
	e->next = mf->evict_buckets[s];
	mf->evict_buckets[s] = e;
	mf->evict_nusers++;
exit:
	*out = e;
	return 0;
}

static void user_delete(struct pgc_memfile *mf, struct evict_user *e)
{
	struct evict_user **p = &mf->evict_buckets[user_slot(mf, e->user)];

	while (*p != e)
		p = &(*p)->next;
	*p = e->next;
	mf->evict_nusers--;
	rs_clear(&e->ranges);
	free(e);
}

/* ---- eviction threads -------------------------------------------------- */

/* Join the threads that have finished (they hold no lock by then). */
static void reap_threads_locked(struct pgc_memfile *mf)
{
	struct evict_thread **p = &mf->evict_threads, *t;

	while ((t = *p)) {
		if (!t->done) {
			p = &t->next;
			continue;
		}
		*p = t->next;
		pthread_join(t->tid, NULL);
		free(t);
	}
}

static void *evict_main(void *arg)
{
	struct evict_thread *t = arg;
	struct pgc_memfile *mf = t->mf;
	pgc_evictable_user *user = t->user;
	struct evict_user *e;
	rs_node *n;
	pgc_range er;

	pthread_mutex_lock(&mf->mu);
	for (;;) {
		/* Only this thread may delete the entry while it runs. */
		e = user_find(mf, user);
		PGC_ASSERT(e && e->evicting);
		if (!e)
			break;
		if (rs_empty(&e->ranges)) {
			user_delete(mf, e);
			break;
		}
		/*
		 * Evict from the end: if the user starts using its ranges
		 * again (marking them unevictable), it likely starts at the
		 * beginning. Take one range at a time, so that a racing
		 * pgc_mark_unevictable is seen before the next one.
		 */
		n = rs_last(&e->ranges);
		er = rs_range(n);
		rs_remove(&e->ranges, n);
		pthread_mutex_unlock(&mf->mu);
		user->evict(user, er);
		pthread_mutex_lock(&mf->mu);
	}
	t->done = true;
	if (--mf->evictions_running == 0)
		pthread_cond_broadcast(&mf->evict_cond);
	pthread_mutex_unlock(&mf->mu);
	return NULL;
}

static int start_thread_locked(struct pgc_memfile *mf, struct evict_user *e)
{
	struct evict_thread *t;
	int ret;

	reap_threads_locked(mf);
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->mf = mf;
	t->user = e->user;
	e->evicting = true;
	mf->evictions_running++;
	ret = util_thread_create(&t->tid, evict_main, t);
	if (ret) {
		e->evicting = false;
		mf->evictions_running--;
		free(t);
		return ret;
	}
	t->next = mf->evict_threads;
	mf->evict_threads = t;
	return 0;
}

bool memfile_start_evictions_locked(struct pgc_memfile *mf)
{
	struct evict_user *e;
	bool started = false;
	size_t i;

	for (i = 0; i < mf->evict_nbuckets; i++)
		for (e = mf->evict_buckets[i]; e; e = e->next)
			if (!e->evicting && start_thread_locked(mf, e) == 0)
				started = true;
	return started;
}

void pgc_start_evictions(pgc_memfile *mf)
{
	if (!mf)
		return;
	pthread_mutex_lock(&mf->mu);
	memfile_start_evictions_locked(mf);
	pthread_mutex_unlock(&mf->mu);
}

void pgc_wait_for_evictions(pgc_memfile *mf)
{
	if (!mf)
		return;
	pthread_mutex_lock(&mf->mu);
	while (mf->evictions_running)
		pthread_cond_wait(&mf->evict_cond, &mf->mu);
	pthread_mutex_unlock(&mf->mu);
}

bool pgc_should_cache_evictable(pgc_memfile *mf)
{
	return mf && (mf->opts.delayed_eviction == PGC_EVICTION_MANUAL ||
		      mf->opts.use_host_memcg_pressure);
}

/* ---- marking ----------------------------------------------------------- */

/* Add the parts of @er not yet in @rs. Returns 0 or -ENOMEM. */
static int add_gaps(struct rangeset *rs, pgc_range er)
{
	uint64_t pos = er.start, end;
	rs_node *n;
	pgc_range nr;
	int ret;

	while (pos < er.end) {
		n = rs_lower_bound(rs, pos);
		if (n) {
			nr = rs_range(n);
			if (nr.start <= pos) {
				pos = nr.end;
				continue;
			}
		}
		end = n && nr.start < er.end ? nr.start : er.end;
		ret = rs_insert(rs, (pgc_range){ pos, end }, &evictable_flag);
		if (ret)
			return ret;
		pos = end;
	}
	return 0;
}

int pgc_mark_evictable(pgc_memfile *mf, pgc_evictable_user *user, pgc_range er)
{
	struct evict_user *e;
	int ret;

	if (!mf || !user || !user->evict || er.start >= er.end)
		return -EINVAL;
	pthread_mutex_lock(&mf->mu);
	ret = user_get(mf, user, &e);
	if (ret)
		goto exit;
	ret = add_gaps(&e->ranges, er);
	if (e->evicting)
		goto exit;
	if (rs_empty(&e->ranges)) {
		user_delete(mf, e);
		goto exit;
	}
	switch (mf->opts.delayed_eviction) {
	case PGC_EVICTION_DISABLED:
		/* Evict at once. If no thread can start, a later call retries. */
		(void)start_thread_locked(mf, e);
		break;
	case PGC_EVICTION_ENABLED:
		/* Wake the reclaimer: it evicts when it runs out of work. */
		if (!mf->opts.use_host_memcg_pressure)
			pthread_cond_signal(&mf->reclaim_cond);
		break;
	default:
		break;
	}
exit:
	pthread_mutex_unlock(&mf->mu);
	return ret;
}

int pgc_mark_unevictable(pgc_memfile *mf, pgc_evictable_user *user, pgc_range er)
{
	struct evict_user *e;
	int ret = 0;

	if (!mf || !user || er.start >= er.end)
		return -EINVAL;
	pthread_mutex_lock(&mf->mu);
	e = user_find(mf, user);
	if (!e)
		goto exit;
	ret = rs_remove_range(&e->ranges, er);
	/* A running eviction thread owns the entry and deletes it itself. */
	if (!e->evicting && rs_empty(&e->ranges))
		user_delete(mf, e);
exit:
	pthread_mutex_unlock(&mf->mu);
	return ret;
}

void pgc_mark_all_unevictable(pgc_memfile *mf, pgc_evictable_user *user)
{
	struct evict_user *e;

	if (!mf || !user)
		return;
	pthread_mutex_lock(&mf->mu);
	e = user_find(mf, user);
	if (e) {
		rs_clear(&e->ranges);
		if (!e->evicting)
			user_delete(mf, e);
	}
	pthread_mutex_unlock(&mf->mu);
}

/* ---- host memory pressure (cgroup v2 PSI) ------------------------------ */

/* The cgroup v2 mount point, from /proc/self/mountinfo. */
static int cgroup2_mount(char *buf, size_t len)
{
	char *line = NULL, *sep, *mnt;
	size_t cap = 0;
	int ret = -ENOENT, i;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... - FSTYPE SOURCE OPTS */
		sep = strstr(line, " - ");
		if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
			continue;
		mnt = line;
		for (i = 0; i < 4 && mnt; i++) {
			mnt = strchr(mnt, ' ');
			if (mnt)
				mnt++;
		}
		if (!mnt || !strchr(mnt, ' '))
			continue;
		*strchr(mnt, ' ') = '\0';
		ret = snprintf(buf, len, "%s", mnt) < (int)len ? 0 : -ENAMETOOLONG;
		break;
	}
	free(line);
	fclose(f);
	return ret;
}

/* Our own cgroup v2 path (the "0::" line of /proc/self/cgroup). */
static int own_cgroup(char *buf, size_t len)
{
	char *line = NULL, *nl;
	size_t cap = 0;
	int ret = -ENOENT;
	FILE *f = fopen("/proc/self/cgroup", "re");

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		if (strncmp(line, "0::", 3) != 0)
			continue;
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		ret = snprintf(buf, len, "%s", line + 3) < (int)len ? 0 : -ENAMETOOLONG;
		break;
	}
	free(line);
	fclose(f);
	return ret;
}

static int psi_open(void)
{
	char mnt[PATH_MAX], cg[PATH_MAX], path[2 * PATH_MAX + 32];
	int fd, ret;

	ret = cgroup2_mount(mnt, sizeof(mnt));
	if (ret)
		return ret;
	ret = own_cgroup(cg, sizeof(cg));
	if (ret)
		return ret;
	snprintf(path, sizeof(path), "%s%s%smemory.pressure", mnt,
		 strcmp(cg, "/") ? cg : "", "/");
	fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* The kernel wants the terminating NUL too. */
	if (write(fd, PSI_TRIGGER, sizeof(PSI_TRIGGER)) >= 0)
		return fd;
	ret = -errno;
	if (ret == -EINVAL &&
	    write(fd, PSI_TRIGGER_UNPRIV, sizeof(PSI_TRIGGER_UNPRIV)) >= 0)
		return fd;
	if (ret == -EINVAL)
		ret = -errno;
	close(fd);
	return ret;
}

static void *psi_main(void *arg)
{
	struct pgc_memfile *mf = arg;
	struct pollfd p[2] = {
		{ .fd = mf->psi_fd, .events = POLLPRI },
		{ .fd = mf->psi_stop_fd, .events = POLLIN },
	};

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		/* POLLERR: the cgroup went away; no more events will come. */
		if (p[0].revents & (POLLERR | POLLNVAL))
			break;
		if (p[0].revents & POLLPRI) {
			pthread_mutex_lock(&mf->mu);
			memfile_start_evictions_locked(mf);
			pthread_mutex_unlock(&mf->mu);
		}
	}
	return NULL;
}

int memfile_evict_init(struct pgc_memfile *mf)
{
	int ret;

	if (mf->opts.delayed_eviction != PGC_EVICTION_ENABLED ||
	    !mf->opts.use_host_memcg_pressure)
		return 0;
	ret = psi_open();
	if (ret < 0)
		goto exit;
	mf->psi_fd = ret;
	mf->psi_stop_fd = eventfd(0, EFD_CLOEXEC);
	if (mf->psi_stop_fd < 0) {
		ret = -errno;
		goto exit;
	}
	ret = util_thread_create(&mf->psi_thread, psi_main, mf);
	if (ret)
		goto exit;
	mf->psi_started = true;
	return 0;
exit:
	if (mf->psi_stop_fd >= 0)
		close(mf->psi_stop_fd);
	if (mf->psi_fd >= 0)
		close(mf->psi_fd);
	mf->psi_fd = mf->psi_stop_fd = -1;
	return ret;
}

void memfile_evict_fini(struct pgc_memfile *mf)
{
	uint64_t one = 1;
	struct evict_user *e, *next;
	size_t i;

	if (mf->psi_started) {
		if (write(mf->psi_stop_fd, &one, sizeof(one)) != sizeof(one))
			PGC_ASSERT(!"eventfd write");
		pthread_join(mf->psi_thread, NULL);
		close(mf->psi_stop_fd);
		close(mf->psi_fd);
		mf->psi_fd = mf->psi_stop_fd = -1;
		mf->psi_started = false;
	}
	pgc_wait_for_evictions(mf);
	pthread_mutex_lock(&mf->mu);
	/* Every thread is done (or about to return): join them all. */
	reap_threads_locked(mf);
	PGC_ASSERT(!mf->evict_threads);
	for (i = 0; i < mf->evict_nbuckets; i++) {
		for (e = mf->evict_buckets[i]; e; e = next) {
			next = e->next;
			rs_clear(&e->ranges);
			free(e);
		}
	}
	free(mf->evict_buckets);
	mf->evict_buckets = NULL;
	mf->evict_nbuckets = mf->evict_nusers = 0;
	pthread_mutex_unlock(&mf->mu);
}
