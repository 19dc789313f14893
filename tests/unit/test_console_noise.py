"""Library lines that reached the console of every run, filtered where tapo uses the library (not by silencing
whole libraries): bm25s' debug lines while indexing, accelerate's note on the tied output head at every save."""

from __future__ import annotations

import logging

from tapo.tools.search.bm25 import BM25Index


def test_building_an_index_logs_no_bm25s_debug_line(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # the root at debug, as with `tapo -v`: bm25s still only warns
    rows = [{"id": f"p{i}", "title": f"Title {i}", "text": f"passage number {i} about things"} for i in range(5)]
    BM25Index.build(rows, tmp_path / "index")
    assert not [r for r in caplog.records if r.name.startswith("bm25s")]


def test_the_tied_head_note_is_dropped_and_other_shared_tensors_still_warn(caplog):
    import tapo.train.checkpoint  # noqa: F401 - installs the filter where checkpoints are saved

    other = logging.getLogger("accelerate.utils.other")
    with caplog.at_level(logging.WARNING):
        other.warning("[RANK 0] Removed shared tensor {'lm_head.weight'} while saving. This should be OK")
        other.warning("[RANK 0] Removed shared tensor {'decoder.weight'} while saving. This should be OK")
    assert [r.getMessage() for r in caplog.records] == [
        "[RANK 0] Removed shared tensor {'decoder.weight'} while saving. This should be OK"
    ]
