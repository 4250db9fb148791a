#!/usr/bin/env bash
# Stage 1: prepare data/{train,dev,test}. Dispatch only: the work is in speechkit.bin.make_corpus.
# Usage: local/data.sh [--config conf/default.yaml] [make_corpus options, e.g. --nj 4 --override corpus.seed=7]
set -euo pipefail
cd "$(dirname "$0")/.."
. ./db.sh

config=conf/default.yaml
if [ "${1:-}" = "--config" ]; then config=$2; shift 2; fi

for corpus in LIBRITTS LIBRISPEECH AISHELL3 WENETSPEECH EMIME; do
  if [ -n "${!corpus:-}" ]; then
    echo "local/data.sh: db.sh sets $corpus=${!corpus}, but preparing $corpus is not implemented yet." >&2
    echo "Leave it empty in db.sh to build the embedded espeak-ng corpus instead." >&2
    exit 1
  fi
done

python -m speechkit.bin.make_corpus --config "$config" --out data "$@"
