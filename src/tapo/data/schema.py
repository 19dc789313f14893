"""The one row format every dataset is converted to before prompts are rendered."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    data_source: str = Field(min_length=1)
    ability: str = "qa"
    golds: list[str] = Field(min_length=1)
    split: str = "train"
    meta: dict[str, Any] = Field(default_factory=dict)
