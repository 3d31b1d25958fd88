# SPDX-License-Identifier: Apache-2.0
#
# pgckpt build. Sources are found by directory, so adding a file needs no
# edit here:
#   src/{util,alloc,aio,statefile,engine,lazy}/*.c -> libpgckpt.a / libpgckpt.so
#   src/libpgckpt.map                   -> the .so's exports (the API only)
#   src/statefile/*.proto               -> protoc-c, compiled into the library
#   src/cli/*.c                         -> $(B)/pgckpt
#   src/s3/*.c (libcurl)                -> linked into $(B)/pgckpt and the
#                                          unit tests, not into the library
#   tests/unit/*.c                      -> $(B)/tests/NAME (one program per area)
#   bench/*.c, examples/*.c             -> $(B)/bench/NAME, $(B)/examples/NAME
#                                          (examples with include/ only)
# Variants: `make DEBUG=1` (assertions, -O0), `make asan`, `make tsan`
# (each builds into its own directory and runs the whole test suite).
# Quiet unless V=1; WERROR=1 (set by CI) adds -Werror.

B        ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= cc
PKGS     := liburing libzstd libprotobuf-c libxxhash
SAN      ?=

ifeq ($(V),1)
Q :=
else
Q := @
endif

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Wvla -Wno-missing-field-initializers
ifeq ($(WERROR),1)
WARN     += -Werror
endif

ifeq ($(DEBUG),1)
OPT      := -O0 -g3 -DPGC_DEBUG
else
OPT      := -O2 -g
endif
ifeq ($(SAN),asan)
OPT      := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN    := -fsanitize=address,undefined
endif
ifeq ($(SAN),tsan)
OPT      := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
LDSAN    := -fsanitize=thread
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -laio -lpthread
S3_LIBS    := $(shell pkg-config --libs libcurl 2>/dev/null)

CPPFLAGS += -D_GNU_SOURCE -Iinclude -Isrc -I$(B)/gen $(PKG_CFLAGS) \
            $(shell pkg-config --cflags libcurl 2>/dev/null)
CFLAGS   += -std=c11 $(OPT) $(WARN) -fPIC -MMD -MP
LDFLAGS  += $(LDSAN)
LDLIBS   += $(PKG_LIBS)

