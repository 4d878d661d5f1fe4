"""The benchmark harness's own logic (``python -m benchmarks``): the M/G/c latency floor, the in-process
ceiling's configurations, and that the peer servers' pipeline does the service's work on the bundled model
(same experts, same probabilities as the service's predictor)."""

from __future__ import annotations

import numpy as np
import pytest

from app.config import REPO_ROOT, Settings
from app.inference.predictor import ModelOutput, Predictor
from app.preprocessing.pipeline import RawInput
from benchmarks import queueing
from benchmarks.ceiling import Batched, Inline, config_name, parse_config, run_batched, run_inline
from benchmarks.corpus import Sample
from tests.media import face_jpeg, speech_wav

MODEL_DIR = REPO_ROOT / "models" / "fused-sentiment"


def test_floor_with_constant_service_times_is_the_md_c_queue() -> None:
    # Same seed and arrivals: the empirical form with one service time equals simulate(cv=0).
    md_c = queueing.simulate(2, 0.5, 0.0, n=20_000)
    empirical = queueing.simulate_times(2, 1.0, np.ones(7), n=20_000)
    assert empirical == pytest.approx(md_c)


def test_floor_p99_grows_with_unequal_costs_at_the_same_utilisation() -> None:
    even = np.full(10, 0.19)
    uneven = np.array([0.1] * 9 + [1.0])  # same mean, one request in ten ten times dearer
    _, p99_even = queueing.simulate_times(2, 5.0, even, n=20_000)
    _, p99_uneven = queueing.simulate_times(2, 5.0, uneven, n=20_000)
    assert 0.19 < p99_even < 3 * 0.19  # queueing adds a little at utilisation 0.475
    assert p99_uneven > 2 * p99_even  # the dear requests, and those queued behind them


def test_floor_refuses_an_overloaded_queue() -> None:
    with pytest.raises(ValueError, match="utilisation"):
        queueing.simulate_times(2, 11.0, np.full(4, 0.2))


@pytest.mark.parametrize(
    ("text", "config"), [("16x1", Batched(16, 1)), ("1x2", Batched(1, 2)), ("i4", Inline(4))]
)
def test_ceiling_configurations_parse_and_name(text: str, config: Batched | Inline) -> None:
    assert parse_config(text) == config
    assert parse_config(config_name(config).replace("b", "").replace("w", "x")) == config


@pytest.mark.parametrize("bad", ["16", "x2", "i", "4xx", "0x1", "4x0", "i0", "i-2"])
def test_ceiling_configuration_errors_name_the_format(bad: str) -> None:
    with pytest.raises(ValueError, match="BATCHxWORKERS or iTHREADS"):
        parse_config(bad)


def test_inline_ceiling_counts_items_and_reraises_worker_errors() -> None:
    seen: list[int] = []
    out = run_inline(
        lambda s: s,
        lambda batch: seen.append(len(batch)),
        [Sample("a", None, None)],
        threads=2,
        duration_s=0.2,
        warmup_s=0.0,
    )
    assert out["throughput"] > 0 and set(seen) == {1}

    def boom(batch: object) -> None:
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        run_inline(lambda s: s, boom, [Sample("a", None, None)], threads=2, duration_s=0.2, warmup_s=0.0)


@pytest.mark.skipif(not (MODEL_DIR / "1" / "model.onnx").is_file(), reason="bundled model not committed")
def test_peer_pipeline_does_the_services_work() -> None:
    from benchmarks.pipeline import Pipeline

    requests = [
        RawInput("what a lovely afternoon", face_jpeg(), speech_wav()),
        RawInput(None, face_jpeg(), None),
        RawInput("the bus was late again", None, None),
    ]
    peer = Pipeline(MODEL_DIR, tuned=False)
    predictor = Predictor(Settings(model_dir=MODEL_DIR.parent, providers=["CPUExecutionProvider"]))
    predictor.load()
    peer_items = [peer.preprocess(r.text, r.image, r.audio) for r in requests]
    service_items = [predictor.prepare(r) for r in requests]
    # The v2 contract's experts (scene too), as the service prepares them.
    assert [sorted(i.experts) for i in peer_items] == [sorted(i.experts) for i in service_items]
    assert "scene" in peer_items[1].experts
    expected = predictor.run_batch(service_items)
    assert all(isinstance(o, ModelOutput) for o in expected)
    got = peer.run(peer_items)
    want = np.stack([o.probabilities for o in expected if isinstance(o, ModelOutput)])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_batched_ceiling_counts_only_the_window() -> None:
    # prep takes 0.05 s on 2 threads, the run nothing: 40 items/s, batches of 2 (the pools' shutdown after
    # the window, waiting for preparations not counted, must not lower it).
    import time

    def prep(s: Sample) -> Sample:
        time.sleep(0.05)
        return s

    out = run_batched(
        prep,
        lambda batch: None,
        [Sample("a", None, None)],
        batch_size=2,
        duration_s=1.0,
        warmup_s=0.2,
        prep_threads=2,
    )
    assert 25 < out["throughput"] < 42


def test_batched_ceiling_refuses_a_window_shorter_than_one_batch() -> None:
    with pytest.raises(RuntimeError, match="no batch"):
        run_batched(
            lambda s: s,
            lambda batch: __import__("time").sleep(0.3),
            [Sample("a", None, None)],
            batch_size=1,
            duration_s=0.05,
            warmup_s=0.0,
        )


def test_report_shows_gpu_columns_only_for_runs_with_gpu_samples(tmp_path) -> None:  # noqa: ANN001
    """A GPU run's points carry NVML samples (benchmarks.gpu_util) and the HTTP table gets their columns; a
    CPU run's table stays as it was. The real GPU run is benchmarks/results/gpu/results.json."""
    import json

    from benchmarks import report

    res = json.loads((REPO_ROOT / "benchmarks" / "results" / "gpu" / "results.json").read_text())
    text = report.write(res, tmp_path)
    header = next(line for line in text.splitlines() if line.startswith("| target | mix | concurrency"))
    assert header.endswith("GPU util % (mean / max) | GPU memory MiB |")
    row = next(line for line in text.splitlines() if line.startswith("| this service | text | 64 |"))
    assert row.endswith("| 52.6 / 68.0 | 30705.4 |")
    for target in res["targets"].values():
        for point in target.get("points", []):
            for key in ("gpu_util_pct", "gpu_util_max_pct", "gpu_mem_mib"):
                point.pop(key, None)
    cpu_text = report.write(res, tmp_path)
    assert "GPU util" not in cpu_text


def test_gpu_sampler_without_nvml_samples_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from benchmarks.gpu_util import GpuSampler

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as on a host without the package
    sampler = GpuSampler(interval_s=0.01)
    assert not sampler.available
    sampler.start()
    assert sampler.stop() == {}
