# The README's commands. `make demo` runs the main demo, `make test` the whole test suite; both
# install missing Debian packages first (when run as root).
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build test test-asan fuzz out-of-tree demo mlp-demo bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && OMP_NUM_THREADS=2 ctest --output-on-failure -j $(JOBS)

# kiln as a package: install this build into a temporary prefix, then build and run
# examples/out_of_tree, a separate CMake project, against it (find_package(kiln)).
out-of-tree: build
	scripts/out-of-tree.sh $(BUILD)

# CPU tests under AddressSanitizer + UndefinedBehaviorSanitizer (CUDA off: the sanitizers do not
# see device code, and the CUDA build above already compiles it). -O1 -g1, as ASan's own docs
# advise: half the compile time of -O2 -g, and reports still name file and line.
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
	  -DKILN_CUDA=OFF -DKILN_SANITIZE=ON -DKILN_BUILD_BENCH=OFF
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && OMP_NUM_THREADS=2 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

# The libFuzzer targets in fuzz/ (clang, ASan + UBSan, CPU only), each run for FUZZ_SECONDS on
# its seeds in fuzz/corpus/; fails on any finding (README, "Fuzzing").
fuzz:
	@scripts/install-deps.sh --fuzz
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
	  -DCMAKE_CXX_COMPILER=clang++ \
	  -DKILN_CUDA=OFF -DKILN_FUZZ=ON -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_BENCH=OFF
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target kiln_fuzzers
	scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# The translator demo: trains on a generated task (~20 s on 2 cores), then translates held-out
# sentences. mlp-demo is the small framework example.
demo: build
	OMP_NUM_THREADS=2 $(BUILD)/examples/kiln demo --out runs/demo

mlp-demo: build
	$(BUILD)/examples/mlp_demo

# kiln next to PyTorch on the same Seq2Seq work (bench/side_by_side.py; CUDA when a GPU is
# visible), the table appended to bench/RESULTS.md, then kiln's kernel suites. ~10 min on 2 cores.
# BENCH_FLAGS=--quick for a 1-round smoke run; BENCH_FLAGS=--no-record to leave RESULTS.md alone.
# BENCH_FLAGS=--background-load: every row again with one core kept busy, and each side's slowdown.
BENCH_FLAGS ?=
PYTHON ?= /usr/bin/python3
bench: bench-deps build
	KILN_MAKE_BENCH="make bench$(if $(BENCH_FLAGS), BENCH_FLAGS='$(BENCH_FLAGS)')" \
	  $(PYTHON) bench/side_by_side.py --build $(BUILD) --python $(PYTHON) $(BENCH_FLAGS)

# Before the build configures (the PyTorch peer).
.PHONY: bench-deps
bench-deps:
	@scripts/install-deps.sh --bench

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
