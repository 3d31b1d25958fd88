/* SPDX-License-Identifier: Apache-2.0 */
/*
 * engine.c - what the save and load engines share: how many workers to
 * run, and the loader's use of the one populate path of src/util (a page
 * that cannot be populated in advance is no error: it faults in when
 * written; a page the host cannot back is).
 */
#include <errno.h>
#include <unistd.h>

#include "engine.h"
#include "util/options.h"
#include "util/util.h"

int engine_jobs(int requested)
{
	long n;

	if (requested > 0)
		n = requested;
	else
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return n > opt_max(OPT_JOBS) ? (int)opt_max(OPT_JOBS) : (int)n;
}

int engine_populate(void *addr, size_t len)
{
	int ret = util_populate_write(addr, len);

	/* Not populated (unsupported, interrupted): pages fault in on first write. */
	return ret == -EOPNOTSUPP || ret == -EAGAIN ? 0 : ret;
}
