"""A question's kind: the unit that sampling is stratified by and that skipping keeps a prior for.

TAPO-mini rows carry their kind in ``meta["kind"]`` (single_hop, multi_hop, code, search_code, ...); any other
dataset has one kind per data source, so a mix of published sets is stratified by set.
"""

from __future__ import annotations

from tapo.data.schema import Example


def kind_of(example: Example) -> str:
    """``meta["kind"]`` when the row has one, else its ``data_source``."""
    kind = example.meta.get("kind")
    return str(kind) if kind is not None else example.data_source
