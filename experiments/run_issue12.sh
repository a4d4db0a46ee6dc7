#!/usr/bin/env bash
# Issue 12's evidence, resumable: a finished run is skipped (its JSON holds the same cache key),
# a run stopped half-way resumes from its checkpoint, so this can be killed and started again.
#
#   experiments/run_issue12.sh            # every small preset on this machine's CPUs, then RESULTS.md
#   experiments/run_issue12.sh --gpu      # the GPU presets: lm_llama medium, then vit large
#   experiments/run_issue12.sh --smoke    # a few steps of a tiny config into a temporary folder
#   experiments/run_issue12.sh --report   # RESULTS.md only
#
# Environment: PYTHON (default python), JOBS (runs at a time on the CPUs, default 0: one per
# core), THREADS (torch threads per run, default 0: cores / JOBS), OUT (--smoke's folder).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
JOBS=${JOBS:-0}
THREADS=${THREADS:-0}
RUN=("$PY" experiments/run.py --jobs "$JOBS" --threads "$THREADS")
LOG=experiments/results/issue12.log  # git-ignored

run_preset() {  # CONFIG PRESET: every run of one preset, no report (written once at the end)
    echo "== $1 $2 ($(date -u +%H:%M:%S))" | tee -a "$LOG"
    "${RUN[@]}" "experiments/configs/$1.toml" --preset "$2" --no-report --quiet 2>&1 | tee -a "$LOG"
}

case "${1:-}" in
--smoke)
    out=${OUT:-$(mktemp -d)}
    "${RUN[@]}" experiments/smoke_issue12.toml --preset smoke --out "$out" --quiet
    grep -A3 "^| method" "$out/RESULTS.md" | head -4
    echo "smoke results: $out/RESULTS.md"
    ;;
--report)
    "$PY" experiments/run.py --report
    ;;
--gpu)
    "$PY" experiments/run.py experiments/configs/lm_llama.toml --preset medium --no-report --quiet
    "$PY" experiments/run.py experiments/configs/vit.toml --preset large --no-report --quiet
    "$PY" experiments/run.py --report
    ;;
"")
    # the headline first, then when to grow, the BERT that learns, the other families
    for spec in "lm_llama small" "lm_llama ablate" "lm_llama when" "lm_llama w2x" "lm_llama d4x" "bert small" \
        "vit small" "lm_gpt2 small" "lm_depth small"; do
        run_preset $spec
    done
    "$PY" experiments/run.py --report
    ;;
*)
    echo "usage: $0 [--smoke|--gpu|--report]" >&2
    exit 2
    ;;
esac
