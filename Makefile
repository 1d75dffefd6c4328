# pymic -- developer entry points.
#
#   make demo    set up .venv, build and install pymic, run an example
#   make test    set up, build, run every test (C engine, sanitizers, pytest,
#                pytest under ASan+UBSan, the concurrency tests under TSan,
#                mypy --strict on the package)
#   make bench   run the benchmark suite against its peers (B12 after make mpi)
#
# Nothing but make, a C compiler and Python >= 3.10 (PYTHON) is needed first:
# everything else is installed into $(VENV) from the package registries.

PYTHON ?= python3
VENV   ?= .venv
BUILD  ?= build

VENV_ABS  := $(abspath $(VENV))
BUILD_ABS := $(abspath $(BUILD))
VPY       := $(VENV_ABS)/bin/python
# Stamp: the installed pymic has its MPI device if MPI is there (see mpi).
MPI_BUILT := $(VENV_ABS)/.installed-mpi
# Where the installed package is, without starting pymic.
PYMIC_DIR  = $$($(VPY) -I -c 'import importlib.util as u; print(u.find_spec("pymic").submodule_search_locations[0])')
# Open MPI refuses to run as root without these (the test machines are
# root); harmless otherwise.
MPI_RUN_ENV := OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PATH := $(VENV_ABS)/bin:$(PATH)

# Everything the build reads: a change re-installs the package.
SOURCES := $(shell find include src pymic tests/c -type f -not -name '*.pyc' 2>/dev/null) \
           meson.build meson.options pyproject.toml

.PHONY: all venv install demo test test-c test-asan test-tsan test-python \
        test-python-asan test-python-tsan examples bench test-bench-harness test-mypy \
        clean distclean

all: install

# --------------------------------------------------------------- set-up
$(VENV_ABS)/.deps: requirements-dev.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV_ABS)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV_ABS)/.deps

$(VENV_ABS)/.installed: $(VENV_ABS)/.deps $(SOURCES)
	@# Venvs made before the rename hold the same files under the old name.
	$(VPY) -m pip uninstall -q -y pymic 2>/dev/null || true
	$(VPY) -m pip install -q --no-build-isolation --no-deps \
	    -Cbuild-dir=$(BUILD_ABS)/wheel .
	touch $@

install: $(VENV_ABS)/.installed

# ---------------------------------------------------------------- demo
examples: install
	$(MAKE) -C examples PYTHON=$(VPY)

demo: examples
	cd examples/double_it && $(VPY) double_it.py

# --------------------------------------------------------------- tests
# $(1): build directory name, $(2): extra meson setup arguments
define meson_tests
	test -f $(BUILD_ABS)/$(1)/build.ninja || \
	    meson setup $(BUILD_ABS)/$(1) --buildtype=debugoptimized -Dpython=false $(2)
	@# Configured before `make mpi` installed MPI: look for it again, so the
	@# MPI device and its tests are built.
	if command -v mpicc >/dev/null && \
	    grep -q "Run-time dependency MPI for c found: NO" $(BUILD_ABS)/$(1)/meson-logs/meson-log.txt; then \
	    meson setup --reconfigure $(BUILD_ABS)/$(1); fi
	meson compile -C $(BUILD_ABS)/$(1)
	meson test -C $(BUILD_ABS)/$(1) --print-errorlogs
endef

# MPI first (`make mpi`), so the MPI device's tests are built and run.
test-c: venv mpi
	$(call meson_tests,c,)

test-asan: venv mpi
	$(call meson_tests,asan,-Db_sanitize=address,undefined -Db_lundef=false)

test-tsan: venv mpi
	$(call meson_tests,tsan,-Db_sanitize=thread -Db_lundef=false)

# The MPI device's tests once more over TCP only (what a network between
# nodes gives: nothing may assume the two processes share memory).
MPI_TCP_TESTS = tests/python/test_memory.py tests/python/test_invoke.py \
                tests/python/test_stream_events.py tests/python/test_examples.py \
                "tests/python/test_mpi.py::test_heat_mpi_two_host_ranks_each_offload_to_their_own_mpi_device" \
                "tests/python/test_mpi.py::test_host_comm_holds_the_host_ranks_only"

