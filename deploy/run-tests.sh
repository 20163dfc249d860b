#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (Debian packages, .venv, extras), then pytest.
# Extra arguments go to pytest, e.g. deploy/run-tests.sh -k config -x
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EDGE_RUNTIME_EXTRAS=${EDGE_RUNTIME_EXTRAS-test,convert} bash "$repo/deploy/dev-setup.sh"
cd "$repo"
exec "${EDGE_RUNTIME_VENV:-$repo/.venv}/bin/python" -m pytest "$@"
