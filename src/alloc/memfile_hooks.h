/* SPDX-License-Identifier: Apache-2.0 */
/*
 * memfile_hooks.h - the one boundary between the MemoryFile (src/alloc)
 * and the engine that fills it from an image (src/engine, the page
 * loader): the hooks the engine installs, and the few functions of the
 * MemoryFile it may call. The engine includes this header, never
 * memfile.h, so it cannot reach into struct pgc_memfile, and src/alloc
 * includes nothing of the engine (tests/static/layering.sh checks both):
 * it only calls the hooks, whose preconditions are written here once.
 * The complete lock order is in memfile.h (and docs/alloc.md).
 */
#ifndef PGC_MEMFILE_HOOKS_H
#define PGC_MEMFILE_HOOKS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "pgckpt.h"

#define MF_PAGE_MASK   (PGC_PAGE_SIZE - 1)

struct pgc_memfile;

/*
 * What the MemoryFile calls, with the context @ctx given at installation.
 * Ranges are page-aligned, non-empty and inside the file. Every hook is
 * called only once installed and never after destroy. A hook must not
 * take mf->mu, and the engine must never wait for mf->mu while it holds a
 * lock that a hook takes (cancel runs under mf->mu).
 */
struct memfile_hooks {
	/*
	 * wait - pgc_map_internal is about to map @r: return once every page
	 * of @r holds its contents (0), or with the error that keeps them
	 * from it. Called with no lock held; may block. On every mapping:
	 * it must be cheap (lock-free) once nothing in @r is pending.
	 */
	int (*wait)(void *ctx, pgc_range r);
	/*
	 * ready - pgc_map_internal with PGC_ACCESS_NOWAIT asks whether every page of @r holds its
	 * contents: 1 if so, 0 if some are still to come, or the error that
	 * keeps them from it. Called with no lock held; never blocks (it may
	 * take the engine's lock briefly) and never reorders the engine's work.
	 * Lock-free once nothing in @r is pending.
	 */
	int (*ready)(void *ctx, pgc_range r);
	/*
	 * cancel - pgc_decref dropped the last reference to @r: forget the
	 * pages of @r whose filling has not started. Called with mf->mu held:
	 * it may take the engine's own locks (ranked after mf->mu), must not
	 * wait for the engine's progress, and must not call the MemoryFile.
	 */
	void (*cancel)(void *ctx, pgc_range r);
	/*
	 * quiesce - the reclaimer is about to decommit @r: return once
	 * nothing the engine started still writes into @r (so freed pages
	 * are never written after they were punched out). Called on the
	 * reclaimer thread with no lock held; may block.
	 */
	void (*quiesce)(void *ctx, pgc_range r);
	/*
	 * stop - pgc_memfile_destroy begins: end the engine's work (a fill
	 * still running fails, its waiters wake with an error), join its
	 * threads; nothing is written into the file afterwards. Called with
	 * no lock held, and no wait or cancel after it; quiesce still may be
	 * (the reclaimer runs until destroy stops it).
	 */
	void (*stop)(void *ctx);
	/*
	 * destroy - the last call, once the reclaimer and the eviction
	 * threads have stopped: free @ctx. Called with no lock held.
	 */
	void (*destroy)(void *ctx);
};

/*
 * memfile_hooks_install - install @hooks, with @ctx, on @mf: from now on
 * the MemoryFile calls them, until memfile_hooks_retire or
 * pgc_memfile_destroy. One engine at a time, installed on a pristine
 * MemoryFile; every context installed on one MemoryFile has the same
 * @hooks. Takes mf->mu.
 * Returns 0, or -ENOMEM (nothing installed).
 */
int memfile_hooks_install(struct pgc_memfile *mf, const struct memfile_hooks *hooks,
			  void *ctx);

/*
 * memfile_hooks_retire - for a fill that failed: the MemoryFile stops
 * calling the installed hooks (a call that had already begun may still
 * run; quiesce, for one, must return at once from now on, as nothing may
 * be pending). The context is kept and destroyed with the MemoryFile.
 * Never fails (install reserved the room). Takes mf->mu.
 */
