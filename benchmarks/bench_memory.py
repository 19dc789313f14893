"""Peak resident memory of each stage of the main job (the ``default`` pipeline profile), against the pre-flight
estimate and its holders.

The stages are the pipeline's own commands (``tapo.pipeline.job.MainJob`` builds them, as ``tapo pipeline run``
does), each run in a process of its own whose peak RSS is the kernel's (``ru_maxrss`` from ``wait4``): the starting
model's evaluation, the warm start (``tapo sft``), the warm start's evaluation and one RL step (``tapo train``). The
profile's batch shapes, caps, engine and precision settings are kept; only the amounts shrink (demonstrations,
questions, steps). The RL step is then split into its phases by one more process that builds the same run and reads
its high-water mark (``VmHWM``) after the rollout, resets it (``/proc/self/clear_refs``) and reads it again after
the update. Each measured phase is set against :func:`tapo.train.plan.cpu_memory_estimate` (what ``tapo train``
refuses by) and the warm start against :func:`tapo.train.plan.sft_memory_estimate`; the notes list every holder of
the RL estimate with its share (weights, gradients, AdamW states, the bf16 sampling copy, the KV store's bound, the
log-prob head's chunk, a reference copy when ``trainer.kl_coef > 0``).

    python benchmarks/bench_memory.py            # 24 demonstrations, 16 questions per evaluation, 1 RL step
    python benchmarks/bench_memory.py --quick    # 8 demonstrations, 4 questions, an RL step of 2 prompts
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import Figure, machine_state
from recording import recorded

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "default"
GIB = 2**30


def high_water_bytes() -> int:
    """This process's peak resident memory so far (``VmHWM``)."""
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


def reset_high_water() -> None:
    """Start ``VmHWM`` again from the current resident memory (Linux 4.0+)."""
    Path("/proc/self/clear_refs").write_text("5")


def run_measured(command: list[str], log: Path) -> int:
    """Run ``command`` to its end (its output to ``log``) and return its peak RSS in bytes, from ``wait4``'s rusage
    of that one child (``RUSAGE_CHILDREN`` would be the largest of every child so far)."""
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    if process.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed with exit code {process.returncode}; see {log}")
    return usage.ru_maxrss * 1024  # KiB on Linux


def reduced_profile(quick: bool) -> Any:
    """The default profile with its batch shapes and smaller amounts of work."""
    from tapo.pipeline.profiles import load_profile

    profile = load_profile(PROFILE)
    rl = [*profile.rl, "trainer.max_steps=1", "trainer.save_every=1"]
    if quick:
        rl += ["trainer.prompts_per_step=2", "trainer.mini_batch_size=8"]
    return profile.model_copy(
        update={"demos": 8 if quick else 24, "eval_limit": 4 if quick else 16, "rl": rl, "baselines": [], "seeds": 1}
    )


# ---------------------------------------------------------------- the RL step's phases, in a process of their own


def phases_worker(config_file: Path, model: str, overrides: list[str]) -> None:
    """Build the RL run of ``config_file``, roll out one step, update on it; print the high-water marks as JSON."""
    import torch

    from tapo.cli.common import set_threads
    from tapo.config import load_config
    from tapo.data.io import load_examples
    from tapo.io.runs import RunDir
    from tapo.train.run import build_rl_run
    from tapo.train.setup import make_accelerator

    config = load_config(config_file, [*overrides, f"model.name={model}", "run.name=bench-memory-phases"])
    set_threads(config.run.torch_threads)
    torch.manual_seed(0)
    run = RunDir.create(config)
    with build_rl_run(config, run, make_accelerator(config, run.root), load_examples(config.data.train)) as rl:
        built = high_water_bytes()
        groups, _ = rl.trainer.collect()
        rollout = high_water_bytes()
        reset_high_water()
        rl.trainer.update(groups)
        update = high_water_bytes()
    print(json.dumps({"built": built, "rollout": rollout, "update": update}))


# ---------------------------------------------------------------- the parent


def measured_job(profile: Any, root: Path, logs: Path, peaks: dict[str, int]) -> Any:
    """A ``MainJob`` whose ``tapo`` commands are measured instead of supervised: ``peaks[command]`` in bytes."""
    from rich.console import Console

    from tapo.pipeline.job import MainJob

    class MeasuredJob(MainJob):
        commands = 0

        def _tapo(self, *args: str) -> None:
            self.commands += 1
            name = f"{self.commands}-{args[0]}"  # the log's name: 2-eval, 3-sft, ...
            self.console.print(f"[dim]$ tapo {' '.join(args)}[/]", highlight=False, soft_wrap=True)
            peaks[name] = run_measured([sys.executable, "-m", "tapo", *args], logs / f"{name}.log")

    return MeasuredJob(profile, root, Console(soft_wrap=True))


