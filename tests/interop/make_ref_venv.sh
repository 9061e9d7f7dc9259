#!/bin/sh
# Creates a virtualenv with the reference mosaicml-streaming 0.13.0 at $1 (default .venv-ref).
set -eu
venv=${1:-.venv-ref}
here=$(dirname "$0")
py=${PYTHON:-python3}
test -x "$venv/bin/python" || "$py" -m venv "$venv"
pip="$venv/bin/python -m pip --disable-pip-version-check -q"
$pip install torch==2.13.0
$pip install -r "$here/requirements-ref.txt"
$pip install --no-deps mosaicml-streaming==0.13.0
# streaming imports torchvision at import time (streaming.vision); a minimal stand-in suffices.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf "$site/torchvision"
cp -r "$here/torchvision_stub/torchvision" "$site/torchvision"
"$venv/bin/python" -c 'import streaming; print("mosaicml-streaming", streaming.__version__)'
