"""The step-time model against four real vLLM runs (../shared/data/vllm-real), beside LLMServingSim's errors.

    .venv/bin/python benchmarks/bench_vllm_replay.py              # the error table with the default constants
    .venv/bin/python benchmarks/bench_vllm_replay.py --calibrate  # re-fit the constants on the Llama-3.1-8B runs
    .venv/bin/python benchmarks/bench_vllm_replay.py --phases     # also: step times, real vs model, by phase

Calibration uses the two Llama-3.1-8B runs only; Qwen3-32B (TP 2) and Qwen3-30B-A3B (MoE) are validation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from twin.experiments.vllm_steps import format_phases, phase_table
from twin.experiments.vllm_validation import available_runs, calibrate, error_table, format_table, run_steps

RUNS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vllm-real" / "runs"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--phases", action="store_true", help="print the open-loop step-time table of every run")
    args = parser.parse_args()
    if not available_runs(args.runs):
        print(f"no runs under {args.runs}; nothing to do")
        return 0
    eff = None
    if args.calibrate:
        t0 = time.perf_counter()
        eff, loss = calibrate(args.runs)
        print(f"calibrated in {time.perf_counter() - t0:.0f} s: {eff} (loss {loss:.3f})")
    print(format_table(error_table(args.runs, eff)))
    if args.phases:
        for name in available_runs(args.runs):
            print()
            print(format_phases(name, phase_table(run_steps(args.runs, name, eff))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
