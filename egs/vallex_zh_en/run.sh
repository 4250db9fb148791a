#!/usr/bin/env bash
# VALL-E X (zh<->en) recipe. Stages:
#   1 data      embedded bilingual espeak-ng corpus (or real corpora, see db.sh) -> data/<set>
#   2 frontend  text -> phones (G2P per language) -> data/<set>/phones, dump/tokens.txt
#   3 codec     fit the codec if trainable (exp/codec), wav -> acoustic tokens -> dump/<set>/codes.scp
#   4 AR LM     (phone alignment for aligned variants) + AR training -> exp/ar/pack
#   5 NAR LM    NAR training -> exp/nar/pack
#   6 ST        speech recognition & translation training -> exp/st/pack
#   7 infer     zero-shot / cross-lingual TTS and S2ST over the test speakers -> exp/infer/<task>
#   8 score     AR training curve (exp/curve), WER/PER, speaker similarity, ASR-BLEU, DNSMOS -> RESULTS.md
# Usage: ./run.sh [--stage 1] [--stop-stage 8] [--config conf/default.yaml] [--nj 2] [-- key=value ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stage=1
stop_stage=8
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
# shellcheck disable=SC2086
common=(--config "$config" --data data --dump dump --exp exp "${override_flags[@]+"${override_flags[@]}"}")
if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  run_logged $logs/stage4_align.log python -m speechkit.bin.align "${common[@]}"
  run_logged $logs/stage4_ar.log python -m speechkit.bin.train_ar "${common[@]}"
fi
if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  run_logged $logs/stage5_nar.log python -m speechkit.bin.train_nar "${common[@]}"
fi
if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  run_logged $logs/stage6_st.log python -m speechkit.bin.train_st "${common[@]}"
fi
if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  run_logged $logs/stage7_infer.log python -m speechkit.bin.infer "${common[@]}"
fi
if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ]; then
  run_logged $logs/stage8_curve.log python -m speechkit.bin.curve "${common[@]}"
  run_logged $logs/stage8_score.log python -m speechkit.bin.score "${common[@]}" --command "./run.sh $*"
  echo "results: $(pwd)/RESULTS.md"
fi
echo "done: stages $stage-$stop_stage of $config (logs in $logs/)"
