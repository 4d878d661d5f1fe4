"""Leave-one-corpus-out jobs shared by the two training processes (``pipeline.run_loco_jobs``): each job runs
once, a job claimed by a process that died is run again, and the results come back in corpus order."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from app.training.pipeline import LOCO_CORPORA, _claim, collect_loco, run_loco_jobs


class _StubData:
    """Stands in for ``TextData``: records which corpora it was asked to leave out."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def loco(self, corpus: str, stage_dir: Path) -> dict[str, Any]:
        self.ran.append(corpus)
        return {"model_macro_f1": float(len(corpus)), "stage_dir": str(stage_dir)}


def _args(tmp_path: Path, skip: bool = False) -> argparse.Namespace:
    return argparse.Namespace(skip_loco=skip, cache_dir=tmp_path / "cache")


def test_a_job_is_claimed_once(tmp_path: Path) -> None:
    assert _claim(tmp_path / "x.claim")
    assert not _claim(tmp_path / "x.claim")


def test_two_processes_share_the_jobs_and_a_dead_claim_is_rerun(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    # the other process finished "meld" and died while running "movie"
    assert _claim(jobs / "meld.claim")
    (jobs / "meld.json").write_text(json.dumps({"model_macro_f1": 0.5}), encoding="utf-8")
    assert _claim(jobs / "movie.claim")
    here = _StubData()
    assert run_loco_jobs(_args(tmp_path), jobs, here) == 3  # type: ignore[arg-type]
    assert here.ran == ["nyt", "tweets", "amazon"]
    assert run_loco_jobs(_args(tmp_path), jobs, here) == 0  # type: ignore[arg-type]
    results = collect_loco(_args(tmp_path), jobs, here)  # type: ignore[arg-type]
    assert here.ran == ["nyt", "tweets", "amazon", "movie"]
    assert list(results) == list(LOCO_CORPORA)
    assert results["meld"] == {"model_macro_f1": 0.5}
    assert results["movie"]["model_macro_f1"] == 5.0
    assert results["tweets"]["stage_dir"] == str(tmp_path / "cache" / "stages")


def test_skip_loco_runs_nothing(tmp_path: Path) -> None:
    here = _StubData()
    assert run_loco_jobs(_args(tmp_path, skip=True), tmp_path, here) == 0  # type: ignore[arg-type]
    assert collect_loco(_args(tmp_path, skip=True), tmp_path, here) == {}  # type: ignore[arg-type]
    assert here.ran == []
