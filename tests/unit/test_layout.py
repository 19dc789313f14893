"""The package layout follows the data flow: a module imports only modules at or below its stage.

Every import counts, at module level or inside a function (a lazy import is still a dependency). The table
is docs/design.md's picture; a new package must be placed in it before it can be imported from anywhere.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# Stage of each top-level part of tapo, in data-flow order. Equal stages may not import each other.
STAGES: dict[str, int] = {
    # foundation: nothing from the flow
    "tapo": 0,  # the package root: its version
    "tapo.protocol": 0,  # tags, stop strings, parsing: imports nothing from tapo
    "tapo.stats": 0,  # 95 % intervals and goal verdicts: imports nothing from tapo
    "tapo.paths": 0,
    "tapo.config": 1,  # validates tool names against the protocol
    "tapo.io": 2,  # run directories hold the resolved config
    # services the flow calls; they know nothing of datasets, prompts or trajectories
    "tapo.models": 3,
    "tapo.engines": 3,
    "tapo.tools": 3,
    # the flow: dataset rows → records → prompts → rollout | rewards → update → training → evaluation
    "tapo.data": 4,  # TAPO-mini indexes its corpus with the search tool's BM25
    "tapo.records": 5,
    "tapo.prompts": 6,
    "tapo.rollout": 7,  # produces trajectories ...
    "tapo.rewards": 7,  # ... and scores text: neither imports the other
    "tapo.algo": 8,
    "tapo.envs": 8,  # a user's task: dataset rows, template, tools and scorers as one bundle of config settings
    "tapo.train": 9,
    "tapo.eval": 10,
    "tapo.pipeline": 11,
    "tapo.cli": 12,
    "tapo.__main__": 13,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str:
    """The entry of STAGES a module belongs to: ``tapo.rewards.format_check`` → ``tapo.rewards``."""
    return ".".join(module.split(".")[:2])


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "tapo" or name.startswith("tapo.")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {i for i in _imports(path) if i in modules} for name, path in modules.items()}


GRAPH = _graph()


def test_every_part_has_a_stage():
    assert {_part(m) for m in GRAPH} <= set(STAGES), "place the new package in STAGES"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_follow_the_data_flow(module):
    stage = STAGES[_part(module)]
    against = sorted(
        target for target in GRAPH[module] if _part(target) != _part(module) and STAGES[_part(target)] >= stage
    )
    assert not against, f"{module} (stage {stage}) imports {against}, which are not below it"


def test_no_import_cycles_between_modules():
    """Within a package too: a cycle hidden by a lazy import is still a cycle."""
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the path, 2 done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if target.startswith(module + "."):
                continue  # a package importing its own submodules (its __init__ re-exports) is no cycle
            assert state[target] != 1, "import cycle: " + " → ".join([*path[path.index(target) :], target])
            if state[target] == 0:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if state[module] == 0:
            visit(module)


def test_the_check_sees_a_violation():
    """The table is live: a rewards module importing the rollout would be reported."""
    assert STAGES["tapo.rollout"] >= STAGES["tapo.rewards"]
    assert "tapo.protocol" in GRAPH["tapo.rollout.agent_loop"] and "tapo.records" in GRAPH["tapo.rewards.compute"]


# What assembles a run lives below the CLI (tapo.train.run, tapo.eval.runner, tapo.rollout.chat): a command parses,
# calls one builder and prints, so the dry run, benchmarks and tests build runs exactly as the commands do.
BUILDERS = {
    "tapo.train.trainer",  # DapoTrainer
    "tapo.train.source",  # ToolRolloutSource
    "tapo.train.sft.SftTrainer",
    "tapo.train.setup.load_policy",
    "tapo.rollout.agent_loop",  # RolloutRunner
    "tapo.engines.factory.build_engine",
    "tapo.tools.catalog.build_tools",  # and ToolCatalog.build: a registry of started tools
}


def _engine_classes() -> set[str]:
    """Every generation engine (a class with ``agenerate``), by qualified name: building one is a builder's job."""
    found = set()
    for module in GRAPH:
        if module.startswith("tapo.engines.") and module != "tapo.engines.base":
            tree = ast.parse((SRC / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and any(
                    isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef) and m.name == "agenerate" for m in node.body
                ):
                    found.add(f"{module}.{node.name}")
    return found


def _imported_names(path: Path) -> set[str]:
    """Every ``module`` and ``module.name`` a file imports (the graph keeps modules only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("tapo.cli")))
def test_the_cli_builds_no_trainer_engine_or_rollout_source(module):
    forbidden = BUILDERS | _engine_classes()
    path = SRC / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = path.with_suffix("") / "__init__.py"
    used = sorted(_imported_names(path) & forbidden)
    assert not used, f"{module} builds {used} itself: build through tapo.train.run / tapo.eval.runner instead"


def test_the_builder_rule_sees_every_engine():
    engines = {name.rsplit(".", 1)[1] for name in _engine_classes()}
    assert {"HFEngine", "ForcedPrefixEngine", "OpenAICompatEngine"} <= engines
