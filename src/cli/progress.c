/* SPDX-License-Identifier: Apache-2.0 */
/*
 * progress.c - the progress bar of save, restore and verify: bytes done of
 * the total, percentage, rate and ETA, redrawn in place on stderr at most
 * ten times a second. It is drawn only when stderr is a terminal; in a
 * pipe, a file or a test the command stays silent. The library calls the
 * callback from one thread at a time and never with its locks held.
 */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define REDRAW_NS 100000000ull

uint64_t cli_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cli_progress_init(struct cli_progress *p, const char *label)
{
	p->enabled = isatty(STDERR_FILENO) == 1;
	p->drawn = false;
	p->label = label;
	p->start_ns = cli_now_ns();
	p->last_ns = 0;
}

static void format_eta(double secs, char *buf, size_t len)
{
	unsigned long s;

	if (secs < 0 || secs > 359999.0) {
		snprintf(buf, len, "--:--");
		return;
	}
	s = (unsigned long)(secs + 0.5);
	if (s >= 3600)
		snprintf(buf, len, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(buf, len, "%02lu:%02lu", s / 60, s % 60);
}

void cli_progress_cb(void *arg, uint64_t done, uint64_t total)
{
	struct cli_progress *p = arg;
	char sdone[32], stotal[32], srate[32], seta[32];
	uint64_t now;
	double secs, rate, pct;
	char bar[21];
	unsigned i, fill;

	if (!p || !p->enabled)
		return;
	now = cli_now_ns();
	if (done < total && p->drawn && now - p->last_ns < REDRAW_NS)
		return;
	p->last_ns = now;
	if (done > total)
		done = total;
	secs = (double)(now - p->start_ns) / 1e9;
	rate = secs > 0 ? (double)done / secs : 0;
	pct = total ? 100.0 * (double)done / (double)total : 100.0;
	fill = (unsigned)(pct / 5.0);
	for (i = 0; i < 20; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[20] = '\0';
	cli_human_bytes(done, sdone, sizeof(sdone));
	cli_human_bytes(total, stotal, sizeof(stotal));
	cli_human_bytes((uint64_t)rate, srate, sizeof(srate));
	format_eta(rate > 0 ? (double)(total - done) / rate : -1, seta, sizeof(seta));
	fprintf(stderr, "\r\033[K%s [%s] %3.0f%% %s / %s  %s/s  ETA %s",
		p->label, bar, pct, sdone, stotal, srate, seta);
	fflush(stderr);
	p->drawn = true;
}

void cli_progress_end(struct cli_progress *p)
{
	if (!p || !p->drawn)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	p->drawn = false;
}
