"""The row format of ``tapo reward score``: one JSON object per line, checked with a one-line error."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ScoreRow(BaseModel):
    """``{"response", "golds", "data_source"}`` plus optional model-token and tool-call counts (what the overlong
    penalty and the tool-cost bonus read); other keys are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    response: str
    golds: list[str] = Field(min_length=1)
    data_source: str
    n_model_tokens: int = Field(0, ge=0)
    tool_calls: int = Field(0, ge=0)


def parse_row(line: str) -> ScoreRow:
    """Parse one JSONL line; ValueError with one readable line (field and problem) when it is malformed."""
    try:
        return ScoreRow.model_validate(json.loads(line))
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in error.errors())
        raise ValueError(problems) from None
