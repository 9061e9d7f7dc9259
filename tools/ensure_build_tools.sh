#!/bin/sh
# Makes sure the JVM build's tools are on the PATH: Java 17+ and Gradle (any version from Debian's
# 4.4.1 on). Where one is missing and apt-get can install it (root on Debian or Ubuntu), installs
# it; otherwise stops with the exact command to run.
set -eu

MIN_JAVA=17

java_major() {
    # `java -version` prints e.g. 'openjdk version "17.0.15" 2025-04-15' (or "1.8.0_392" for Java 8).
    v=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
    case "$v" in
        1.*) echo "$v" | cut -d. -f2 ;;
        *) echo "$v" | cut -d. -f1 | cut -d- -f1 ;;
    esac
}

missing=""
packages=""
if ! command -v java >/dev/null 2>&1; then
    missing="Java $MIN_JAVA+"
    packages="openjdk-$MIN_JAVA-jdk-headless"
elif [ "$(java_major)" -lt "$MIN_JAVA" ] 2>/dev/null; then
    missing="Java $MIN_JAVA+ (found Java $(java_major))"
    packages="openjdk-$MIN_JAVA-jdk-headless"
fi
if ! command -v gradle >/dev/null 2>&1; then
    missing="${missing:+$missing and }Gradle"
    packages="${packages:+$packages }gradle"
fi
[ -z "$missing" ] && exit 0

command="apt-get install -y $packages"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "make setup: installing $missing with apt-get ($packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086 # a list of package names
    apt-get install -y -q $packages
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    echo "make setup: the JVM build needs $missing. Install it, then run make again:" >&2
    echo "    sudo $command" >&2
else
    echo "make setup: the JVM build needs $missing (Java $MIN_JAVA or newer, and Gradle 4.4 or newer)." >&2
    echo "    Install them with your package manager (for example: brew install openjdk@$MIN_JAVA gradle), then run make again." >&2
fi
exit 1
