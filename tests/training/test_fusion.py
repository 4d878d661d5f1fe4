"""Fusion semantics: product of experts with prior correction, mask invariance, padding invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.contract import INPUT_NAMES

from .helpers import inputs, random_fused, run_torch


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return random_fused()


def _garbage(
    feeds: dict[str, np.ndarray], rows: np.ndarray, modality: int, kind: str
) -> dict[str, np.ndarray]:
    out = {k: v.copy() for k, v in feeds.items()}
    fill = {"nan": np.nan, "inf": np.inf, "huge": 1e30}[kind]
    if modality == 0:
        out["input_ids"][rows] = 10**12 if kind != "nan" else -7  # out-of-vocabulary ids must not crash
        out["attention_mask"][rows] = 0
    elif modality == 1:
        out["face"][rows] = fill
    else:
        out["audio_features"][rows] = fill
        out["audio_mask"][rows] = np.nan if kind == "nan" else 0.0
    return out


@pytest.mark.parametrize("kind", ["nan", "inf", "huge"])
@pytest.mark.parametrize("modality", [0, 1, 2])
def test_absent_modality_tensors_do_not_change_output(model, modality: int, kind: str) -> None:
    feeds = inputs(4, 12, 90, seed=modality)
    feeds["modality_mask"][:, modality] = 0.0
    feeds["modality_mask"][3] = 0.0  # row 3: nothing present
    p_ref, mp_ref = run_torch(model, feeds)
    p_bad, mp_bad = run_torch(model, _garbage(feeds, np.arange(4), modality, kind))
    assert np.isfinite(p_bad).all() and np.isfinite(mp_bad).all()
    np.testing.assert_array_equal(p_bad, p_ref)
    np.testing.assert_array_equal(mp_bad, mp_ref)


def test_all_absent_row_is_the_prior_and_absent_rows_are_the_prior(model) -> None:
    feeds = inputs(3, 8, 50)
    feeds["modality_mask"][:] = [[0, 0, 0], [1, 0, 0], [0, 1, 1]]
    p, mp = run_torch(model, feeds)
    prior = torch.exp(model.fusion.log_prior).numpy()
    np.testing.assert_allclose(p[0], prior, atol=1e-6)
    np.testing.assert_allclose(mp[0], np.stack([prior] * 3), atol=1e-6)
    np.testing.assert_allclose(mp[1, 1:], np.stack([prior] * 2), atol=1e-6)
    np.testing.assert_allclose(mp[2, 0], prior, atol=1e-6)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)


def test_fused_equals_product_of_experts_with_prior_correction(model) -> None:
    """fused ∝ Π_{m∈S} p_m / π^{|S|-1}, computed here from the per-modality outputs in float64."""
    feeds = inputs(5, 10, 70, seed=3)
    feeds["modality_mask"][:] = [[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]
    p, mp = run_torch(model, feeds)
    prior = torch.exp(model.fusion.log_prior).double().numpy()
    for b in range(5):
        present = feeds["modality_mask"][b] > 0
        unnorm = np.prod(mp[b][present].astype(np.float64), axis=0) / prior ** (present.sum() - 1)
        np.testing.assert_allclose(p[b], unnorm / unnorm.sum(), atol=1e-5)


def test_text_padding_does_not_change_output(model) -> None:
    feeds = inputs(1, 9, 60, seed=5)
    padded = {k: v.copy() for k, v in feeds.items()}
    extra = 23
    padded["input_ids"] = np.concatenate([feeds["input_ids"], np.full((1, extra), 4567)], axis=1)
    padded["attention_mask"] = np.concatenate(
        [feeds["attention_mask"], np.zeros((1, extra), np.int64)], axis=1
    )
    for a, b in zip(run_torch(model, feeds), run_torch(model, padded), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("frames", [1, 7, 61, 200])
def test_audio_padding_does_not_change_output(model, frames: int) -> None:
    feeds = inputs(1, 6, frames, seed=frames)
    padded = {k: v.copy() for k, v in feeds.items()}
    extra = 37
    rng = np.random.default_rng(0)
    padded["audio_features"] = np.concatenate(
        [feeds["audio_features"], rng.normal(0, 100, (1, extra, 64)).astype(np.float32)], axis=1
    )
    padded["audio_mask"] = np.concatenate([feeds["audio_mask"], np.zeros((1, extra), np.float32)], axis=1)
    for a, b in zip(run_torch(model, feeds), run_torch(model, padded), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_batch_rows_are_independent(model) -> None:
    feeds = inputs(4, 10, 80, seed=9)
    feeds["modality_mask"][:] = [[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0]]
    p, mp = run_torch(model, feeds)
    for b in range(4):
        single = {k: v[b : b + 1] for k, v in feeds.items()}
        p1, mp1 = run_torch(model, single)
        np.testing.assert_allclose(p1[0], p[b], atol=1e-5)
        np.testing.assert_allclose(mp1[0], mp[b], atol=1e-5)


def test_input_names_match_forward_signature(model) -> None:
    import inspect

    assert tuple(inspect.signature(model.forward).parameters) == INPUT_NAMES


def test_text_only_log_probs_is_the_served_text_only_answer() -> None:
    """The held-out text metrics score this decision: temperature, prior shift to π, weight and bias of the
    text expert alone (DESIGN.md's fusion with one expert present), not the head's raw argmax."""
    from app.training.fusion import Fusion, text_only_log_probs

    fusion = Fusion(3)
    prior_text = torch.tensor([0.2, 0.5, 0.3])
    with torch.no_grad():
        fusion.log_temperature.copy_(torch.log(torch.tensor([1.7, 1.0, 1.0])))
        fusion.log_branch_prior[0] = torch.log(prior_text)
        fusion.weight.copy_(torch.tensor([0.8, 1.0, 1.0]))
        fusion.bias.copy_(torch.tensor([0.1, -0.2, 0.05]))
    z = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32) * 3
    got = text_only_log_probs(fusion, z)
    log_pi = torch.log(torch.full((3,), 1 / 3))
    q = torch.log_softmax(torch.from_numpy(z) / 1.7, -1)
    q = torch.log_softmax(q - torch.log(prior_text) + log_pi, -1)
    want = torch.log_softmax(log_pi + 0.8 * (q - log_pi) + fusion.bias.detach(), -1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the prior shift moves decisions: a raw argmax would not be what the service answers
    assert (got.argmax(1) != z.argmax(1)).any()
