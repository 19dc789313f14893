"""The main job, stage by stage: every stage but one is a ``tapo`` command run in its own process, so each one is
also something a user can run (and debug) alone, a crash in one stage cannot corrupt another's memory, and the
pipeline itself stays a thin, resumable list of commands. The exception is ``demos``, which runs in the job's
process: it replays oracle plans through the rollout and the real tools, with a tokenizer but no model.

The pipeline supervises its stages: a stage's process dies with the pipeline's (Linux parent-death signal), so
killing ``tapo pipeline run`` in any way, ``kill -9`` included, never leaves a stage running on in the background
(a second copy of a training run writing the same directory); the rerun resumes that stage.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

from rich.console import Console

from tapo.config import load_config
from tapo.config.loader import dump_config
from tapo.io.atomic import write_jsonl, write_text
from tapo.io.parent_death import die_with_parent_hook
from tapo.io.runs import RunLock
from tapo.models.resolve import latest_run_checkpoint
from tapo.pipeline.arms import (
    BASE,
    LEVERS,
    NO_MASK,
    NO_TOOLS,
    SFT,
    TAPO,
    TOOL_COST,
    TOOL_COST_OTC,
    Arm,
    save_arms,
)
from tapo.pipeline.outputs import (
    data_problem,
    demos_problem,
    eval_problem,
    report_problem,
    run_problem,
    set_aside_unusable,
)
from tapo.pipeline.profiles import Profile
from tapo.pipeline.stages import Stage, StageRunner
from tapo.pipeline.warm_start import DEMOS_FILE


class StageFailed(RuntimeError):
    """A stage's command exited non-zero; rerunning the job resumes at that stage."""


def run_stage_command(command: list[str]) -> int:
    """Run one stage's command to its end and return its exit status; the command dies with this process."""
    return subprocess.run(command, check=False, preexec_fn=die_with_parent_hook()).returncode


