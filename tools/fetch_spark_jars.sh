#!/bin/sh
# Puts the jars of pyspark $1 (Spark and the Scala compiler it ships) into $2/pyspark-$1/jars, from
# the pyspark distribution on PyPI, to compile the plugin for that Spark line without installing it.
#
#   sh tools/fetch_spark_jars.sh 3.5.8 .cache
set -eu
version=$1
dest=$2/pyspark-$version
[ -f "$dest/jars/.complete" ] && exit 0
py=${PYTHON:-python3}
rm -rf "$dest"
mkdir -p "$dest/download"
"$py" -m pip --disable-pip-version-check -q download --no-deps --no-binary :all: "pyspark==$version" -d "$dest/download"
tar xzf "$dest/download/pyspark-$version.tar.gz" -C "$dest" "pyspark-$version/deps/jars"
mv "$dest/pyspark-$version/deps/jars" "$dest/jars"
rm -rf "$dest/download" "$dest/pyspark-$version"
touch "$dest/jars/.complete"