test-python: examples $(MPI_BUILT)
	$(VENV_ABS)/bin/pytest -q tests/python
	@# The same suite (examples included) on a process device; the MPI
	@# tests choose their own layouts.
	PYMIC_DEVICES=proc $(VENV_ABS)/bin/pytest -q tests/python --ignore=tests/python/test_mpi.py
	@# And on an MPI device (a pymic-device rank spawned by each test
	@# process), where pymic was built with MPI, then its device tests
	@# over TCP only; else say why not.
	if test -e "$(PYMIC_DIR)/libpymic_mpi.so"; then \
	    $(MPI_RUN_ENV) PYMIC_DEVICES=mpi $(VENV_ABS)/bin/pytest -q tests/python \
	        --ignore=tests/python/test_mpi.py && \
	    $(MPI_RUN_ENV) OMPI_MCA_btl=self,tcp PYMIC_DEVICES=mpi $(VENV_ABS)/bin/pytest -q \
	        $(MPI_TCP_TESTS); \
	else echo "pytest on PYMIC_DEVICES=mpi skipped: pymic was built without MPI (no mpicc)"; fi
	@# The waiting policy's two switches: with every spin off, and with
	@# caller runs off (every command on its stream's worker), the suite
	@# must pass as with the defaults (docs/design.md, "Threads, cores,
	@# spinning and sleeping").
	PYMIC_SPIN_NS=0 $(VENV_ABS)/bin/pytest -q tests/python --ignore=tests/python/test_mpi.py
	PYMIC_CALLER_RUNS=0 $(VENV_ABS)/bin/pytest -q tests/python --ignore=tests/python/test_mpi.py

# The extension and the whole pytest suite under ASan+UBSan.  pymic (engine,
# extension, built-in kernels) is built with the sanitizers into its own
# site directory, which PYTHONPATH puts in front of the venv's pymic; the
# interpreter is not instrumented, so the ASan runtime is preloaded.
# CPython keeps objects alive until exit by design: no leak checking.
# Child interpreters started by tests inherit the environment, so they run
# the sanitized build too.
ASAN_SITE := $(BUILD_ABS)/asan-site
ASAN_ENV   = LD_PRELOAD=$$(cc -print-file-name=libasan.so) \
             ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1 \
             UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
             PYTHONPATH=$(ASAN_SITE)

$(ASAN_SITE)/.installed: $(VENV_ABS)/.deps $(SOURCES)
	rm -rf $(ASAN_SITE)
	$(VPY) -m pip install -q --no-build-isolation --no-deps --target $(ASAN_SITE) \
	    -Cbuild-dir=$(BUILD_ABS)/asan-wheel \
	    -Csetup-args=-Db_sanitize=address,undefined -Csetup-args=-Db_lundef=false \
	    -Csetup-args=-Dbuildtype=debugoptimized .
	touch $@

test-python-asan: $(ASAN_SITE)/.installed examples
	$(ASAN_ENV) $(VENV_ABS)/bin/python -m pytest -q -p no:cacheprovider tests/python

# The concurrency tests with pymic built under TSan.  The interpreter is
# not instrumented: its own memory accesses are invisible to TSan, but the
# GIL is a pthread mutex/condition that TSan intercepts, so the ordering
# the GIL gives the extension's code is seen and only pymic's own races
# (extension against engine threads) are reported.
TSAN_SITE := $(BUILD_ABS)/tsan-site
TSAN_ENV   = LD_PRELOAD=$$(cc -print-file-name=libtsan.so) \
             TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp \
             PYTHONPATH=$(TSAN_SITE)
TSAN_TESTS = tests/python/test_concurrency.py tests/python/test_interrupt.py \
             tests/python/test_stream_events.py

