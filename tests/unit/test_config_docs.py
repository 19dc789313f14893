"""docs/configs.md's reference is generated from the schema: it must match it, and every field must say what it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.config.docs import BEGIN, END, iter_sections, render_config_docs, replace_generated
from tapo.config.schema import TapoConfig

CONFIGS_MD = Path(__file__).resolve().parents[2] / "docs" / "configs.md"
SECTIONS = [TapoConfig, *(doc.model for doc in iter_sections())]


def test_configs_md_matches_the_schema():
    text = CONFIGS_MD.read_text(encoding="utf-8")
    assert replace_generated(text, render_config_docs()) == text, (
        "docs/configs.md is out of date: run `tapo config docs --write docs/configs.md`"
    )


@pytest.mark.parametrize("section", SECTIONS, ids=lambda model: model.__name__)
def test_every_section_and_field_is_described(section):
    assert section.__dict__.get("__doc__"), f"{section.__name__} has no docstring of its own"
    undocumented = [name for name, field in section.model_fields.items() if not (field.description or "").strip()]
    assert not undocumented, f"{section.__name__}: fields without a description: {undocumented}"


def test_every_backend_has_its_own_table():
    tagged = {(doc.path, doc.kind) for doc in iter_sections() if doc.kind}
    assert tagged == {
        ("rollout.engine", "transformers"),
        ("rollout.engine", "vllm"),
        ("rollout.engine", "vllm-server"),
        ("tools.search.backend", "bm25"),
        ("tools.search.backend", "dense"),
        ("tools.search.backend", "remote"),
        ("tools.search.backend", "serper"),
        ("tools.code", "sandbox"),
        ("tools.code", "remote"),
    }
    rendered = render_config_docs()
    assert "### `rollout.engine` = `vllm-server`" in rendered and "| `weights_dir` |" in rendered


def test_cli_rewrites_only_the_generated_part(tmp_path):
    page = tmp_path / "configs.md"
    page.write_text(f"# hand-written\n\nprose\n\n{BEGIN}\nPLACEHOLDER-BEFORE-REWRITE\n{END}\nafter\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "docs", "--write", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# hand-written\n\nprose\n\n" + render_config_docs()) and text.endswith("after\n")
    assert "PLACEHOLDER-BEFORE-REWRITE" not in text
    page.write_text("no markers\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "docs", "--write", str(page)])
    assert result.exit_code == 2 and "no generated part" in result.output
