# Two commands on a fresh machine:  make demo  (the quickstart)  and  make test  (the whole suite).
# Setup is idempotent: stamp files under .stamps/ skip every step whose inputs did not change.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
REF_VENV := .venv-ref
STAMPS := .stamps
TORCH  := torch==2.13.0

SCALA_SOURCES := $(shell find jvm -type f 2>/dev/null)
JAR := spark_mds/jars/spark-mds.jar

.PHONY: setup build-tools test demo bench jar ref-venv clean

# What the demo needs: the venv with both distributions, and the plugin jar (built with Java and
# Gradle, which build-tools installs where it can). The reference's venv is for tests and benchmarks.
setup: build-tools $(STAMPS)/python $(JAR)

build-tools:
	@sh tools/ensure_build_tools.sh

# torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build.
$(STAMPS)/venv:
	@mkdir -p $(STAMPS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(TORCH)
	@touch $@

$(STAMPS)/python: $(STAMPS)/venv pyproject.toml loader/pyproject.toml
	$(PIP) install -e ./loader -e ".[dev]"
	@touch $@

$(JAR): $(STAMPS)/python build.gradle settings.gradle $(SCALA_SOURCES)
	@sh tools/ensure_build_tools.sh
	gradle -q --offline -PsparkJars="$$($(PY) -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')" jar
	@touch $@

jar: $(JAR)

# The reference implementation, for interop tests and benchmarks, in its own virtualenv.
$(STAMPS)/ref-venv: tests/interop/requirements-ref.txt tests/interop/make_ref_venv.sh
	PYTHON=$(PYTHON) sh tests/interop/make_ref_venv.sh $(REF_VENV)
	@touch $@

ref-venv: $(STAMPS)/ref-venv

test: setup ref-venv
	$(PY) -m pytest tests

demo: setup
	$(PY) examples/quickstart.py

# Every benchmark, its JSON under bench/results/ and the plots in docs/img/; BENCH_ARGS=--quick for a smoke run.
BENCH_ARGS ?=
bench: setup ref-venv
	$(PY) -m bench all $(BENCH_ARGS)

clean:
	rm -rf $(STAMPS) $(VENV) $(REF_VENV) jvm/build build spark_mds/jars .gradle