def estimates(job: Any, prompt_tokens: int) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The RL stage's estimate by holder, the warm start's, and the memory available they were computed for."""
    from tapo.config import load_config
    from tapo.models.resolve import read_architecture
    from tapo.train import plan

    available = plan.available_memory()
    rl_config = load_config(job.config_file, job.profile.rl)
    architecture, _ = read_architecture(job.profile.model)
    rl = plan.cpu_memory_estimate(rl_config, architecture, available, prompt_tokens)
    sft_config = load_config(job.config_file, job.profile.sft)
    sft = plan.sft_memory_estimate(sft_config, architecture, prompt_tokens + sft_config.rollout.max_response_tokens)
    return rl, sft, available


def phase_total(parts: dict[str, Any], phase: str) -> float:
    """Resident holders plus ``phase``'s."""
    return sum(p.bytes for p in parts.values() if p.phase in ("resident", phase))


def longest_prompt(job: Any) -> int:
    """The longest rendered training prompt (what ``tapo train``'s pre-flight sizes sequences by)."""
    from tapo.cli.preflight import stand_in_tokenizer
    from tapo.config import load_config
    from tapo.data.io import load_examples
    from tapo.train import plan

    config = load_config(job.config_file)
    tokenizer, _ = stand_in_tokenizer(job.profile.model)
    lengths = plan.prompt_lengths(config, load_examples(job.data_dir / "train.jsonl"), tokenizer)
    return min(max(lengths), config.data.max_prompt_tokens)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 demonstrations, 4 questions")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench", help="results directory")
    parser.add_argument("--phases-worker", nargs=2, metavar=("CONFIG", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--override", action="append", default=[], help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.phases_worker:
        phases_worker(Path(args.phases_worker[0]), args.phases_worker[1], args.override)
        return
    from figures import figure_markdown
    from rich.console import Console

    from tapo.pipeline.arms import BASE, SFT, TAPO

    say = Console(soft_wrap=True).print
    profile = reduced_profile(args.quick)
    logs = args.out / "logs" / "memory"
    logs.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp,
        recorded("memory", args.quick, args.out, say) as run,
    ):
        peaks: dict[str, int] = {}
        job = measured_job(profile, Path(tmp) / "job", logs, peaks)
        job.write_config()
        job.build_data()
        job.build_demos()
        peaks.clear()  # building the data set is not one of the measured stages
        figure = Figure(
            "peak RSS per stage of the default profile (measured) against the pre-flight estimate",
            "peak_gib",
            "GiB",
            "eval, starting model",
            [],
            higher_is_better=False,
            columns={"estimate_gib": "estimate GiB", "measured_over_estimate": "measured ÷ estimate"},
            settings={"demos": profile.demos, "questions": profile.eval_limit, "rl": " ".join(profile.rl)},
        )
        figure.before = machine_state()
        samples: dict[str, dict[str, float]] = {}
        rl_parts, sft_parts, available = estimates(job, longest_prompt(job))

        def record(name: str, peak: float, estimate: float | None) -> None:
            sample = {"peak_gib": peak / GIB}
            if estimate is not None:
                sample |= {"estimate_gib": estimate / GIB, "measured_over_estimate": peak / estimate}
            samples[name] = sample
            figure.variants.append(name)
            say(f"{name}: peak {peak / GIB:.2f} GiB" + (f", estimate {estimate / GIB:.2f} GiB" if estimate else ""))

        job.evaluate(BASE.name, profile.model, overrides=profile.base_eval)
        record("eval, starting model", peaks.popitem()[1], None)
        job.train_sft()
        record("warm start (tapo sft)", peaks.popitem()[1], phase_total(sft_parts, "update"))
        job.evaluate(SFT.name, job.warm_start)
        record("eval, warm start", peaks.popitem()[1], None)
        job.train_rl(TAPO)
        record("RL step (tapo train)", peaks.popitem()[1], max(phase_total(rl_parts, p) for p in ("rollout", "update")))
        worker = [sys.executable, __file__, "--phases-worker", str(job.config_file), job.warm_start]
        worker += [f"--override={o}" for o in [*profile.rl, f"run.output_dir={Path(tmp) / 'phases'}"]]
        done = subprocess.run(worker, capture_output=True, text=True, check=True)
        (logs / "phases.log").write_text(done.stderr)
        marks = json.loads(done.stdout.strip().splitlines()[-1])
        record("RL rollout (phase of a step)", marks["rollout"], phase_total(rl_parts, "rollout"))
        record("RL update (phase of a step)", marks["update"], phase_total(rl_parts, "update"))
        figure.rounds, figure.orders = [samples], [list(samples)]
        figure.after = machine_state()
        run.figures.append(figure)
        peak = max(phase_total(rl_parts, p) for p in ("rollout", "update"))
        run.notes += [
            f"profile {PROFILE} with {profile.demos} demonstrations, {profile.eval_limit} questions per evaluation, "
            "one RL step; stages run once, in the pipeline's order (each needs the one before): no rounds to rotate",
            "evaluations have no estimate: `tapo eval` makes none (its holders are the weights, the engine's KV and "
            "the runtime)",
            f"the RL estimate's holders (memory available {available / GIB:.1f} GiB): "
            + "; ".join(
                f"{name} [{part.phase}] {part.bytes / GIB:.2f} GiB ({100 * part.bytes / peak:.0f} % of the estimated "
                "peak)"
                for name, part in rl_parts.items()
            ),
        ]
        say(figure_markdown(asdict(figure), run.command, args.quick))


if __name__ == "__main__":
    main()
