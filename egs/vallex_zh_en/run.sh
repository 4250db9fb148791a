#!/usr/bin/env bash
# VALL-E X (zh<->en) recipe. Stages:
#   1 data      embedded bilingual espeak-ng corpus (or real corpora, see db.sh) -> data/<set>
#   2 frontend  text -> phones (G2P per language) -> data/<set>/phones, dump/tokens.txt
#   3 codec     fit the codec if trainable (exp/codec), wav -> acoustic tokens -> dump/<set>/codes.scp
#   4-8         AR LM, NAR LM, ST, inference, scoring: not in this version yet
# Usage: ./run.sh [--stage 1] [--stop-stage 3] [--config conf/default.yaml] [--nj 2] [-- key=value ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stage=1
stop_stage=3
config=conf/default.yaml
nj=2
sets="train dev test"

source ../TEMPLATE/utils.sh
parse_options "$@"
overrides_as_flags
source ./path.sh
source ./cmd.sh
logs=exp/logs

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  run_logged $logs/stage1_data.log local/data.sh --config "$config" --nj "$nj" "${override_flags[@]+"${override_flags[@]}"}"
fi
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  run_logged $logs/stage2_frontend.log python -m speechkit.bin.phonemize --config "$config" \
    --data data --dump dump --sets $sets "${override_flags[@]+"${override_flags[@]}"}"
fi
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  run_logged $logs/stage3_codec.log python -m speechkit.bin.dump_codes --config "$config" \
    --data data --dump dump --exp exp --nj "$nj" --sets $sets "${override_flags[@]+"${override_flags[@]}"}"
fi
if [ "$stop_stage" -ge 4 ]; then
  echo "stages 4-8 (AR/NAR/ST training, inference, scoring) are not in this version yet" >&2
fi
echo "done: stages $stage-$(( stop_stage < 3 ? stop_stage : 3 )) of $config (logs in $logs/)"
