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
# One plugin jar per Spark line, each compiled against that line's own jars (build.gradle): Spark 4.x
# (Scala 2.13) against the venv's pyspark, Spark 3.5 (Scala 2.12) against pyspark $(SPARK35)'s jars.
SPARK35 := 3.5.8
SPARK35_JARS := .cache/pyspark-$(SPARK35)/jars
JAR4  := spark_mds/jars/spark-mds-spark4_2.13.jar
JAR35 := spark_mds/jars/spark-mds-spark3.5_2.12.jar
JARS  := $(JAR4) $(JAR35)

.PHONY: setup build-tools test test-spark35 spark-venvs demo bench jar ref-venv clean

# What the demo needs: the venv with both distributions, and the plugin jar (built with Java and
# Gradle, which build-tools installs where it can). The reference's venv is for tests and benchmarks.
setup: build-tools $(STAMPS)/python $(JARS)

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

$(JAR4): $(STAMPS)/python build.gradle settings.gradle $(SCALA_SOURCES)
	@sh tools/ensure_build_tools.sh
	gradle -q --offline -PsparkJars="$$($(PY) -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')" jar
	@touch $@

$(JAR35): $(SPARK35_JARS)/.complete build.gradle settings.gradle $(SCALA_SOURCES)
	@sh tools/ensure_build_tools.sh
	gradle -q --offline -PsparkJars=$(SPARK35_JARS) jar
	@touch $@

# pyspark's jars of the 3.5 line, from its distribution on PyPI (no install needed to compile).
$(SPARK35_JARS)/.complete:
	PYTHON=$(PYTHON) sh tools/fetch_spark_jars.sh $(SPARK35) .cache

jar: $(JARS)

# The reference implementation, for interop tests and benchmarks, in its own virtualenv.
$(STAMPS)/ref-venv: tests/interop/requirements-ref.txt tests/interop/make_ref_venv.sh
	PYTHON=$(PYTHON) sh tests/interop/make_ref_venv.sh $(REF_VENV)
	@touch $@

ref-venv: $(STAMPS)/ref-venv

# A venv per other Spark version the suite runs on, each with the project installed as a user would
# (tools/make_spark_venv.sh checks that this keeps its pyspark): 3.5 runs the Spark suite
# (test-spark35), 4.0, 4.2 and 4.3 a smoke matrix (tests/versions).
SPARK_TEST_VERSIONS := $(SPARK35) 4.0.5 4.2.1 4.3.0
$(STAMPS)/spark-%: tools/make_spark_venv.sh pyproject.toml loader/pyproject.toml
	@mkdir -p $(STAMPS)
	PYTHON=$(PYTHON) sh tools/make_spark_venv.sh $* .venv-spark/$*
	@touch $@

spark-venvs: $(addprefix $(STAMPS)/spark-,$(SPARK_TEST_VERSIONS))

# Two pytest processes (the machine's cores; most tests wait on Spark or child processes), each test
# file kept on one of them so that its fixtures are set up once: about 1.5x faster than one process.
PYTEST_ARGS ?= -n 2 --dist loadfile

test: setup ref-venv spark-venvs
	$(PY) -m pytest tests $(PYTEST_ARGS) --durations=20
	$(MAKE) --no-print-directory test-spark35

# The Spark suite (both implementations) on Spark 3.5 with Scala 2.12, in its own venv, and the
# mapInArrow path that serves Spark 3.5 without the jar.
test-spark35: setup $(STAMPS)/spark-$(SPARK35)
	.venv-spark/$(SPARK35)/bin/python -m pytest tests/spark tests/fallback/test_arrow_jobs.py tests/fallback/test_compat_units.py $(PYTEST_ARGS)

demo: setup
	$(PY) examples/quickstart.py

# Every benchmark, its JSON under bench/results/ and the plots in docs/img/; BENCH_ARGS=--quick for a smoke run.
BENCH_ARGS ?=
bench: setup ref-venv
	$(PY) -m bench all $(BENCH_ARGS)

clean:
	rm -rf $(STAMPS) $(VENV) $(REF_VENV) .venv-spark .cache jvm/build build spark_mds/jars .gradle
