#!/usr/bin/env bash
# Creates .venv and installs Flywheel with its pinned dependencies.
# torch 2.13.0 comes first: the CUDA build where `nvidia-smi` finds a GPU, else the CPU build,
# so a machine without CUDA never downloads the CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)

stamp=.venv/.flywheel-installed
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

if ! .venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        "${pip[@]}" install "torch==2.13.0"
    else
        # Only the torch wheel comes from PyTorch's CPU index (its dependencies come with the next step),
        # so a machine that cannot reach that index, but has the wheel locally, does not wait on it.
        "${pip[@]}" install --no-deps --retries 1 --timeout 15 "torch==2.13.0+cpu" \
            --extra-index-url https://download.pytorch.org/whl/cpu
    fi
fi
"${pip[@]}" install -e ".[dev]"
"${pip[@]}" check
echo "$want" > "$stamp"
