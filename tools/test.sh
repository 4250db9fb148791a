#!/usr/bin/env bash
# The test command: installs what is missing (tools/install.sh), then runs the whole suite.
#   bash tools/test.sh                 # everything, including the mini recipe end to end
#   bash tools/test.sh -k registry     # extra arguments go to pytest
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SPEECHKIT_WITH_ENCODEC=${SPEECHKIT_WITH_ENCODEC:-1} bash "$root/tools/install.sh"  # encodec too, so its plugin tests run
cd "$root"
exec "${SPEECHKIT_VENV:-$root/.venv}/bin/python" -m pytest -n 2 "$@"
