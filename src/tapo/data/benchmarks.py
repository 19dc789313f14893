"""Evaluation sets as ``Example`` rows: the Search-R1 QA suite (FlashRAG's rows) and the math sets.

The QA suite uses the splits Search-R1 reports on (test where the set has one, dev otherwise); ``data_source`` is
the set's name, so results can be broken down per set and each set can get its scorer.
"""

from __future__ import annotations

from pathlib import Path

from tapo.data.schema import Example
from tapo.data.sources import Source, convert, flashrag, gsm8k, load_raw, problem_answer

FLASHRAG = "RUC-NLPIR/FlashRAG_datasets"
QA_SUITE = {
    "nq": "test",
    "triviaqa": "test",
    "popqa": "test",
    "hotpotqa": "dev",
    "2wikimultihopqa": "dev",
    "musique": "dev",
    "bamboogle": "test",
}
BENCHMARKS: dict[str, Source] = {
    **{name: Source(name, FLASHRAG, split, flashrag, name, "fact-reasoning", name) for name, split in QA_SUITE.items()},
    "gsm8k": Source("gsm8k", "openai/gsm8k", "test", gsm8k, "gsm8k", "math", "main"),
    "math500": Source("math500", "HuggingFaceH4/MATH-500", "test", problem_answer, "math500", "math"),
    "aime24": Source("aime24", "HuggingFaceH4/aime_2024", "train", problem_answer, "aime24", "math"),
}


def load_benchmark(name: str, source_dir: str | Path | None = None, limit: int | None = None) -> list[Example]:
    """The rows of benchmark ``name`` (split ``test``), in the source's order; ``limit`` keeps the first ones."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    source = BENCHMARKS[name]
    return convert(source, load_raw(source, source_dir), "test").examples[:limit]