PROTOS     := $(wildcard src/statefile/*.proto)
PROTO_C    := $(PROTOS:src/%.proto=$(B)/gen/%.pb-c.c)
PROTO_H    := $(PROTO_C:.c=.h)
LIB_SRCS   := $(wildcard src/util/*.c src/alloc/*.c src/engine/*.c src/aio/*.c src/statefile/*.c src/lazy/*.c)
LIB_OBJS   := $(LIB_SRCS:%.c=$(B)/%.o) $(PROTO_C:.c=.o)
CLI_OBJS   := $(patsubst %.c,$(B)/%.o,$(wildcard src/cli/*.c))
S3_OBJS    := $(patsubst %.c,$(B)/%.o,$(wildcard src/s3/*.c))
TEST_SRCS  := $(wildcard tests/unit/*.c)
TESTS      := $(TEST_SRCS:tests/unit/%.c=$(B)/tests/%)
BENCH_SRCS := $(wildcard bench/*.c)
BENCHES    := $(BENCH_SRCS:bench/%.c=$(B)/bench/%)
EX_SRCS    := $(wildcard examples/*.c)
EXAMPLES   := $(EX_SRCS:examples/%.c=$(B)/examples/%)

LIBA  := $(B)/libpgckpt.a
LIBSO := $(B)/libpgckpt.so
LIBMAP := src/libpgckpt.map
CLI   := $(B)/pgckpt

.PHONY: all check unit bats asan tsan bench demo install clean fuzz fuzz-check
.SECONDARY: $(PROTO_C) $(PROTO_H)
.DELETE_ON_ERROR:

all: $(LIBA) $(LIBSO) $(CLI) $(TESTS) $(BENCHES) $(EXAMPLES)

$(B)/gen/%.pb-c.c $(B)/gen/%.pb-c.h: src/%.proto
	@mkdir -p $(dir $@)
	@echo "  PROTOC  $<"
	$(Q)protoc-c --proto_path=src --c_out=$(B)/gen $<

# Every object may include generated headers: build them first.
$(B)/%.o: %.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# An example sees only include/pgckpt.h, as a program of yours would:
# no -Isrc (tests/static/layering.sh checks its #includes too).
EX_CPPFLAGS := $(filter-out -Isrc -I$(B)/gen,$(CPPFLAGS))
$(B)/examples/%.o: examples/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(EX_CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(B)/gen/%.o: $(B)/gen/%.c
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(filter-out $(WARN),$(CFLAGS)) -w -c -o $@ $<

$(LIBA): $(LIB_OBJS)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

# The .so exports only what $(LIBMAP) lists (tests/static/exports.sh
# checks it against include/pgckpt.h); the .a keeps every symbol for the
# unit tests.
$(LIBSO): $(LIB_OBJS) $(LIBMAP)
	@echo "  LD      $@"
	$(Q)$(CC) -shared -Wl,-soname,libpgckpt.so.0 -Wl,--version-script=$(LIBMAP) \
		$(LDFLAGS) -o $@ $(LIB_OBJS) $(LDLIBS)

$(CLI): $(CLI_OBJS) $(S3_OBJS) $(LIBA)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(S3_OBJS) $(LIBA) $(LDLIBS) $(S3_LIBS)

$(TESTS): $(B)/tests/%: $(B)/tests/unit/%.o $(LIBA) $(S3_OBJS)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(LIBA) $(S3_OBJS) $(LDLIBS) $(S3_LIBS)

$(BENCHES): $(B)/bench/%: $(B)/bench/%.o $(LIBA)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(LIBA) $(LDLIBS)

$(EXAMPLES): $(B)/examples/%: $(B)/examples/%.o $(LIBA)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(LIBA) $(LDLIBS)

# ---- fuzzing ---------------------------------------------------------------
# tests/fuzz/fuzz_NAME.c are libFuzzer harnesses. The normal build links each
# with tests/fuzz/replay.c into $(B)/tests/fuzz_replay_NAME, which replays
# tests/fuzz/corpus/NAME/ (so `make check` does). `make fuzz` builds them
# with clang -fsanitize=fuzzer,address,undefined into $(B)/fuzz/ and runs
# each for FUZZ_SECONDS, new inputs going to $(B)/fuzz/corpus-NAME/.
# `make fuzz-seeds` rewrites the image seeds from images the library saves.
FUZZ_SRCS    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES   := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=%)
REPLAYS      := $(FUZZ_NAMES:%=$(B)/tests/fuzz_replay_%)
FUZZERS      := $(FUZZ_NAMES:%=$(B)/fuzz/fuzz_%)
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_OPT     := -std=c11 -O1 -g -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJS    := $(LIB_SRCS:%.c=$(B)/fuzz/obj/%.o) $(PROTO_C:$(B)/gen/%.c=$(B)/fuzz/obj/gen/%.o)

.PHONY: fuzz-seeds
all: $(REPLAYS)

$(REPLAYS): $(B)/tests/fuzz_replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(LIBA)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(CPPFLAGS) $(filter-out -MMD -MP,$(CFLAGS)) $(LDFLAGS) -DREPLAY \
		-DFUZZ_NAME='"$*"' -o $@ tests/fuzz/fuzz_$*.c tests/fuzz/replay.c $(LIBA) $(LDLIBS)

$(B)/fuzz/obj/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_OPT) -fsanitize=fuzzer-no-link -w -c -o $@ $<

$(B)/fuzz/obj/%.o: %.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	@echo "  FUZZCC  $<"
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_OPT) $(WARN) -MMD -MP -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZERS): $(B)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJS)
	@echo "  FUZZLD  $@"
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_OPT) $(WARN) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) $(LDLIBS)

$(B)/fuzz/mkcorpus: tests/fuzz/mkcorpus.c $(LIBA)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(filter-out -MMD -MP,$(CFLAGS)) $(LDFLAGS) -o $@ $< $(LIBA) $(LDLIBS)

fuzz-seeds: $(B)/fuzz/mkcorpus
	$(Q)$(B)/fuzz/mkcorpus tests/fuzz/corpus/image

fuzz: $(FUZZERS)
	$(Q)for f in $(FUZZ_NAMES); do \
		mkdir -p $(B)/fuzz/corpus-$$f && \
		$(B)/fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
			-rss_limit_mb=2048 -timeout=10 -artifact_prefix=$(B)/fuzz/$$f- \
			$(B)/fuzz/corpus-$$f tests/fuzz/corpus/$$f || exit 1; \
	done

# fuzz-check: each fuzzer for FUZZ_SECONDS from the checked-in corpus (CI
# runs it briefly on every change), then one "N passed, N failed" line.
fuzz-check: $(FUZZERS)
	$(Q)p=0; f=0; for n in $(FUZZ_NAMES); do \
		mkdir -p $(B)/fuzz/corpus-$$n; \
		if $(B)/fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
			-rss_limit_mb=2048 -timeout=10 -artifact_prefix=$(B)/fuzz/$$n- \
			-print_final_stats=1 $(B)/fuzz/corpus-$$n tests/fuzz/corpus/$$n \
			>$(B)/fuzz/$$n.log 2>&1; then \
			echo "ok fuzz_$$n: $$(grep -o 'stat::number_of_executed_units: *[0-9]*' \
				$(B)/fuzz/$$n.log | grep -o '[0-9]*$$') inputs in $(FUZZ_SECONDS) s"; \
			p=$$((p + 1)); \
		else \
			echo "not ok fuzz_$$n"; tail -n 40 $(B)/fuzz/$$n.log; f=$$((f + 1)); \
		fi; \
	done; echo "$$p passed, $$f failed"; [ $$f -eq 0 ]

# ---- tests -----------------------------------------------------------------

check: all
	$(Q)B=$(B) CC="$(CC)" LDFLAGS="$(LDFLAGS)" tests/run-all.sh

unit: all
	$(Q)B=$(B) tests/run-all.sh --unit

bats: all
	$(Q)B=$(B) tests/run-all.sh --bats

asan:
	$(Q)$(MAKE) --no-print-directory B=build/asan SAN=asan check

# TSan waits 1 s at every exit while other threads run (atexit_sleep_ms),
# and every pgckpt has its signal thread: 0 saves ~5 minutes of bats.
tsan:
	$(Q)TSAN_OPTIONS="atexit_sleep_ms=0 $${TSAN_OPTIONS:-}" \
		$(MAKE) --no-print-directory B=build/tsan SAN=tsan check

bench: all
	$(Q)B=$(B) bench/run.sh

demo: all
	$(Q)B=$(B) bench/demo.sh

# ---- install ---------------------------------------------------------------

install: $(LIBA) $(LIBSO) $(CLI)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
		$(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/pgckpt
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/libpgckpt.a
	install -m 755 $(LIBSO) $(DESTDIR)$(PREFIX)/lib/libpgckpt.so.0
	ln -sf libpgckpt.so.0 $(DESTDIR)$(PREFIX)/lib/libpgckpt.so
	install -m 644 include/pgckpt.h $(DESTDIR)$(PREFIX)/include/pgckpt.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(shell sed -n 's/.*PGC_VERSION_STRING "\(.*\)"/\1/p' include/pgckpt.h)|' \
		pgckpt.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/pgckpt.pc
	[ ! -f docs/pgckpt.1 ] || install -m 644 docs/pgckpt.1 $(DESTDIR)$(PREFIX)/share/man/man1/pgckpt.1

clean:
	rm -rf build

-include $(shell find $(B) -name '*.d' 2>/dev/null)
