#!/usr/bin/env bash
# Run a spray pipeline as Slurm job arrays: relevance shards, then analyze shards, then verify
# shards (when the pipeline's verify stage is on), then the report. Usage: pipelines/cluster/slurm-array.sh pipelines/imagenet-val.toml [SHARDS]
# Each array task runs `spray run P --stage S --shard $SLURM_ARRAY_TASK_ID/N`; shards write
# disjoint part files into the shared output folder, so tasks can run anywhere and be retried.
# A failed task cancels the jobs that depend on it (--kill-on-invalid-dep).
# Environment: SPRAY (the spray binary, default `spray` on PATH); SPRAY_SBATCH_WAIT=1 makes
# the script return only when the report job has ended, with its exit status (sbatch --wait).
set -euo pipefail
pipeline=${1:?pipeline file}
shards=${2:-16}
spray=${SPRAY:-spray}
last=$((shards - 1))
wait_flag=()
if [ "${SPRAY_SBATCH_WAIT:-0}" = 1 ]; then
  wait_flag=(--wait)
fi
rel=$(sbatch --parsable --array=0-$last --job-name=spray-relevance --cpus-per-task=8 --mem=16G \
  --wrap "$spray run $pipeline --quiet --stage relevance --shard \$SLURM_ARRAY_TASK_ID/$shards")
ana=$(sbatch --parsable --dependency=afterok:$rel --kill-on-invalid-dep=yes --array=0-$last \
  --job-name=spray-analyze --cpus-per-task=4 --mem=16G \
  --wrap "$spray run $pipeline --quiet --stage analyze --shard \$SLURM_ARRAY_TASK_ID/$shards")
# Verify shards take classes; with `[verify] enabled = false` each task has nothing to do.
ver=$(sbatch --parsable --dependency=afterok:$ana --kill-on-invalid-dep=yes --array=0-$last \
  --job-name=spray-verify --cpus-per-task=8 --mem=16G \
  --wrap "$spray run $pipeline --quiet --stage verify --shard \$SLURM_ARRAY_TASK_ID/$shards")
sbatch "${wait_flag[@]}" --dependency=afterok:$ver --kill-on-invalid-dep=yes \
  --job-name=spray-report --cpus-per-task=2 --mem=8G \
  --wrap "$spray run $pipeline --quiet"
