/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pgckpt.h - the one public header of libpgckpt.
 *
 * libpgckpt checkpoints and restores memory files. Its core is a port of
 * gVisor's page allocator (pgalloc.MemoryFile): a backing file whose pages
 * are handed out by Allocate, reference-counted, reclaimed, evicted and
 * mapped into this process by pgc_map_internal. On top of it sit the image
 * engines (pgc_save / pgc_load, eager or in the background) and a consumer
 * helper for lazy restore over userfaultfd.
 *
 * Conventions: every function that can fail returns 0 (or a documented
 * non-negative value) on success and a negative errno on failure, or one of
 * the PGC_E* codes below, which lie outside the errno range. pgc_strerror()
 * describes any of them. Handles are opaque. The library never prints.
 *
 * Structs that grow. The caller allocates the option structs
 * (pgc_memfile_opts, pgc_alloc_opts, pgc_save_opts, pgc_load_opts,
 * pgc_lazy_serve_opts) and the result structs the library fills
 * (pgc_accounting, pgc_load_stats, pgc_image_info, pgc_lazy_stats), so
 * their size is part of the ABI. Each ends in uint64_t reserved[8]. A later
 * version adds a field only by taking reserved words, never by moving a
 * field or changing the size, and a new field's zero keeps the earlier
 * behaviour. So:
 *   - start every option struct from its *_init function or from an
 *     initialiser that leaves reserved[] zero ({ .level = 3 }), and never
 *     write reserved[]: a function given options whose reserved[] is not
 *     all zero returns -EINVAL (so a program that sets a field this
 *     library does not know gets an error, not a silent default);
 *   - result structs are cleared whole, reserved[] too, before being filled.
 * pgc_segment, which only the library allocates, grows at its end.
 * pgc_range, pgc_lazy_region (used in arrays), pgc_evictable_user and
 * PGC_KIND_COUNT never change. Defaults and bounds of every tunable, and
 * the environment variables, are listed in docs/tunables.md.
 *
 * Exports. libpgckpt.so exports exactly the functions declared here, each
 * with the symbol version of the release that added it. A new function
 * is also one line in src/libpgckpt.map; tests/static/exports.sh (make
 * check) fails until the header, the map and the .so agree.
 */
#ifndef PGCKPT_H
#define PGCKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Version of this header (compile time). PGC_VERSION_NUMBER packs it as
 * 0xMMmmpp, so versions compare with < and >.
 */
#define PGC_VERSION_MAJOR 0
#define PGC_VERSION_MINOR 1
#define PGC_VERSION_PATCH 0
#define PGC_VERSION_STRING "0.1.0"
#define PGC_VERSION_NUMBER \
	((PGC_VERSION_MAJOR << 16) | (PGC_VERSION_MINOR << 8) | PGC_VERSION_PATCH)

/*
 * pgc_version - version of the library actually loaded (run time), packed
 * as PGC_VERSION_NUMBER is. A program built against this header can
 * compare the two: a library whose major version differs is not ABI
 * compatible with it (before 1.0: whose minor version differs either).
 */
unsigned int pgc_version(void);

