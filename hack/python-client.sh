#!/usr/bin/env bash
# Makes Python's prometheus_client (the reference Pushgateway client) available to the tests, in a
# virtual environment cached outside the checkout, and prints CARDINAL_PYTHON=<its interpreter>.
# Progress goes to stderr.
set -euo pipefail
version=0.26.0
cache="${CARDINAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardinal}"
venv="$cache/python/prometheus-client-$version"
if ! "$venv/bin/python" -c "import prometheus_client" 2>/dev/null; then
  echo "installing prometheus_client $version into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "prometheus-client==$version" >&2
fi
echo "CARDINAL_PYTHON=$venv/bin/python"