class MainJob:
    """Data → warm-start demos → evaluate base → SFT → evaluate → TAPO RL (+ baselines) → evaluate → report."""

    def __init__(self, profile: Profile, root: Path, console: Console) -> None:
        self.profile = profile
        self.root = root
        self.console = console
        self.data_dir = root / "data"
        self.config_file = root / "pipeline.yaml"
        self.demos_file = root / DEMOS_FILE

    # --- configuration shared by every stage -------------------------------------------------------------
    def write_config(self) -> None:
        """The config every stage starts from: data paths, search index, run location, then the profile's own."""
        # absolute paths: each checkpoint carries this config, and must find its index from any directory
        root, data = self.root.absolute(), self.data_dir.absolute()
        overrides = [
            f"run.output_dir={root}",
            f"run.seed={self.profile.seed}",
            f"data.train={data / 'train.jsonl'}",
            f"data.validation={data / 'validation.jsonl'}",
            f"data.test={data / 'test.jsonl'}",
            f"tools.search.backend.index_dir={data / 'index'}",
            f"tools.search.cache.path={root / 'search-cache.sqlite'}",
            *self.profile.common,
            f"rollout.engine={self.profile.engine}",  # after common: engine settings there combine with it
        ]
        self.root.mkdir(parents=True, exist_ok=True)
        write_text(self.config_file, dump_config(load_config(None, overrides)))
        save_arms(self.root, self.arms())  # what `tapo report` rebuilds the summary from

    def _tapo(self, *args: str) -> None:
        command = [sys.executable, "-m", "tapo", *args]
        self.console.print(f"[dim]$ tapo {' '.join(args)}[/]", highlight=False, soft_wrap=True)
        if run_stage_command(command) != 0:
            raise StageFailed(f"`tapo {' '.join(args)}` failed; fix the cause and rerun to resume from this stage")

    # --- stages ----------------------------------------------------------------------------------------------
    def build_data(self) -> None:
        size = self.profile.data
        self._tapo(
            "data", "build", "mini", "--out", str(self.data_dir), "--seed", str(self.profile.seed),
            "--train", str(size.train), "--validation", str(size.validation), "--test", str(size.test),
        )  # fmt: skip

    def build_demos(self) -> None:
        from transformers import AutoTokenizer

        from tapo.data.io import load_examples
        from tapo.io.event_loop import EventLoopThread
        from tapo.models.resolve import resolve_model
        from tapo.pipeline.demos import DemoBuilder
        from tapo.rewards.compute import RewardFunction
        from tapo.tools.catalog import build_tools

        config = load_config(self.config_file)
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(self.profile.model))
        examples = load_examples(self.data_dir / "train.jsonl")[: self.profile.demo_questions()]
        stats: dict[str, int] = {}
        tools = build_tools(config.tools)
        with RewardFunction(config.reward, config.rollout.max_response_tokens) as reward, EventLoopThread() as loop:
            builder = DemoBuilder(tokenizer, tools, config.rollout, reward, config.data.template, loop=loop)
            try:
                with self.console.status(f"replaying {len(examples)} oracle plans through the real tools"):
                    demos = builder.build(examples, stats)
            finally:
                loop.run(tools.aclose())
        dropped = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in stats.items() if why != "kept" and n)
        kinds = Counter(str(d.example.meta.get("kind", "?")) for d in demos if d.example is not None)
        self.console.print(
            f"demonstrations: kept {stats.get('kept', 0)} of {len(examples)} oracle plans"
            + (f" (dropped: {dropped})" if dropped else "")
            + (f"; by kind: {', '.join(f'{kind} {n}' for kind, n in sorted(kinds.items()))}" if kinds else ""),
            highlight=False,
        )
        if not demos:
            raise StageFailed(
                f"no demonstration survived the replay ({stats}): raise rollout.max_new_tokens_per_turn, "
                "rollout.max_response_tokens or rollout.max_turns so the oracle plans fit"
            )
        write_jsonl(self.demos_file, (d.to_row() for d in demos))

    def evaluate(self, name: str, model: str, tools: str = "all", overrides: list[str] | None = None) -> None:
        limit = ["--limit", str(self.profile.eval_limit)] if self.profile.eval_limit else []
        self._tapo(
            "eval", "--config", str(self.config_file), "--model", model, "--data", str(self.data_dir / "test.jsonl"),
            "--tools", tools, "--greedy", "--samples", "1", *limit, "--out", str(self.root / "eval" / name),
            *(overrides or []),
        )  # fmt: skip

    def train_sft(self) -> None:
        """``tapo sft``, unless the warm start is finished and intact (a rerun keeps it: SFT saves only at its end,
        and ``tapo sft`` refuses a finished run); checkpoints that fail the checks are set aside first."""
        run_dir = self.root / SFT.name
        set_aside_unusable(run_dir)
        if run_problem(run_dir) is None:
            self.console.print(f"{run_dir}: the warm start is finished and intact, kept", highlight=False)
            return
        self._tapo(
            "sft", "--config", str(self.config_file), "--demos", str(self.demos_file),
            f"run.name={SFT.name}", f"model.name={self.profile.model}", *self.profile.sft,
        )  # fmt: skip

    def train_rl(self, arm: Arm) -> None:
        """``tapo train``, resuming the arm's run from its newest intact checkpoint when it has one (checkpoints
        that fail the checks are set aside first), else from the warm start."""
        run_dir = self.root / arm.name
        set_aside_unusable(run_dir)
        if any((run_dir / "checkpoints").glob("step-*")):
            self._tapo("train", "--resume", str(run_dir))
            return
        self._tapo(
            "train", "--config", str(self.config_file), f"run.name={arm.name}", f"model.name={self.warm_start}",
            *self.profile.rl, *arm.overrides,
        )  # fmt: skip

    @property
    def warm_start(self) -> str:
        checkpoint = latest_run_checkpoint(self.root / SFT.name)
        return str(checkpoint) if checkpoint else str(self.root / SFT.name)

    def report(self) -> None:
        """``tapo report`` on the job directory: it rebuilds summary.md / summary.json from the finished evaluations
        and the arms in ``arms.json``, then the HTML report, so the printed command redoes the whole stage."""
        self._tapo("report", str(self.root))

    # --- the plan ----------------------------------------------------------------------------------------
    def arms(self) -> list[Arm]:
        """The RL runs: TAPO, its extra seeds and the profile's baselines."""
        arms = [TAPO, *(TAPO.seeded(k, self.profile.seed + k) for k in range(1, self.profile.seeds))]
        if "no_tools" in self.profile.baselines:
            from tapo.eval.modes import template_for_mode

            template = template_for_mode(load_config(self.config_file).data.template, "none")
            arms.append(NO_TOOLS.with_overrides(f"data.template={template}"))
        if "no_mask" in self.profile.baselines:
            arms.append(NO_MASK)
        if "tool_cost" in self.profile.baselines:
            arms.append(TOOL_COST)
        if "tool_cost_otc" in self.profile.baselines:
            arms.append(TOOL_COST_OTC)
        if "levers" in self.profile.baselines:
            arms.append(LEVERS)
        return arms

    def planned_work(self) -> tuple[float, float, float]:
        """Units of work the job's estimate prices: questions per evaluation, demonstrations x epochs of the warm
        start, trajectories of one RL arm (steps x prompts x group size)."""
        questions = self.profile.eval_limit or self.profile.data.test
        sft = load_config(self.config_file, self.profile.sft).sft
        trainer = load_config(self.config_file, self.profile.rl).trainer
        steps = trainer.max_steps or trainer.epochs * max(1, self.profile.data.train // trainer.prompts_per_step)
        return (
            questions,
            self.profile.demo_questions() * sft.epochs,
            steps * trainer.prompts_per_step * trainer.group_size,
        )

    def _eval_stage(
        self, name: str, title: str, run: Callable[[], None], questions: float, trained_by: str | None = None
    ) -> Stage:
        """Evaluation ``eval/NAME``: it reads the test split and, for a trained model, that training's run."""
        needs = ("data", trained_by) if trained_by else ("data",)
        verify = partial(eval_problem, self.root / "eval" / name)
        return Stage(f"eval-{name}", title, run, questions, "eval", needs=needs, verify=verify)

    def stages(self) -> list[Stage]:
        """The plan, each stage with the stages whose outputs it reads and the check of its own outputs."""
        model = self.profile.model
        questions, demos, trajectories = self.planned_work()
        stages = [
            Stage(
                "data",
                "build TAPO-mini and its search index",
                self.build_data,
                verify=partial(data_problem, self.data_dir),
            ),
            Stage(
                "demos",
                "replay oracle plans into warm-start demonstrations",
                self.build_demos,
                needs=("data",),
                verify=partial(demos_problem, self.demos_file),
            ),
            self._eval_stage(
                BASE.name,
                f"evaluate the {BASE.title} ({model})",
                lambda: self.evaluate(BASE.name, model, overrides=self.profile.base_eval),
                questions,
            ),
            Stage(
                SFT.name,
                "supervised warm start on the demonstrations",
                self.train_sft,
                demos,
                "sft",
                needs=("demos",),
                verify=partial(run_problem, self.root / SFT.name),
            ),
            self._eval_stage(
                SFT.name,
                "evaluate the warm start",
                lambda: self.evaluate(SFT.name, self.warm_start),
                questions,
                SFT.name,
            ),
        ]
        for arm in self.arms():
            stages.append(
                Stage(
                    arm.name,
                    arm.title,
                    lambda a=arm: self.train_rl(a),
                    trajectories,
                    "rl",
                    needs=("data", SFT.name),
                    verify=partial(run_problem, self.root / arm.name),
                )
            )
            stages.append(
                self._eval_stage(
                    arm.name,
                    f"evaluate {arm.title}",
                    lambda a=arm: self.evaluate(a.name, str(self.root / a.name), a.tools),
                    questions,
                    arm.name,
                )
            )
        report = Stage(
            "report",
            "results table, plots and HTML report",
            self.report,
            collects=True,
            verify=partial(report_problem, self.root),
        )
        return [*stages, report]

    def run(self) -> None:
        """Every stage not yet done, holding the job directory's lock throughout: a second ``tapo pipeline run``
        on the same directory is refused at once (``RunLocked``, naming this process's pid) instead of rebuilding
        the data and training the warm start again next to this one. The lock is taken before the state file is
        read, so what is done is decided by the one writer."""
        with RunLock(self.root):
            self.write_config()
            StageRunner(self.root / "pipeline-state.json", self.console).run(self.stages())

    def next_commands(self) -> list[tuple[str, str]]:
        """What to run next with the trained model: (what, command). The model's run directory carries the config
        it was trained with (template, tools, search index), so neither command needs ``--config``."""
        model = self.root / TAPO.name
        return [
            ("chat with the TAPO model", f'tapo chat --model {model} -q "What is 1234 * 5678?"'),
            ("evaluate it on the test split", f"tapo eval --model {model} --data {self.data_dir / 'test.jsonl'}"),
            ("open the report", str(self.root / "report" / "report.html")),
        ]
