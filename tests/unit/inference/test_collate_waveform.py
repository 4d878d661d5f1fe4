"""Collation for a model whose audio expert reads the speech samples (``waveform`` [B, N], the Whisper
expert's contract input): padding to sample buckets, masks, and the dummy of an absent audio expert."""

from __future__ import annotations

import numpy as np

from app.contract import HOP_LENGTH, ModelContract
from app.inference.collate import collate
from app.preprocessing.pipeline import PreparedItem

CONTRACT = ModelContract.from_config(
    {
        "experts": [
            {"name": "text", "modality": "text", "inputs": ["input_ids", "attention_mask"]},
            {"name": "audio", "modality": "audio", "inputs": ["waveform", "audio_mask"]},
        ],
        "inputs": {
            "waveform": {"dtype": "float32", "shape": ["batch", "audio_samples"]},
            "audio_mask": {"dtype": "float32", "shape": ["batch", "audio_samples"]},
        },
        "mask_input": "expert_mask",
    }
)


def _audio(n: int, value: float) -> dict[str, np.ndarray]:
    return {"waveform": np.full(n, value, np.float32), "audio_mask": np.ones(n, np.float32)}


def test_waveforms_are_padded_to_the_sample_bucket_with_mask_zero() -> None:
    text = {"input_ids": np.array([101, 2000, 102]), "attention_mask": np.ones(3, np.int64)}
    items = [
        PreparedItem.of(audio=_audio(3000, 0.5)),
        PreparedItem.of(text=text),
        PreparedItem.of(audio=_audio(5000, -0.25), text=text),
    ]
    feeds = collate(items, contract=CONTRACT, audio_buckets=[20, 50, 100])
    n = 50 * HOP_LENGTH  # the smallest bucket (in 10-ms hops) holding 5000 samples
    assert feeds["waveform"].shape == feeds["audio_mask"].shape == (3, n)
    assert feeds["waveform"].dtype == feeds["audio_mask"].dtype == np.float32
    np.testing.assert_array_equal(feeds["audio_mask"][0], (np.arange(n) < 3000).astype(np.float32))
    np.testing.assert_array_equal(feeds["audio_mask"][2], (np.arange(n) < 5000).astype(np.float32))
    assert (feeds["waveform"][0, :3000] == 0.5).all() and (feeds["waveform"][0, 3000:] == 0).all()
    np.testing.assert_array_equal(feeds["expert_mask"], [[0, 1], [1, 0], [1, 1]])
    # the text-only row's absent audio: the one-sample dummy (mask 1 there, so no branch sees an empty mask)
    np.testing.assert_array_equal(feeds["audio_mask"][1, :2], [1, 0])


def test_without_buckets_the_batch_is_padded_to_its_longest_clip() -> None:
    feeds = collate(
        [PreparedItem.of(audio=_audio(1234, 0.1)), PreparedItem.of(audio=_audio(999, 0.2))], contract=CONTRACT
    )
    assert feeds["waveform"].shape == (2, 1234)
