#!/usr/bin/env bash
# The one-GPU check (docs/real_model.md, "GPU check"): bf16 self-play vs plain TRL GRPO throughput on a randomly
# initialised model of Qwen2.5-0.5B's shape, a LoRA run and peak GPU memory; at most 8 minutes.
#
#   scripts/gpu_check.sh                      # on the GPU machine, from a checkout (extra arguments go to
#                                             # benchmarks/gpu_check.py, e.g. --steps 1)
#
# Needs no network and installs nothing into the Python it runs: wheels found in gpu-wheels/ (or
# $FLYWHEEL_GPU_WHEELS) go into a private folder on PYTHONPATH, and Flywheel is used from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
WHEELS="${FLYWHEEL_GPU_WHEELS:-gpu-wheels}"
private="$(mktemp -d)"
trap 'rm -rf "$private"' EXIT

if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --target "$private/site" "$WHEELS"/*.whl
    export PYTHONPATH="$private/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("flywheel") is None)'; then
    # The flywheel.* namespace as links to the checkout's top-level folders (what `pip install -e .` maps).
    mkdir -p "$private/src/flywheel"
    for part in envs agents verifiers train recipes; do ln -s "$PWD/$part" "$private/src/flywheel/$part"; done
    export PYTHONPATH="$private/src${PYTHONPATH:+:$PYTHONPATH}"
fi
timeout 480 "$PYTHON" benchmarks/gpu_check.py "$@"
