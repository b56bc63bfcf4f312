#!/usr/bin/env bash
# The README's first command: set up .venv, restore every bundled sample with the task that fits
# it (samples/input/<Task>/ -> samples/output/<Task>/), and write one picture of every input
# beside its result: samples/output/comparison.png. Safe to run again (results are replaced).
# Extra arguments go to every demo.py call (e.g. --device cpu, --precision fp32).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
pictures=()
for task in Deblurring Deraining Denoising; do
    echo "== $task: samples/input/$task -> samples/output/$task"
    python demo.py --task "$task" --input_dir "samples/input/$task" --result_dir "samples/output/$task" \
        --overwrite --compare "samples/output/comparison_$task.png" "$@"
    pictures+=("samples/output/comparison_$task.png")
done
python -m utils.evaluation.visualize "${pictures[@]}" --out samples/output/comparison.png \
    --title 'MPRNet: each sample (left) and its restoration (right)'
echo "Open samples/output/comparison.png to see every input beside its result."