/* pgc_version_string - the same as "MAJOR.MINOR.PATCH"; static, never NULL. */
const char *pgc_version_string(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * pgckpt-specific error codes, returned negated like errnos. They start at
 * 4096 (MAX_ERRNO in Linux), so they never collide with an errno.
 */
enum {
	PGC_EFOREIGN   = 4096, /* not a pgckpt image (bad magic) */
	PGC_EVERSION   = 4097, /* image written by a newer format version */
	PGC_ECORRUPT   = 4098, /* image is malformed or fails a bounds check */
	PGC_ECHECKSUM  = 4099, /* a checksum does not match */
	PGC_ETRUNCATED = 4100, /* an image file is shorter than it claims */
	PGC_ELOADFAIL  = 4101, /* a background load failed earlier */
	PGC_ELIMIT     = 4102, /* image exceeds a limit of this reader (PGC_MAX_SEGMENTS) */
	PGC_EPARENT    = 4103, /* a parent image is missing, damaged or not the recorded one */
};

/*
 * pgc_strerror - describe an error code.
 * @err: a value returned by any pgc_ function (negative or positive).
 * Returns a static, never-NULL string.
 */
const char *pgc_strerror(int err);

/*
 * pgc_is_image_error - whether @err means "the image is bad" (as opposed to
 * an I/O or system error). The CLI maps these to exit status 3.
 */
bool pgc_is_image_error(int err);

/* ------------------------------------------------------------------------ */
/* MemoryFile                                                                */
/* ------------------------------------------------------------------------ */

#define PGC_PAGE_SIZE      4096ULL
#define PGC_HUGE_PAGE_SIZE (2ULL << 20)
#define PGC_CHUNK_SIZE     (1ULL << 30)
/* The largest memory file an image can hold (128 TiB). */
#define PGC_MAX_FILE_SIZE  (1ULL << 47)
/*
 * The most usage segments an image may record: it bounds the memory an
 * image's tables take when opened and loaded (docs/failure.md).
 */
#define PGC_MAX_SEGMENTS   (1u << 20)

/* A half-open range [start, end) of file offsets. */
typedef struct pgc_range {
	uint64_t start;
	uint64_t end;
} pgc_range;

/* Memory kinds, used for accounting (gVisor's usage.MemoryKind). */
enum pgc_kind {
	PGC_KIND_SYSTEM = 0,
	PGC_KIND_ANONYMOUS,
	PGC_KIND_PAGECACHE,
	PGC_KIND_TMPFS,
	PGC_KIND_RAMDISK,
	PGC_KIND_MAPPED,
	PGC_KIND_COUNT
};

enum pgc_direction {
	PGC_BOTTOM_UP = 0,
	PGC_TOP_DOWN,
};

enum pgc_alloc_mode {
	PGC_ALLOC_ONLY = 0,          /* pages are only allocated */
	PGC_ALLOC_COMMIT,            /* ... and committed (fallocate) */
	PGC_ALLOC_WRITE_POPULATE,    /* ... and populated writable (MADV_POPULATE_WRITE, mlock fallback) */
};

enum pgc_delayed_eviction {
	PGC_EVICTION_DEFAULT = 0,    /* becomes PGC_EVICTION_ENABLED */
	PGC_EVICTION_DISABLED,       /* evict as soon as possible */
	PGC_EVICTION_ENABLED,        /* delay until pressure, or until the reclaimer is idle */
	PGC_EVICTION_MANUAL,         /* only on pgc_start_evictions() */
};

/* Access types for pgc_map_internal(). */
enum {
	PGC_ACCESS_READ  = 1,
	PGC_ACCESS_WRITE = 2,
	PGC_ACCESS_EXEC  = 4,
	/*
	 * With READ or WRITE: for background work (the lazy server's push),
	 * map @r only if it is loaded already. Never waits, never moves @r
	 * ahead in the loader's queue, and is no demand (a recorded working
	 * set does not count it).
	 */
	PGC_ACCESS_NOWAIT = 8,
};

typedef struct pgc_memfile pgc_memfile;

struct pgc_memfile_opts {
	/*
	 * Backing file. -1 (the default) creates a memfd. Otherwise the
	 * MemoryFile takes ownership of the descriptor and truncates the
	 * file to zero, unless @adopt is set.
	 */
	int fd;
	/*
	 * Adopt the existing contents of @fd instead of truncating it: the
	 * whole file (rounded up to a page) becomes one allocated segment of
	 * kind PGC_KIND_SYSTEM with one reference. Used to save arbitrary
	 * memory files. With a read-only @fd, the MemoryFile is read-only:
	 * mappings are PROT_READ and anything that writes fails with -EBADF.
	 */
	bool adopt;
	enum pgc_delayed_eviction delayed_eviction;
	bool use_host_memcg_pressure;  /* cgroup v2 PSI trigger on memory.pressure */
	bool decommit_on_destroy;      /* punch out the whole file on destroy */
	bool manual_zeroing;           /* do not assume new host pages are zero */
	bool disable_ima_workaround;
	/*
	 * The backing file lives on a disk filesystem, not in memory (tmpfs,
	 * memfd, hugetlbfs): its pages are written back to disk rather than
	 * swapped. Reported by pgc_is_disk_backed() for callers that choose
	 * by it (gVisor's tmpfs commits fallocated pages of a disk-backed
	 * file instead of write-populating them); the MemoryFile itself
	 * behaves the same either way. Set decommit_on_destroy as well to
	 * give the disk space back.
	 */
	bool disk_backed;
	/* If non-zero, allocations fail with -ENOMEM past this many bytes in use. */
	uint64_t max_allocatable;
	/*
	 * With @adopt: pgc_save reads the file through its mapping, as it
	 * does its own memfds, instead of copying it in with pread(2) (one
	 * copy less; about a third off a raw save). Reading a mapping past
	 * the end of a file raises SIGBUS, so set it only if the file cannot
	 * shrink during a save or the process handles SIGBUS (pgckpt does:
	 * it exits 2). Unset, a file that shrinks fails the save with
	 * -ENODATA.
	 */
	bool adopt_mapped;
	uint64_t reserved[7];      /* must be zero; "Structs that grow" (top) */
};

/* Fill @opts with defaults (memfd, delayed eviction enabled, no limits). */
void pgc_memfile_opts_init(struct pgc_memfile_opts *opts);

/*
 * pgc_memfile_new - create a MemoryFile.
 * Returns 0 and stores the handle in *@out, or -errno (-EINVAL for bad
 * options). On failure a caller-given fd is not closed.
 */
int pgc_memfile_new(const struct pgc_memfile_opts *opts, pgc_memfile **out);

/*
 * pgc_memfile_destroy - cancel a background load that is still running
 * (its waiters fail with -ECANCELED), stop the reclaimer and eviction
 * threads, unmap, close. Pages still allocated are simply dropped.
 * @mf may be NULL.
 */
void pgc_memfile_destroy(pgc_memfile *mf);

/*
 * pgc_memfile_fd - the backing file descriptor (owned by @mf), or -EBADF
 * for a NULL @mf. While a background load runs, the file holds only the
 * pages loaded so far: pages not loaded yet read through this fd (or a
 * mapping of it made by the caller or handed to another process) as
 * holes, i.e. zeroes, and writes to them may be overwritten when the load
 * reaches them. Call pgc_load_wait() on a range before using it through
 * the fd; pgc_map_internal() waits by itself.
 */
int pgc_memfile_fd(const pgc_memfile *mf);

/* pgc_total_size - current size of the backing file in bytes. */
uint64_t pgc_total_size(pgc_memfile *mf);

/*
 * pgc_mark_savable - allow pgc_save() of @mf (gVisor's MarkSavable). A
 * MemoryFile is not savable until marked, so that one the application
 * never meant to checkpoint is not saved by mistake. Cannot be undone.
 * @mf may be NULL (no effect).
 */
void pgc_mark_savable(pgc_memfile *mf);

/* pgc_is_savable - whether pgc_mark_savable() was called on @mf (false for NULL). */
bool pgc_is_savable(const pgc_memfile *mf);

/* pgc_is_disk_backed - the disk_backed option @mf was created with (false for NULL). */
bool pgc_is_disk_backed(const pgc_memfile *mf);

/*
 * Reader callback for pgc_allocate(): copy up to @len bytes into @dst.
 * Return the number of bytes produced (0 at end of input) or -errno.
 */
typedef int64_t (*pgc_reader_fn)(void *arg, void *dst, size_t len);

struct pgc_alloc_opts {
	enum pgc_kind kind;
	enum pgc_direction dir;
	uint32_t memcg_id;      /* 0: not accounted to any cgroup */
	enum pgc_alloc_mode mode;
	pgc_reader_fn reader;   /* optional: fill the new pages */
	void *reader_arg;
	uint64_t reserved[8];      /* must be zero; "Structs that grow" (top) */
};

/*
 * pgc_allocate - allocate @length bytes (page-aligned, non-zero) of zeroed
 * pages with one reference held by the caller. Allocations of 2 MiB or
 * more are 2 MiB-aligned. Placement is gVisor's findAvailableRange.
 * Returns 0 and the range in *@out; -EINVAL for a bad length; -ENOMEM if
 * no range fits or max_allocatable would be exceeded; other -errno from the
 * host. With a reader that stops early, *@out is truncated to the pages
 * filled (rounded down) and the reader's error, or 0 at end of input, is
 * returned.
 */
int pgc_allocate(pgc_memfile *mf, uint64_t length,
		 const struct pgc_alloc_opts *opts, pgc_range *out);

/*
 * Reference counting. Ranges must be page-aligned, non-empty and entirely
 * allocated (refs > 0); otherwise -EINVAL and nothing changes (debug
 * builds assert). pgc_decref on pages whose background load has not
 * started cancels that load.
 */
int pgc_incref(pgc_memfile *mf, pgc_range r, uint32_t memcg_id);
int pgc_decref(pgc_memfile *mf, pgc_range r);

/* Returns 1 if every page in @r has exactly one reference, 0 if not, -EINVAL. */
int pgc_has_unique_ref(pgc_memfile *mf, pgc_range r);

/*
 * pgc_decommit - release the contents of @r; later reads see zeroes. During
 * a background load the pages of @r whose load has not started are
 * cancelled and reads already writing into @r are waited for, so the load
 * never brings them back.
 * Returns 0, -EINVAL for a bad range, -EBADF for a read-only file, or
 * -errno from fallocate.
 */
int pgc_decommit(pgc_memfile *mf, pgc_range r);

/*
 * pgc_map_internal - map @r into this process for @access and describe it
 * as up to @iovcnt iovecs (one per 1 GiB chunk touched). If @r has pages
 * still being loaded in the background, waits for exactly those pages
 * (they jump the loader's queue), unless PGC_ACCESS_NOWAIT.
 * Returns the number of iovecs filled; -EAGAIN (PGC_ACCESS_NOWAIT: some
 * of @r is still to come); -EACCES for PGC_ACCESS_EXEC;
 * -EINVAL for an empty range; -ENOBUFS if @iovcnt is too small; the load
 * error if the background load failed on these pages; -errno from mmap.
 */
int pgc_map_internal(pgc_memfile *mf, pgc_range r, int access,
		     struct iovec *iov, int iovcnt);

/* ------------------------------------------------------------------------ */
/* Usage and accounting                                                      */
/* ------------------------------------------------------------------------ */

#define PGC_MEMCG_ALL UINT32_MAX

struct pgc_accounting {
	uint64_t kind[PGC_KIND_COUNT]; /* committed bytes by kind */
	uint64_t total;                /* sum of kind[] */
	uint64_t reserved[8];      /* zero; "Structs that grow" (top) */
};

/*
 * pgc_update_usage - bring the committed-page accounting up to date by
 * scanning (mincore) the segments not known to be committed. @memcg_ids
 * (n entries) limits the scan to those cgroups; NULL scans everything.
 * Returns 0 or -errno.
 */
int pgc_update_usage(pgc_memfile *mf, const uint32_t *memcg_ids, size_t n);

/* pgc_total_usage - bytes of the backing file the host stores (fstat blocks). */
int pgc_total_usage(pgc_memfile *mf, uint64_t *out);

/*
 * pgc_accounting - committed bytes by kind, for one memcg id or for
 * PGC_MEMCG_ALL, as of the last pgc_update_usage(). Returns 0.
 */
int pgc_accounting(pgc_memfile *mf, uint32_t memcg_id, struct pgc_accounting *out);

/* ------------------------------------------------------------------------ */
/* Evictable memory                                                          */
/* ------------------------------------------------------------------------ */

/*
 * A user of evictable memory. The MemoryFile calls @evict without holding
 * any of its locks, possibly after a racing pgc_mark_unevictable(); the
 * user must then make it a no-op. Ranges are in the user's own offsets.
 */
typedef struct pgc_evictable_user pgc_evictable_user;
struct pgc_evictable_user {
	void (*evict)(pgc_evictable_user *user, pgc_range er);
};

/* Returns 0, -EINVAL for an empty range, -ENOMEM. */
int pgc_mark_evictable(pgc_memfile *mf, pgc_evictable_user *user, pgc_range er);
int pgc_mark_unevictable(pgc_memfile *mf, pgc_evictable_user *user, pgc_range er);
void pgc_mark_all_unevictable(pgc_memfile *mf, pgc_evictable_user *user);
void pgc_start_evictions(pgc_memfile *mf);
void pgc_wait_for_evictions(pgc_memfile *mf);
bool pgc_should_cache_evictable(pgc_memfile *mf);

/* ------------------------------------------------------------------------ */
/* Segments (read-only view of the usage set)                                */
/* ------------------------------------------------------------------------ */

struct pgc_segment {
	pgc_range range;
	enum pgc_kind kind;
	uint64_t refs;           /* 0: freed, waiting for the reclaimer */
	uint32_t memcg_id;
	bool known_committed;
};

/*
 * pgc_for_each_segment - call @fn for every usage segment in offset order
 * under the MemoryFile's lock (@fn must not call back into @mf). Stops
 * early and returns @fn's value when it is non-zero; returns 0 otherwise.
 */
int pgc_for_each_segment(pgc_memfile *mf,
			 int (*fn)(void *arg, const struct pgc_segment *seg),
			 void *arg);

/* ------------------------------------------------------------------------ */
/* Images: save and load                                                     */
/* ------------------------------------------------------------------------ */

enum pgc_compress {
	PGC_COMPRESS_ZSTD = 0,
	PGC_COMPRESS_NONE,
};

/* Progress callback: @done of @total bytes processed. Never called with locks held. */
typedef void (*pgc_progress_fn)(void *arg, uint64_t done, uint64_t total);

struct pgc_save_opts {
	enum pgc_compress compress;
	int level;               /* zstd level 1..19 (default 1) */
	uint32_t block_size;     /* bytes of memory per block, page multiple <= 4 MiB (default 1 MiB) */
	int jobs;                /* compression threads (default: online CPUs; at most 64 used) */
	const char *aio;         /* "auto", "threads", "libaio", "uring"; NULL: $PGCKPT_AIO or auto */
	bool decommit_zero;      /* punch out zero pages found in the live file */
	uint64_t logical_size;   /* size to record for the source (default: total size) */
	pgc_progress_fn progress;
	void *progress_arg;
	/*
	 * An image to save against (NULL: a standalone image): the new image
	 * stores only the pages whose content differs from the parent's and
	 * references the others; it records the parent's path relative to
	 * its own directory and the parent's identity. The parent is only
	 * read, and must use the same compression. Chains are at most
	 * PGC_MAX_DEPTH images below their root.
	 */
	const char *parent;
	uint64_t reserved[7];      /* must be zero; "Structs that grow" (top) */
};

/* Most ancestors an image may have (a chain holds at most 17 images). */
#define PGC_MAX_DEPTH 16

void pgc_save_opts_init(struct pgc_save_opts *opts);

/*
 * pgc_save - write @mf to the image directory @path atomically (built in a
 * temporary sibling, fsynced, renamed over @path). Waits for a background
 * load first. @path may name nothing, an empty directory or an image
 * directory holding only an image's own files. As gVisor's SaveTo, it
 * first brings the commitment of every allocated segment in line with
 * what is stored (non-zero pages are known committed, zero pages and
 * holes are not), so the image and the accounting of @mf record what the
 * image really holds.
 * Returns 0; -EPERM if @mf was not marked with pgc_mark_savable(); or
 * -errno: -ENOSPC, -EIO, ...; -EEXIST or -ENOTDIR if @path is something
 * else, -ENOTEMPTY if it is an image with other files beside it; -E2BIG
 * for more than PGC_MAX_SEGMENTS usage segments; -ENODATA if an adopted
 * file shrank while it was read. With a parent: -PGC_E* if it (or an
 * ancestor) is not a sound image, -PGC_ELIMIT if it already has
 * PGC_MAX_DEPTH ancestors, -EINVAL if its compression differs, -ELOOP if
 * @path is the parent or one of its ancestors. On failure no image
 * appears under @path and an existing one is left untouched.
 */
int pgc_save(pgc_memfile *mf, const char *path, const struct pgc_save_opts *opts);

/*
 * A pages source: reads of an image's pages.img by byte range, for
 * images kept elsewhere than in a file (the command's s3:// images).
 * read() is called from several loader threads at once, each read
 * blocking: @len bytes at @off of the pages.img of the image @depth
 * links up its chain (0: the image loaded, 1: its parent, ...) into
 * @buf. It returns @len, fewer only at the end of the data, or -errno
 * (the load's error: no page is placed from a failed read). A background load's waiter asks for one block at
 * a time; the fill asks for up to pgc_load_opts.max_read bytes of
 * consecutive blocks, with at most jobs reads in flight. The source must
 * stay valid until the load has ended (pgc_load_await).
 */
struct pgc_pages_source {
	ssize_t (*read)(void *arg, uint32_t depth, void *buf, size_t len, uint64_t off);
	void *arg;
	/*
	 * Optional (NULL: none): called from a loader thread for each block
	 * that read() returned and that passed its checksum, with its stored
	 * bytes (@len at @off of @depth's pages.img), before the buffer is
	 * reused; a cache keeps them. It cannot fail the load.
	 */
	void (*verified)(void *arg, uint32_t depth, const void *buf, size_t len, uint64_t off);
	uint64_t reserved[5];      /* must be zero; "Structs that grow" (top) */
};

struct pgc_load_opts {
	int jobs;                /* decompression threads (default: online CPUs; at most 64 used) */
	const char *aio;         /* as in pgc_save_opts; checked always, used by background loads only */
	bool background;         /* return after the metadata; load pages in the background */
	bool direct;             /* O_DIRECT reads of raw images */
	uint32_t max_read;       /* bytes per merged read (default 256 KiB, at most 64 MiB) */
	uint32_t max_iovecs;     /* iovecs per read (default 64, at most 1024) */
	/*
	 * Most reads in flight (default 128, at most 4096). Read buffers are
	 * also held to 8 MiB, which allows 8 MiB / max(max_read, largest
	 * stored block) reads (at least 2): 8 with the default 1 MiB blocks.
	 */
	uint32_t max_inflight;
	/*
	 * Called once from the loader thread when the load ends (0 or its
	 * error), before pgc_load_await returns; it must not call
	 * pgc_load_await or pgc_memfile_destroy itself.
	 */
	void (*done)(void *arg, int err);
	void *done_arg;
	pgc_progress_fn progress;
	void *progress_arg;
	/*
	 * A working-set file (pgc_load_ws_write) whose blocks a background
	 * load reads first, in order, after any page being waited for. One
	 * of another image, damaged, truncated or empty is ignored (never
	 * an error): stats.working_set_error says why.
	 */
	const char *working_set;
	/* Record the blocks demanded, in order, for pgc_load_ws_write. */
	bool record_working_set;
	/*
	 * Where the pages.img bytes of the image and of its ancestors come
	 * from (NULL: the files). Each image directory of the chain still
	 * holds a pages.img of the right size (it may be sparse: its bytes
	 * are not read). Every block read is checked against the index's
	 * checksum as usual.
	 */
	const struct pgc_pages_source *pages_source;
	uint64_t reserved[5];      /* must be zero; "Structs that grow" (top) */
};

void pgc_load_opts_init(struct pgc_load_opts *opts);

/*
 * pgc_load - restore the image at @path into @mf, which must have no
 * allocations. Usage segments, refs, kinds and memcg ids come back as
 * saved. Eager: returns when every page is in memory. Background: returns
 * after the metadata; pages arrive in the background and
 * pgc_map_internal (or pgc_load_wait) waits for the ones it needs.
 * Returns 0; -EINVAL for bad options (an unknown aio backend, a limit
 * exceeded), -EBADF for a read-only @mf, -EBUSY if @mf is not empty;
 * -PGC_E* for a bad image; or -errno. On failure @mf is left empty (no
 * segments, size 0), as it was, and may be loaded again.
 */
int pgc_load(pgc_memfile *mf, const char *path, const struct pgc_load_opts *opts);

/*
 * pgc_load_await - wait until a background load has finished and its done
 * callback has returned.
 * Returns 0 (also when no load was started) or the load's error.
 */
int pgc_load_await(pgc_memfile *mf);

/*
 * pgc_load_wait - wait until every page of @r (any byte range inside the
 * file) is loaded, without mapping it: for callers that use the file
 * through pgc_memfile_fd(). The unloaded pages of @r jump the loader's
 * queue, as for pgc_map_internal. Lock-free once @r is loaded.
 * Returns 0 when @r is loaded (at once when no load was started or the
 * load has finished); -EINVAL for a NULL @mf or an empty range or one
 * past the end of the file; the load's error if it failed before @r was
 * loaded (-ECANCELED once pgc_memfile_destroy has begun).
 */
int pgc_load_wait(pgc_memfile *mf, pgc_range r);

struct pgc_load_stats {
	uint64_t bytes_total;    /* bytes the image holds */
	uint64_t bytes_loaded;
	uint64_t bytes_cancelled;/* dropped by pgc_decref before loading */
	uint64_t waits;          /* pgc_map_internal calls that had to wait */
	uint64_t bytes_waited;   /* bytes those calls waited for */
	uint64_t ns_waited;      /* total time spent waiting */
	uint64_t ns_elapsed;     /* load start to end (or to now) */
	bool done;
	int error;
	uint64_t working_set_blocks;  /* blocks of opts.working_set read first (0: none) */
	int working_set_error;     /* why opts.working_set was ignored: -PGC_E*, -ESTALE
				      (another image's), -ENODATA (empty), -errno; 0 if used */
	uint64_t demand_decodes;   /* blocks a waiter read and decoded itself, not queued */
	uint64_t demand_partial;   /* of those, decoded only up to its pages (a worker ends them) */
	uint64_t reserved[4];      /* zero; "Structs that grow" (top) */
};

/* pgc_load_stats - statistics of the current or last load. Returns 0. */
int pgc_load_stats(pgc_memfile *mf, struct pgc_load_stats *out);

/*
 * pgc_load_ws_write - write the working set the load into @mf recorded so
 * far (opts.record_working_set): the blocks and the pages demanded through
 * pgc_map_internal, pgc_load_wait (not PGC_ACCESS_NOWAIT) or
 * pgc_load_ws_demand, in the order first demanded, as a working-set file bound to the image (docs/format.md).
 * Atomic: @path is replaced whole or not at all.
 * Returns 0; -EINVAL (no load, or it does not record); -ENODATA (nothing
 * demanded yet, nothing written); -ENOMEM; -errno (-ENOSPC, -EIO, ...).
 */
int pgc_load_ws_write(pgc_memfile *mf, const char *path);

/*
 * pgc_load_working_set - the working set the load into @mf replays
 * (opts.working_set), as memory-file ranges in its order: its recorded
 * pages (consecutive ones in one range), or for a working set written
 * before pages were recorded, one range per block (from its first stored
 * page to its last): the first @max go to @out.
 * For a lazy server, which places them before they are demanded.
 * Returns the number of ranges (0: none replayed), or -EINVAL.
 */
int pgc_load_working_set(pgc_memfile *mf, pgc_range *out, size_t max);

/*
 * pgc_load_ws_demand - a demand that the load into @mf cannot see for
 * itself: the page at memory-file offset @off was asked for (a lazy
 * server calls it for each page a consumer faults on). A load that
 * records a working set notes that exact page; from the first call on,
 * what pgc_map_internal maps counts as a demand of its blocks only, not of
 * each of its pages (a server maps more around a fault than was asked
 * for). @off UINT64_MAX notes nothing and only asks.
 * Returns 1 (the load records a working set), 0 (it does not, or @mf has
 * no load), or -EINVAL (@mf NULL).
 */
int pgc_load_ws_demand(pgc_memfile *mf, uint64_t off);

/* Image summary for inspect. */
struct pgc_image_info {
	uint32_t version;
	uint64_t file_size;       /* memory file size (logical) */
	uint64_t mem_bytes;       /* bytes of non-zero pages stored */
	uint64_t pages_bytes;     /* size of pages.img */
	uint64_t segments;
	uint64_t blocks;          /* blocks in pages.img (a child's own) */
	uint32_t block_size;
	enum pgc_compress compress;
	int level;
	uint64_t depth;           /* ancestors: 0 standalone, 1 a parent, ... */
	uint64_t reserved[7];      /* zero; "Structs that grow" (top) */
};

/*
 * pgc_image_info - read the metadata of the image at @path. Returns 0,
 * -PGC_E* for a bad image, or -errno.
 */
int pgc_image_info(const char *path, struct pgc_image_info *out);

/*
 * pgc_image_parent - the path of the parent of the image at @path (its
 * recorded path joined to @path's directory), into @buf of @len bytes,
 * and whether the parent is sound: openable alone and the very image the
 * child was saved against.
 * Returns 0 (a sound parent), -PGC_EPARENT (missing, damaged or another
 * image: @buf still names it), -ENODATA (a standalone image), -ERANGE
 * (@buf too short), -PGC_E* for a bad image at @path, or -errno.
 */
int pgc_image_parent(const char *path, char *buf, size_t len);

/*
 * pgc_image_verify - check every checksum of the image at @path and of
 * each of its ancestors, decoding each block, and that each pagemap.img
 * is the pagemap its index gives.
 * Returns 0, -PGC_E* for a bad image (-PGC_EPARENT: an ancestor is
 * missing, damaged or not the one recorded), or -errno.
 */
int pgc_image_verify(const char *path, pgc_progress_fn progress, void *arg);

/* pgc_image_export_criu flags */
#define PGC_EXPORT_FORCE 1u  /* replace existing entries (never writing through them) */

/*
 * pgc_image_export_criu - write a CRIU pagemap.img and raw pages-1.img of
 * the image at @path into directory @dir (created mode 0700 if missing);
 * for a child, of every page its chain holds (as for its flattened image).
 * Both are new files, mode 0600, written under temporary names and renamed
 * into place; an existing file, symlink or anything else at either name is
 * never opened or written. Without PGC_EXPORT_FORCE an existing name is
 * refused with -EEXIST before anything is written; with it, the entry is
 * replaced by the rename.
 * Returns 0, -PGC_E* (-PGC_EPARENT: an ancestor missing, damaged or not
 * the one recorded), -EINVAL (unknown @flags), or -errno.
 */
int pgc_image_export_criu(const char *path, const char *dir, unsigned flags);

/* pgc_ws_merge: at most this many inputs. */
#define PGC_WS_MERGE_MAX 4096

/*
 * pgc_ws_merge - merge the working-set files @inputs[0..n) (recordings of
 * restores of the image at @image, pgc_load_ws_write) into one at @out:
 * every block any of them holds; those that more recordings hold first,
 * then by their mean position in those recordings (earlier first), then
 * in offset order. Unlike a load's opts.working_set, a hint ignored when
 * bad, every input must be a working set of @image. @out is replaced
 * whole or not at all (it may be one of the inputs).
 * Returns 0; -EINVAL (no input, more than PGC_WS_MERGE_MAX, a NULL);
 * the image's error as pgc_image_verify's; an input's as
 * pgc_load_stats.working_set_error gives it (-ESTALE: another image's,
 * -ENODATA: empty, -PGC_ECORRUPT, -PGC_ECHECKSUM, -PGC_ETRUNCATED, -errno)
 * with *@bad its index (else *@bad = @n; @bad may be NULL); -ENOMEM; or
 * -errno writing @out.
 */
int pgc_ws_merge(const char *image, const char *const *inputs, size_t n, const char *out,
		 size_t *bad);

/* ------------------------------------------------------------------------ */
/* Lazy restore for other processes (userfaultfd)                            */
/* ------------------------------------------------------------------------ */

struct pgc_lazy_region {
	void *addr;              /* consumer address (page aligned) */
	uint64_t size;           /* bytes */
	uint64_t offset;         /* memory-file offset of addr */
};

/*
 * pgc_lazy_attach - consumer side of the Firecracker UFFD handoff: create
 * a userfaultfd, register @regions in MISSING mode, send them as JSON with
 * the uffd over the unix socket @socket_path. A process without the
 * privilege to handle kernel faults gets a user-mode-only uffd: a kernel
 * access to a page not yet in place then fails with EFAULT (docs/lazy.md).
 * Returns the uffd (>= 0, kept open by the caller for the life of the
 * mappings) or -errno.
 */
int pgc_lazy_attach(const char *socket_path, const struct pgc_lazy_region *regions,
		    size_t nregions);

/*
 * The page server: restore an image into a MemoryFile with background
 * loading (pgc_load, opts.background), listen on a unix socket, and hand
 * each consumer that connects to pgc_lazy_serve_conn (one thread per
 * consumer; sessions may share the MemoryFile). docs/lazy.md describes the
 * protocol and the server's behaviour.
 */
struct pgc_lazy_serve_opts {
	uint64_t fault_bytes;      /* bytes served around a fault: power of two, 4 KiB..4 MiB (64 KiB) */
	uint64_t push_bytes;       /* bytes per background push step: power of two, 4 KiB..4 MiB (1 MiB) */
	bool no_push;              /* serve faults only: no background push (a baseline) */
	int accept_timeout_ms;     /* pgc_lazy_serve: wait for a consumer (-1: forever) */
	int handshake_timeout_ms;  /* wait for the handoff message (1000; -1: forever) */
	int cancel_fd;             /* -1, or an fd whose readability stops serving (-ECANCELED) */
	/*
	 * Peers (SO_PEERCRED uid) that may hand over a uffd besides root and
	 * this process's effective uid, which always may: @nallow_uids
	 * entries of @allow_uids (NULL: nobody else).
	 */
	const uint32_t *allow_uids;
	size_t nallow_uids;
	uint64_t reserved[6];      /* must be zero; "Structs that grow" (top) */
};

/* Fill @o with the defaults above (cancel_fd -1, accept timeout -1). */
void pgc_lazy_serve_opts_init(struct pgc_lazy_serve_opts *o);

struct pgc_lazy_stats {
	uint64_t regions;
	uint64_t bytes_total;      /* bytes of all regions */
	uint64_t faults;           /* UFFD_EVENT_PAGEFAULT messages */
	uint64_t removes;          /* UFFD_EVENT_REMOVE messages */
	uint64_t bytes_copied;     /* placed with UFFDIO_COPY (faults and push) */
	uint64_t bytes_zeroed;     /* placed with UFFDIO_ZEROPAGE */
	uint64_t bytes_pushed;     /* of those, by the background push */
	uint64_t eexist;           /* pages found already present */
	uint64_t fault_ns_total;   /* fault message read to its page in place */
	uint64_t fault_ns_max;
	uint64_t ns_all_placed;    /* handoff to every page placed (0: never) */
	uint64_t ns_session;       /* handoff to end of session */
	bool consumer_gone;        /* ended because the consumer went away */
	uint64_t forks;            /* UFFD_EVENT_FORK messages: the child's uffd is closed */
	uint64_t bytes_prefetched; /* of bytes_pushed, the load's working set placed first */
	uint64_t push_yields;      /* pushes cut short (after a 64 KiB slice) for a waiting fault */
	uint64_t reserved[5];      /* zero; "Structs that grow" (top) */
};

/*
 * pgc_lazy_listen - create a unix stream socket bound to @path, mode 0600
 * whatever the umask (bound inside a new 0700 directory beside @path, then
 * renamed into place), and listening. A socket file at @path is replaced
 * only if it is stale (nobody accepts on it).
 * Returns the fd (O_CLOEXEC) or -errno: -EINVAL for an empty path,
 * -ENAMETOOLONG for a path that does not fit sun_path, -EEXIST if @path
 * exists and is not a socket, -EADDRINUSE if a server listens on it, or
 * the errno of mkdtemp/socket/bind/rename/listen. The caller unlinks @path
 * when done.
 */
int pgc_lazy_listen(const char *path);

/*
 * Receiving a handoff without blocking, so that one thread can wait for
 * many consumers at once and a silent one holds up nobody: create a
 * pgc_lazy_conn for each accepted connection, poll their fds for POLLIN
 * and call pgc_lazy_conn_recv when one is readable; once it returns 1,
 * pgc_lazy_serve_ready serves the consumer (from any thread). The caller
 * enforces its own handshake deadline by freeing connections that take
 * too long.
 */
typedef struct pgc_lazy_conn pgc_lazy_conn;

/*
 * pgc_lazy_conn_new - start receiving the handoff on the connected socket
 * @conn, which the pgc_lazy_conn owns from now on (closed by
 * pgc_lazy_conn_free, or by pgc_lazy_serve_ready). The peer's credentials
 * are read first: only root, this process's effective uid and
 * @opts->allow_uids may hand over a uffd (@opts may be NULL).
 * Returns 0 and *@out; -EACCES for a peer that is not allowed (*@out is
 * still set, so that the caller can name the peer, and must be freed);
 * -EINVAL; -ENOMEM (@conn is closed, *@out is NULL).
 */
int pgc_lazy_conn_new(int conn, const struct pgc_lazy_serve_opts *opts, pgc_lazy_conn **out);

/* pgc_lazy_conn_fd - the socket to poll for POLLIN. */
int pgc_lazy_conn_fd(const pgc_lazy_conn *c);

/* pgc_lazy_conn_peer - the peer's pid and uid (SO_PEERCRED; 0 and UINT32_MAX if unknown). */
void pgc_lazy_conn_peer(const pgc_lazy_conn *c, long *pid, uint32_t *uid);

/*
 * pgc_lazy_conn_recv - read what has arrived, without blocking.
 * Returns 1 when the handoff is complete, 0 when more must arrive, or the
 * handshake errors of pgc_lazy_serve_conn: -EPROTO, -EINVAL, or -errno.
 */
int pgc_lazy_conn_recv(pgc_lazy_conn *c);

/* pgc_lazy_conn_free - close and free @c (may be NULL). */
void pgc_lazy_conn_free(pgc_lazy_conn *c);

/*
 * pgc_lazy_serve_ready - serve the consumer whose complete handoff @c
 * holds, as pgc_lazy_serve_conn does after its handshake; frees @c.
 * Returns as pgc_lazy_serve_conn (-EINVAL also if @c is not complete).
 */
int pgc_lazy_serve_ready(pgc_memfile *mf, pgc_lazy_conn *c,
			 const struct pgc_lazy_serve_opts *opts, struct pgc_lazy_stats *stats);

/*
 * pgc_lazy_serve - accept one consumer on @listen_fd (waiting at most
 * opts->accept_timeout_ms) and serve it as pgc_lazy_serve_conn.
 * Returns as pgc_lazy_serve_conn, or -ETIMEDOUT if no consumer connected
 * in time, or -errno from poll/accept.
 */
int pgc_lazy_serve(pgc_memfile *mf, int listen_fd, const struct pgc_lazy_serve_opts *opts,
		   struct pgc_lazy_stats *stats);

/*
 * pgc_lazy_serve_conn - receive the handoff on the connected socket @conn
 * (closed before returning) and serve the consumer's page faults from @mf,
 * which may still be loading in the background: a fault maps the aligned
 * fault_bytes around it (so it jumps the loader's queue) and places it with
 * UFFDIO_COPY, or UFFDIO_ZEROPAGE for holes and zero pages; meanwhile every
 * other page is pushed in memory-file offset order. After UFFD_EVENT_REMOVE
 * the removed pages are served as zeros. When every page is placed, the
 * regions are unregistered from the uffd (later misses are ordinary zero
 * faults) and the session ends. The new uffd of a UFFD_EVENT_FORK (a
 * consumer that enabled UFFD_FEATURE_EVENT_FORK and forked) is closed at
 * once and counted in stats->forks: the child is not served.
 * Several sessions may serve the same @mf concurrently from different
 * threads. @opts and @stats may be NULL.
 * Returns 0 when the session ended normally (all placed, or the consumer
 * went away: stats->consumer_gone); -EACCES (the peer's uid is not
 * allowed, see pgc_lazy_conn_new), -EPROTO (no fd, several fds, not a
 * userfaultfd, peer closed early), -EINVAL (bad @opts, bad JSON, regions
 * overlapping or outside the memory file), -EOPNOTSUPP (page_size other than 4 KiB), -ETIMEDOUT
 * (no handoff in time), -ECANCELED (cancel_fd), the load error if the
 * background load failed (the consumer's faulting threads then stay
 * blocked: never wrong memory; the caller should stop the consumer), or
 * another -errno.
 */
int pgc_lazy_serve_conn(pgc_memfile *mf, int conn, const struct pgc_lazy_serve_opts *opts,
			struct pgc_lazy_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* PGCKPT_H */
