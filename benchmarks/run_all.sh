#!/usr/bin/env bash
# Run every benchmark, then rebuild the figures section of docs/benchmarks.md from their JSON results.
#   benchmarks/run_all.sh            full runs (long: the rollout benchmark at batch 64 takes the most)
#   benchmarks/run_all.sh --quick    each benchmark's ~2 minute smoke run (checks the code, not figures for docs)
# BENCH_PYTHON (default .venv/bin/python) runs them; VLLM_PYTHON (default .venv-vllm/bin/python) runs vLLM variants
# and bench_vllm_cpu.py, which is skipped, with one line saying so, when that interpreter does not exist (make vllm).
# BENCH_OUT (default runs/bench) holds the results. Run it on a machine as quiet as you can get: every figure
# records the load and the processes that competed with it. tests/unit/test_bench_harness.py checks that every
# benchmarks/bench_*.py is run here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${BENCH_PYTHON:-.venv/bin/python}
export VLLM_PYTHON=${VLLM_PYTHON:-.venv-vllm/bin/python}  # bench_rollout.py reads it too
OUT=${BENCH_OUT:-runs/bench}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
for bench in rollout threads async train update memory async_rl search sandbox; do
    echo "== benchmarks/bench_$bench.py $* (results in $OUT)"
    "$PY" "benchmarks/bench_$bench.py" --out "$OUT" "$@"
done
if [ -x "$VLLM_PYTHON" ]; then
    echo "== benchmarks/bench_vllm_cpu.py $* (with $VLLM_PYTHON, results in $OUT)"
    "$VLLM_PYTHON" benchmarks/bench_vllm_cpu.py --out "$OUT" "$@"
else
    echo "== skipped benchmarks/bench_vllm_cpu.py: no $VLLM_PYTHON (vllm has its own environment: make vllm builds it)"
fi
"$PY" benchmarks/figures.py --results "$OUT" --write docs/benchmarks.md