$(TSAN_SITE)/.installed: $(VENV_ABS)/.deps $(SOURCES)
	rm -rf $(TSAN_SITE)
	$(VPY) -m pip install -q --no-build-isolation --no-deps --target $(TSAN_SITE) \
	    -Cbuild-dir=$(BUILD_ABS)/tsan-wheel \
	    -Csetup-args=-Db_sanitize=thread -Csetup-args=-Db_lundef=false \
	    -Csetup-args=-Dbuildtype=debugoptimized .
	touch $@

test-python-tsan: $(TSAN_SITE)/.installed
	$(TSAN_ENV) $(VENV_ABS)/bin/python -m pytest -q -p no:cacheprovider $(TSAN_TESTS)

# The benchmark harness's own logic (report, targets): NumPy + pytest only.
test-bench-harness: venv
	$(MAKE) -C benchmarks PYTHON=$(VPY) test

# The package's type hints, strictly (the compiled part through
# pymic/_engine.pyi).  The documentation checks (links, the README's
# generated figures and first program) are in tests/python/test_docs.py.
test-mypy: venv
	$(VENV_ABS)/bin/mypy --strict pymic

test: test-c test-asan test-tsan test-bench-harness test-mypy test-python test-python-asan \
      test-python-tsan

# ------------------------------------------------------------------ MPI
# The MPI example (examples/heat_mpi) and tests/python/test_mpi.py need an
# MPI launcher and compiler, and mpi4py built against them.  When `mpirun`
# or `mpicc` is missing, Debian's OpenMPI is installed with apt-get (these
# machines run as root); mpi4py is built from source into $(VENV) with that
# mpicc.  Where MPI cannot be had (not root, no apt-get) this says why and
# goes on: test_mpi.py then skips with the same reason.
MPI_DEB_PACKAGES := openmpi-bin libopenmpi-dev
MPI_STAMP        := $(VENV_ABS)/.mpi
APT_GET          := DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600

.PHONY: mpi
mpi: $(MPI_STAMP)

$(MPI_STAMP): requirements-mpi.txt $(VENV_ABS)/.deps
	@if command -v mpirun >/dev/null && command -v mpicc >/dev/null; then \
	    echo "MPI: using $$(command -v mpirun) and $$(command -v mpicc)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "MPI: installing $(MPI_DEB_PACKAGES) with apt-get"; \
	    $(APT_GET) update && \
	    $(APT_GET) install -y --no-install-recommends $(MPI_DEB_PACKAGES) || exit 1; \
	else \
	    echo "MPI: no mpirun/mpicc and no way to install them (need root and apt-get):" \
	         "the MPI example, its test and benchmark B12 are skipped"; \
	    exit 0; \
	fi; \
	command -v mpirun >/dev/null && command -v mpicc >/dev/null || \
	    { echo "MPI: mpirun/mpicc still missing after installing $(MPI_DEB_PACKAGES)" >&2; exit 1; }; \
	$(VPY) -m pip install -q --no-binary mpi4py -r requirements-mpi.txt && \
	$(VPY) -c 'import mpi4py.MPI' && \
	touch $@

# The MPI test is part of the pytest run.
test-python: mpi

# The MPI device (libpymic_mpi.so) is built when MPI is found at build
# time: once `make mpi` has installed it, pymic is built again if the
# installed package has no MPI device yet.
$(MPI_BUILT): $(MPI_STAMP) $(VENV_ABS)/.installed
	if command -v mpicc >/dev/null && ! test -e \
	    "$(PYMIC_DIR)/libpymic_mpi.so"; \
	    then rm -f $(VENV_ABS)/.installed && $(MAKE) install; fi
	touch $@


# ----------------------------------------------------------- benchmarks
# B12 runs examples/heat_mpi under mpirun: `mpi` provides Open MPI and
# mpi4py (or says why it cannot, and B12's row says the same).
bench: install mpi
	$(MAKE) -C benchmarks PYTHON=$(VPY)

clean:
	rm -rf $(BUILD_ABS)
	$(MAKE) -C examples clean

distclean: clean
	rm -rf $(VENV_ABS)
