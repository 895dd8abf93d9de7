#!/bin/sh
# The non-Python programs the tests run, installed when missing and possible, else named:
#
#   tests/system-deps.sh [PYTHON]
#
# - prometheus and promtool (Debian package `prometheus`): the end-to-end tests run the real server
#   and `promtool test rules`;
# - the venv module of PYTHON (Debian package `python3-venv`, only for Debian's own python3): the
#   Makefile creates .venv with it.
# As root with apt-get they are installed; otherwise this fails at once with the one command to run.
# kubectl is deliberately not installed from Debian: its kubernetes-client is 1.20, far older than
# the manifests' kustomize features need; a current one is built from its Go module instead.
set -eu
python=${1:-python3}

missing=""
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  missing="$missing prometheus"
fi
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1 \
  && [ "$("$python" -c 'import sys; print(sys.prefix)' 2>/dev/null)" = /usr ]; then
  missing="$missing python3-venv"
fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  exit 0
fi
echo "missing Debian packages:$missing; run: sudo apt-get install --no-install-recommends$missing" >&2
exit 1
