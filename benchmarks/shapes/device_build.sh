#!/usr/bin/env bash
# The shipped text-to-image model, built on a lent GPU machine in one call (see benchmarks/RESULTS.md):
#   OUT=/some/dir bash benchmarks/shapes/device_build.sh [CONFIG] [extra build_shipped_model.py options]
# Trains, exports and draws the grid first and copies them to $OUT (so a call cut short still returns the model),
# then benchmarks it with the CLI defaults and a guidance sweep. $OUT receives 5 files: the weights in 15 MB parts
# (`cat model.safetensors.part* > model.safetensors`), train.tar.gz (config.json, log.jsonl, loss.png, the grid),
# results_shapes_t2i.json and guidance_sweep.json.
set -euo pipefail
config=${1:-configs/shapes_t2i.json}
shift || true
out=${OUT:?set OUT to the folder that receives the results}
python=${PYTHON:-python3}
run=${RUN_DIR:-/tmp/shapes_t2i_run}
asset=${ASSET_DIR:-/tmp/shapes_t2i_asset}
work=$(mktemp -d)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
build=("$python" benchmarks/shapes/build_shipped_model.py --config "$config" --run "$run" --asset "$asset"
       --grid "$work/t2i_grid.png" --results "$out/results_shapes_t2i.json" --sweep-results "$out/guidance_sweep.json")
"${build[@]}" --skip-eval "$@"
split -b 15M -d "$asset/model.safetensors" "$out/model.safetensors.part"
cp "$asset/config.json" "$run/log.jsonl" "$run/loss.png" "$work/"
tar -czf "$out/train.tar.gz" -C "$work" .
"${build[@]}" --skip-train --guidance-sweep 2 3 4.5 6 "$@"