void memfile_hooks_retire(struct pgc_memfile *mf);

/*
 * memfile_hooks_ctx - the context installed on @mf with @hooks, or NULL
 * (none installed, or other hooks). Lock-free.
 */
void *memfile_hooks_ctx(struct pgc_memfile *mf, const struct memfile_hooks *hooks);

/* ---- what the engine may call (besides pgckpt.h) ----------------------- */

/* memfile_readonly - whether the backing file is read-only (adopt mode). */
bool memfile_readonly(const struct pgc_memfile *mf);

/*
 * memfile_may_shrink - whether the backing file is someone else's (the
 * adopt option), whose owner may shrink it at any time, and the caller
 * did not take SIGBUS on itself (adopt_mapped): such a file is read with
 * pread, never through a mapping that would raise SIGBUS past its end.
 */
bool memfile_may_shrink(const struct pgc_memfile *mf);

/*
 * memfile_pristine - whether @mf holds no allocation, no file size and no
 * installed hooks (it never held any, or a failed load was undone): the
 * only kind of MemoryFile an image may be loaded into.
 * Takes mf->mu.
 */
bool memfile_pristine(struct pgc_memfile *mf);

/*
 * memfile_map - like pgc_map_internal() but never calls the wait hook
 * (the engine uses it to write pages in). @r need not be page-aligned.
 * Takes no lock on the fast path (chunks already mapped); may take
 * mappings_mu. Callable with or without mf->mu and the engine's locks.
 * Returns the number of iovecs filled, -EINVAL (empty range or past the
 * end of the file), -ENOBUFS (@iovcnt too small), -EBADF (write access to
 * a read-only file), or -errno from mmap.
 */
int memfile_map(struct pgc_memfile *mf, pgc_range r, int access,
		struct iovec *iov, int iovcnt);

/*
 * memfile_set_size - grow the file to @size bytes (page-aligned) and the
 * chunk mapping table with it; used by LoadFrom before inserting
 * segments. Takes mf->mu. Returns 0 (also if the file is already that
 * large), -EINVAL (unaligned), -EBADF (read-only) or -errno.
 */
int memfile_set_size(struct pgc_memfile *mf, uint64_t size);

/*
 * memfile_insert_segment - add a saved usage segment to @mf, as LoadFrom
 * rebuilds the usage set. The range must be page-aligned, inside the file
 * and free. Known-committed segments are accounted; a segment with refs 0
 * goes to the reclaimer. Takes mf->mu.
 * Returns 0, -EINVAL (bad range or kind), -EEXIST (overlap) or -ENOMEM.
 */
int memfile_insert_segment(struct pgc_memfile *mf, const struct pgc_segment *seg);

/*
 * memfile_reset - undo a failed load: empty the usage and reclaim sets
 * and the accounting, and shrink the file to 0. Nothing of the load may
 * run any more (its hooks retired or never installed). Takes mf->mu.
 */
void memfile_reset(struct pgc_memfile *mf);

/*
 * memfile_reclaim_freed - hand every segment with no reference (refs 0,
 * as a load inserted them) to the reclaimer; a load calls it once it can
 * no longer fail. Takes mf->mu.
 */
void memfile_reclaim_freed(struct pgc_memfile *mf);

/*
 * Commit check of a usage scan: for each page of the @len bytes mapped at
 * @addr (file offset @off), set committed[i] bit 0 if page i is
 * committed. @was_committed tells which kind of segment is being scanned.
 * Called without mf->mu. Returns 0 or -errno.
 */
typedef int (*memfile_check_fn)(void *arg, const void *addr, size_t len,
				unsigned char *committed, uint64_t off,
				bool was_committed);

/*
 * memfile_rescan_usage - gVisor's updateUsageLocked with
 * alsoScanCommitted, as SaveTo runs it: rescan every allocated segment,
 * known committed or not, with @check, and bring known_committed and the
 * accounting in line with its answers. Takes mf->mu (dropped around each
 * @check call). Returns 0 or -errno.
 */
int memfile_rescan_usage(struct pgc_memfile *mf, memfile_check_fn check, void *arg);

#endif /* PGC_MEMFILE_HOOKS_H */
