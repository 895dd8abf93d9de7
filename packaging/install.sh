#!/bin/sh
# Install lambda-rollouts into a virtualenv the one way the image and the install test both do:
#
#   packaging/install.sh VENV WHEEL_DIR LOCK
#
# 1. the dependencies exactly as pinned in LOCK (hashes required, nothing resolved here);
# 2. the project's one wheel from WHEEL_DIR, without dependencies and without an index;
# 3. `pip check`: the wheel's own requirements must be met by the lock, or the install fails here
#    rather than at the first import in production.
# VENV is created (with $PYTHON, default python3) when it does not exist yet.
set -eu

if [ "$#" -ne 3 ]; then
  echo "usage: $0 VENV WHEEL_DIR LOCK" >&2
  exit 2
fi
venv=$1
wheel_dir=$2
lock=$3

set -- "$wheel_dir"/lambda_rollouts-*.whl
if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
  echo "$0: expected exactly one lambda_rollouts wheel in $wheel_dir" >&2
  exit 2
fi
wheel=$1

[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --require-hashes --no-deps -r "$lock"
"$venv/bin/python" -m pip install --quiet --no-index --no-deps "$wheel"
"$venv/bin/python" -m pip check
