#!/bin/sh
# Creates a virtualenv at $2 with pyspark $1 (and its Spark Connect client), then installs this
# project into it as a user would (both distributions, editable) with the test tools, and checks
# that installing the project kept that user's pyspark: `pip install spark-mds` must never replace
# the Spark a cluster runs.
#
#   sh tools/make_spark_venv.sh 3.5.8 .venv-spark/3.5.8
set -eu
version=$1
venv=$2
py=${PYTHON:-python3}
test -x "$venv/bin/python" || "$py" -m venv "$venv"
pip="$venv/bin/python -m pip --disable-pip-version-check -q"
# torch first and pinned (mds-loader needs it): an unpinned torch resolves to a multi-GB CUDA build.
$pip install torch==2.13.0
# pyspark 3.5's extras pin numpy<2, and pyarrow 26 needs numpy 2: keep a pyarrow that imports there.
case $version in 3.*) pyarrow="pyarrow<26" ;; *) pyarrow="pyarrow" ;; esac
$pip install "pyspark[connect]==$version" "pandas<3" "$pyarrow"
$pip install -e ./loader -e ".[test]"
got=$("$venv/bin/python" -c 'import pyspark; print(pyspark.__version__)')
if [ "$got" != "$version" ]; then
    echo "make_spark_venv: installing spark-mds replaced pyspark $version by $got in $venv" >&2
    exit 1
fi
echo "$venv: pyspark $got kept after installing spark-mds"
