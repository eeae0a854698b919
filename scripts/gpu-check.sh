#!/usr/bin/env bash
# One-shot GPU check of octo, for a machine with one GPU and no package registry, sized to finish within
# 8 minutes on one H200 (not yet run on a GPU; the parts: scripts/gpu_check.py, docs/gpu.md).
#
#   bash scripts/gpu-check.sh --fetch-wheels          # HERE, where PyPI answers: the missing wheels -> .whl/
#   bash scripts/gpu-check.sh [--out DIR]             # THERE: install .whl/*.whl and octo, run the check
#   bash scripts/gpu-check.sh --dry-run [--out DIR]   # any CPU machine: the same parts at toy size (CI)
#
# The GPU machine has torch, transformers, accelerate and peft but no TRL, datasets, math-verify or
# vLLM, and reaches no registry. --fetch-wheels downloads the pure-Python wheels octo's probe needs
# (Python 3.12, manylinux x86_64, about 2 MB) plus pyarrow 26 (55 MB; datasets 5 needs pyarrow >= 24):
# together under the 64 MiB a working tree may carry there. vLLM cannot travel (its wheel is far
# larger than that), so the GRPO probe step generates with octo's hf backend on the GPU.
# The wheels install with --no-deps into /tmp/octo-site (PYTHONPATH); octo itself installs editable.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
wheels="${OCTO_GPU_WHEELS:-$repo/.whl}"
log() { echo "gpu-check: $*" >&2; }

WHEELS=(trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 math-verify==0.9.0
        latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2 pyarrow==26.0.1)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mkdir -p "$wheels"
    grep -qx '/.whl/' "$repo/.git/info/exclude" 2>/dev/null || echo '/.whl/' >> "$repo/.git/info/exclude" 2>/dev/null || true
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$wheels" "${WHEELS[@]}" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
    log "$(ls "$wheels"/*.whl | wc -l) wheels, $(du -sh "$wheels" | cut -f1) in $wheels"
    exit 0
fi

dry=0
for a in "$@"; do [[ "$a" == "--dry-run" ]] && dry=1; done
py="${PYTHON:-python3}"
if [[ $dry == 0 ]]; then
    site=/tmp/octo-site
    if compgen -G "$wheels/*.whl" >/dev/null; then
        log "installing $(ls "$wheels"/*.whl | wc -l) carried wheels into $site"
        "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target "$site" "$wheels"/*.whl
    fi
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    if ! "$py" -c "import octo.verifiers" 2>/dev/null; then
        # editable, like a developer's install: pytest puts the repo first on sys.path, and the
        # octo.verifiers/rollout/analysis mapping of pyproject.toml needs setuptools' finder then
        log "installing octo (editable, no dependencies)"
        "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-build-isolation -e "$repo"
    fi
fi
cd "$repo"
exec "$py" scripts/gpu_check.py "$@"
