# Thin wrapper over Meson so a newcomer types `make demo` or `make check`.
# Build variants live in their own directories: build/ (release),
# build-asan/ (ASan+UBSan, debug), build-fuzz/ (clang + libFuzzer).

MESON ?= meson
NINJA ?= ninja
SHARED_DATA ?= $(abspath ../shared/data)
FUZZ_SECONDS ?= 60

.PHONY: all bootstrap build build-asan check demo bench fuzz clean

all: build

bootstrap:
	@scripts/bootstrap

build/build.ninja:
	$(MESON) setup build --buildtype=release -Db_lto=true -Dshared_data=$(SHARED_DATA)

build: build/build.ninja
	$(NINJA) -C build

build-asan/build.ninja:
	$(MESON) setup build-asan --buildtype=debug -Db_sanitize=address,undefined \
		-Db_lundef=false -Dshared_data=$(SHARED_DATA)

build-asan: build-asan/build.ninja
	$(NINJA) -C build-asan

check: bootstrap
	@$(MAKE) --no-print-directory build build-asan
	@scripts/run-tests build build-asan

demo: bootstrap
	@$(MAKE) --no-print-directory build
	@scripts/demo build

# Every benchmark, each against its competing tool in the same run (docs/bench.md).
# BENCHES picks some: make bench BENCHES="meter policy". query needs ~8 GB of disk.
BENCHES ?= meter collect query store enrich policy audit intel detect

bench: bootstrap
	@$(MAKE) --no-print-directory build
	@for b in $(BENCHES); do echo "== bench/$$b"; bench/$$b/run build || exit 1; done

build-fuzz/build.ninja:
	CC=clang $(MESON) setup build-fuzz --buildtype=debugoptimized -Dfuzz=true -Dtests=false \
		-Db_sanitize=address,undefined -Db_lundef=false -Dshared_data=$(SHARED_DATA)

fuzz: bootstrap build-fuzz/build.ninja
	$(NINJA) -C build-fuzz
	@scripts/run-fuzz build-fuzz $(FUZZ_SECONDS)

clean:
	rm -rf build build-asan build-fuzz
