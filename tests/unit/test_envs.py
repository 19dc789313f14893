"""Loading an environment (``env.name``): what it may be, and one line naming the reference for what it may not."""

from __future__ import annotations

import sys
import textwrap

import pytest

from tapo.config import load_config
from tapo.envs import EnvError, load_environment
from tapo.envs.apply import configure, settings


@pytest.fixture
def module(tmp_path, monkeypatch):
    """Write a module ``name`` with ``source`` on the path, as a user's package would be."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, extra: str) -> str:
        (tmp_path / f"{name}.py").write_text(TOOLS + textwrap.dedent(extra))
        sys.modules.pop(name, None)
        return name

    return write


TOOLS = textwrap.dedent('''
    from tapo.envs import Environment


    def rows(split):
        return [{"id": f"{split}-1", "question": "2 + 2?", "data_source": "sums", "golds": ["4"]}]


    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b


    def double(x: int) -> int:
        """Double an integer."""
        return 2 * x


    def half_credit(prediction: str, gold: str) -> float:
        return 0.5
''')


def test_an_environment_or_a_function_of_env_args(module):
    name = module(
        "sums_env",
        """
    sums = Environment(name="sums", dataset=rows, tools=(add,), rewards={"sums": half_credit})


    def make(template="minimal"):
        return Environment(name="sums", dataset=rows, template=template, tools=(add,), rewards={"sums": "em"})
    """,
    )
    assert load_environment(f"{name}:sums").tools[0].__name__ == "add"
    layer = settings(load_environment(f"{name}:make", {"template": "compact"}), {"template": "compact"})
    assert layer["tools"] == {"enabled": [], "extra": ["sums_env:add"]}
    assert layer["reward"] == {"custom_scorers": {"sums": "em"}} and layer["eval"] == {"tools": "add"}
    assert layer["data"]["template"] == "compact_add_only" and layer["data"]["train"].endswith("train.jsonl")
    with pytest.raises(EnvError, match=r"is an Environment, not a function: it takes no env.args \['x'\]"):
        load_environment(f"{name}:sums", {"x": 1})
    with pytest.raises(EnvError, match=r"env.args \{'colour': 1\} do not fit make"):
        load_environment(f"{name}:make", {"colour": 1})


def test_two_tools_of_a_user_need_a_template_of_their_own(module):
    name = module("pair_env", '\npair = Environment(name="pair", dataset=rows, tools=(add, double))\n')
    with pytest.raises(EnvError, match=r"template 'compact' has no variant offering exactly \['add', 'double'\]"):
        configure(None, [f"env.name={name}:pair"])
    module(
        "pair_template_env",
        """
    from tapo.prompts.templates import Template

    TEXT = "Use <add> or <double> as JSON, answer in <answer> </answer>. {question}"
    pair = Environment(name="pair", dataset=rows, template=Template("pair", TEXT, frozenset({"add", "double"})),
                       tools=(add, double))
    """,
    )
    config = configure(None, ["env.name=pair_template_env:pair"])
    assert config.data.template == "pair" and "eval" not in settings(load_environment("pair_template_env:pair"), {})


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_such_module_xyz:env", "env 'no_such_module_xyz:env': importing no_such_module_xyz failed"),
        ("tapo.envs.bundle:nothing", "tapo.envs.bundle has no 'nothing'"),
        ("no-such-entry-point", "no `tapo.envs` entry point of that name is installed"),
        ("tapo.envs.bundle:BUILTIN_SCORERS", "not an Environment or a function returning one (frozenset)"),
        ("tapo.paths:tapo_home", "expected a tapo.envs.Environment, got PosixPath"),
    ],
)
def test_a_reference_that_leads_nowhere_is_one_line(reference, message):
    with pytest.raises(EnvError) as error:
        load_environment(reference)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_every_bad_part_is_its_own_line(module):
    name = module(
        "bad_env",
        """
    def local():
        def nested(x: int) -> int:
            '''Nested.'''
            return x
        return nested


    bad = Environment(name="bad", dataset=[], tools=(local(), 42), rewards={"a": 3, "b": "no-such-scorer"})
    """,
    )
    with pytest.raises(EnvError) as error:
        load_environment(f"{name}:bad")
    lines = str(error.value).splitlines()
    assert len(lines) == 5 and all(line.startswith("env 'bad_env:bad': ") for line in lines)
    assert "dataset is not callable" in lines[0] and "tool 1 ('nested'): it is not importable by a path" in lines[1]
    assert "tool 2 (42): not a function" in lines[2] and "reward of data source 'a': not callable" in lines[3]
    assert "unknown scorer 'no-such-scorer'" in lines[4]


def test_a_tool_the_model_cannot_call_is_named_before_any_work(module):
    name = module(
        "untyped_env",
        '\ndef f(x):\n    """No hint."""\n\n\nbad = Environment(name="u", dataset=rows, tools=(f,))\n',
    )
    with pytest.raises(EnvError, match=r"env 'u': tool untyped_env:f: parameter 'x' has no type hint"):
        configure(None, [f"env.name={name}:bad"])


def test_without_an_environment_the_config_is_unchanged():
    overrides = ["data.template=compact", "tools.enabled=[code]"]
    assert configure(None, overrides) == load_config(None, overrides)
    assert load_config(None, ["env=tapo-mini"]).env.name == "tapo-mini"  # the shorthand of env.name


def test_an_installed_package_names_its_environment_by_entry_point(module, tmp_path):
    """A distribution on the path (its dist-info, as pip writes it) registers ``sums`` in ``tapo.envs``."""
    module("sums_pkg_env", '\nsums = Environment(name="sums", dataset=rows, tools=(add,))\n')
    info = tmp_path / "sums_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sums-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tapo.envs]\nsums = sums_pkg_env:sums\n")
    config = configure(None, ["env.name=sums"])
    assert config.tools.extra == ["sums_pkg_env:add"]
    assert config.data.template == "compact_add_only" and config.reward.custom_scorers == {}
