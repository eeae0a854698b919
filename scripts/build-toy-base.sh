#!/usr/bin/env bash
# Rebuild octo/assets/toy-base (the toy world's base model) and pin its files in octo/assets/SHA256SUMS.
#   bash scripts/build-toy-base.sh [RUN_DIR]      # ~3 minutes on 2 cores
# It runs the pretrain stage of recipes/toy/scratch.yaml from random init (octo cpt), exports the final checkpoint weights-only with
# its tokenizer (octo export), and replaces the asset. Training on CPU is deterministic for a given machine and
# thread count, not across machines, so a rebuild elsewhere may give other bytes: commit the new SHA256SUMS with it.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="${1:-$(mktemp -d)/toy-base-run}"
OUT=octo/assets/toy-base
octo cpt recipes/toy/scratch.yaml --stage pretrain --run-dir "$RUN_DIR"
FINAL="$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['final_checkpoint'])" "$RUN_DIR/cpt/pretrain/DONE.json")"
rm -rf "$OUT.new"
octo export "$RUN_DIR/$FINAL" "$OUT.new"
rm -rf "$OUT"
mv "$OUT.new" "$OUT"
(cd octo/assets && sha256sum toy-base/* > SHA256SUMS)
cat octo/assets/SHA256SUMS
