"""Shape buckets (issue 15, item 3; ``SENTIMENT_SHAPE_BUCKETS``): filler rows make a batch's size and each
expert's number of present rows powers of two, without changing any real row's answer, and warm-up runs
every such shape, so cuDNN's per-shape algorithm choice on a GPU happens before serving."""

from __future__ import annotations

import numpy as np
import pytest

from app.config import REPO_ROOT, Settings
from app.inference.collate import filler_rows, row_buckets
from app.inference.model import warmup_batches
from app.inference.predictor import ModelOutput, Predictor
from app.preprocessing.pipeline import RawInput
from tests.media import face_jpeg, speech_wav

MODEL_DIR = REPO_ROOT / "models" / "fused-sentiment"
POWERS = (1, 2, 4, 8, 16)


def test_row_buckets_hold_a_full_batch_plus_its_filler_rows() -> None:
    assert row_buckets(4) == (1, 2, 4, 8)
    assert row_buckets(64) == (1, 2, 4, 8, 16, 32, 64, 128)
    assert row_buckets(5) == (1, 2, 4, 8, 16)


@pytest.mark.parametrize(
    "present",
    [
        [[1, 0, 0]],
        [[1, 1, 0], [1, 0, 0], [0, 1, 0]],
        [[1, 1, 1]] * 5 + [[0, 0, 1]] * 3,
        [[1, 0, 0]] * 8,
        [[0, 0, 0], [1, 0, 1], [1, 1, 1]],
        [[1, 1, 0]] * 3 + [[0, 0, 1]] * 5,
    ],
)
def test_filler_rows_round_every_count_and_the_batch_up_to_buckets(present: list[list[int]]) -> None:
    real = np.array(present, dtype=bool)
    fill = filler_rows(real, POWERS)
    both = np.concatenate([real, fill])
    assert len(both) in POWERS
    counts = both.sum(axis=0)
    for c, c_real in zip(counts, real.sum(axis=0), strict=True):
        assert (c == 0) if c_real == 0 else (c in POWERS and c >= c_real)  # absent stays absent
        assert c < 2 * c_real or c == c_real == 0  # the smallest bucket that holds the real rows
    if all(c in (0, *POWERS) for c in real.sum(axis=0)) and len(real) in POWERS:
        assert len(fill) == 0  # nothing to round: no filler row


@pytest.fixture(scope="module")
def predictors() -> tuple[Predictor, Predictor]:
    base = {"model_dir": MODEL_DIR.parent, "providers": ["CPUExecutionProvider"], "max_batch_size": 8}
    plain, bucketed = Predictor(Settings(**base)), Predictor(Settings(**base, shape_buckets=True))
    plain.load()
    bucketed.load()
    return plain, bucketed


def test_filler_rows_do_not_change_any_answer(predictors: tuple[Predictor, Predictor]) -> None:
    plain, bucketed = predictors
    requests = [
        RawInput("what a lovely afternoon", face_jpeg(), speech_wav()),
        RawInput(None, face_jpeg(), None),
        RawInput("the bus was late again", None, None),
        RawInput(None, None, speech_wav()),
        RawInput("fine, I guess", face_jpeg(), None),
    ]
    items = [plain.prepare(r) for r in requests]
    feeds = bucketed.collate(items)
    mask = feeds["expert_mask"]
    assert len(mask) in row_buckets(8) and len(mask) > len(items)  # 5 items and 3 faces → 8 rows
    assert all(int(c) in (0, *row_buckets(8)) for c in mask.sum(axis=0))
    np.testing.assert_array_equal(mask[: len(items)], plain.collate(items)["expert_mask"])
    want, got = plain.run_batch(items), bucketed.run_batch(items)
    for w, g in zip(want, got, strict=True):
        assert isinstance(w, ModelOutput) and isinstance(g, ModelOutput)
        np.testing.assert_allclose(g.probabilities, w.probabilities, atol=1e-5)
        np.testing.assert_allclose(
            np.nan_to_num(g.modality_probabilities), np.nan_to_num(w.modality_probabilities), atol=1e-5
        )


def test_warmup_runs_every_bucket_shape(predictors: tuple[Predictor, Predictor]) -> None:
    plain, bucketed = predictors
    assert bucketed.model is not None
    contract = bucketed.model.contract
    plain_batches = warmup_batches(contract, plain.settings, plain.audio_buckets)
    batches = warmup_batches(contract, bucketed.settings, bucketed.audio_buckets)
    every = {len(b) for b in batches if len(b[0].experts) == len(contract.experts)}
    assert set(row_buckets(8)) <= every
    audio_only = {
        (len(b), b[0].tensors("audio")["audio_features"].shape[0])
        for b in batches
        if set(b[0].experts) == {"audio"}
    }
    assert {(n, t) for n in row_buckets(8) for t in bucketed.audio_buckets} <= audio_only
    assert len(batches) == len(plain_batches) + len(row_buckets(8)) - 2 + len(row_buckets(8)) * len(
        bucketed.audio_buckets
    )
    assert bucketed.warmup() == len(batches)  # every batch runs on the real model
