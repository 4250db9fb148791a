#!/usr/bin/env bash
# Install the optional EnCodec codec (plugin `encodec`) into the speechkit venv, without torchaudio.
# `pip install encodec` would pull torchaudio (a CUDA build that cannot load beside the CPU torch);
# encodec only needs it for file IO and resampling, which speechkit does itself (docs/codecs.md).
# Idempotent: re-running with everything installed only checks the import.
# Usage: tools/install_encodec.sh [VENV_DIR]   (default: .venv at the repository root)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/.venv}"
python="$venv/bin/python"
if [ ! -x "$python" ]; then
  echo "No venv at $venv; run tools/install.sh first (or pass the venv dir)." >&2
  exit 1
fi
if ! "$python" -c "import importlib.metadata as m; m.version('encodec'); m.version('einops')" 2>/dev/null; then
  "$python" -m pip install --no-deps -c "$root/tools/constraints.txt" "encodec==0.1.1" "einops>=0.6,<1"
fi
"$python" -c "from speechkit.plugins.codec.encodec_codec import import_encodec_model; import_encodec_model(); print('encodec: ok')"
