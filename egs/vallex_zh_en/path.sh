# Environment for the recipe: make sure the speechkit venv exists (tools/install.sh is idempotent
# and takes seconds when all is installed), then activate it.
speechkit_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ -z "${SPEECHKIT_SKIP_INSTALL:-}" ]; then
  bash "$speechkit_root/tools/install.sh"
fi
# shellcheck disable=SC1091
source "${SPEECHKIT_VENV:-$speechkit_root/.venv}/bin/activate"
export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
