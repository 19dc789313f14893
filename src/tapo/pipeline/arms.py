"""The models the main job trains and evaluates, each defined once: its name (the run and ``eval/`` directory),
the title the results table gives it, the tools its evaluation may call, and its RL config overrides.

The job builds its stages from these values and the summary states its goals and comparisons with them, so
renaming an arm renames it everywhere: no string constant elsewhere can name an arm the job no longer runs.
The job also writes the arms it runs to ``arms.json``, from which ``tapo report`` rebuilds the summary by hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tapo.io.atomic import write_json

ARMS_FILE = "arms.json"
_SEED = re.compile(r"^(?P<arm>.+)-seed(?P<seed>\d+)$")  # an arm's extra seeds: ``tapo-seed1`` ...


@dataclass(frozen=True)
class Arm:
    """One model of the results table; the RL arms also carry the overrides their training run adds."""

    name: str
    title: str
    tools: str = "all"  # tools mode of its evaluation
    overrides: tuple[str, ...] = ()  # config overrides of its RL run, after the profile's ``rl``

    def with_overrides(self, *overrides: str) -> Arm:
        return replace(self, overrides=(*self.overrides, *overrides))

    def seeded(self, k: int, seed: int) -> Arm:
        """Extra seed ``k`` of this arm: the same run with ``run.seed=seed``, named ``<name>-seed<k>``."""
        return replace(self, name=f"{self.name}-seed{k}", title=f"{self.title}, seed {k}").with_overrides(
            f"run.seed={seed}"
        )


def seed_of(name: str) -> tuple[str, int]:
    """(arm, seed) of an arm's name: ``("tapo", 1)`` for ``tapo-seed1``, ``("tapo", 0)`` for ``tapo`` itself."""
    match = _SEED.match(name)
    return (match["arm"], int(match["seed"])) if match else (name, 0)


# evaluated, never trained by RL
BASE = Arm("base", "starting model")
SFT = Arm("sft", "warm start (SFT)")
# RL arms
TAPO = Arm("tapo", "TAPO (RL on the warm start)")
NO_TOOLS = Arm("dapo-no-tools", "DAPO without tools", "none", ("tools.enabled=[]",))  # + the no-tools template
NO_MASK = Arm("tapo-no-mask", "TAPO, tool tokens left in the loss", "all", ("trainer.mask_tool_tokens=false",))
TOOL_COST = Arm("tapo-tool-cost", "TAPO + tool-cost bonus (OTC)", "all", ("reward.tool_cost.enabled=true",))
TOOL_COST_OTC = Arm(  # OTC-GRPO's own reward (issue 29): the score multiplied, c from the group's fewest calls
    "tapo-tool-cost-otc",
    "TAPO + OTC-GRPO's multiplicative tool cost",
    "all",
    ("reward.tool_cost.enabled=true", "reward.tool_cost.form=otc", "reward.tool_cost.optimal_calls=group"),
)
LEVERS = Arm(  # the learning-per-CPU-minute levers together (docs/training.md), each off in TAPO itself
    "tapo-levers",
    "TAPO + skipping, kind strata, guidance",
    "all",
    ("trainer.skip_constant.enabled=true", "trainer.stratify_kinds=true", "trainer.guidance.enabled=true"),
)


class ArmsError(ValueError):
    """An ``arms.json`` that is not the list of arms the job wrote."""


def save_arms(root: Path, arms: list[Arm]) -> None:
    write_json(root / ARMS_FILE, [asdict(arm) for arm in arms])


def load_arms(root: Path) -> list[Arm] | None:
    """The RL arms a job directory ran (its ``arms.json``); None when ``root`` holds none (not a job directory)."""
    path = root / ARMS_FILE
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [Arm(row["name"], row["title"], row["tools"], tuple(row["overrides"])) for row in rows]
    except (ValueError, TypeError, KeyError) as error:
        raise ArmsError(f"{path}: not a list of arms (name, title, tools, overrides): {error!r}") from None
