# How parallel jobs run. Stages split work into --nj shards run as local processes; on a cluster,
# set SPEECHKIT_LAUNCHER=slurm and SPEECHKIT_SLURM_ARGS (read by speechkit's stage runners).
export SPEECHKIT_LAUNCHER=${SPEECHKIT_LAUNCHER:-local}
