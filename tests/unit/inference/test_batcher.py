"""Dynamic batcher guarantees (issue 4 bars; not timed)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from app.config import Settings
from app.inference.batcher import BatcherClosedError, DynamicBatcher, QueueFullError
from app.inference.predictor import ModelOutput, Predictor
from app.preprocessing.pipeline import PreparedItem, RawInput
from tests.media import face_jpeg, no_face_png, tone, wav


class Recorder:
    """A batch function that records batch sizes; item ``"bad"`` fails alone, ``"boom"`` fails the batch."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.calls: dict[Any, int] = {}
        self.delay_s = delay_s
        self.gate: threading.Event | None = None
        self.lock = threading.Lock()

    def __call__(self, items: Sequence[Any]) -> list[Any]:
        if self.gate is not None:
            self.gate.wait(10)
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        with self.lock:
            self.sizes.append(len(items))
            for it in items:
                self.calls[it] = self.calls.get(it, 0) + 1
        if "boom" in items:
            raise RuntimeError("whole batch failed")
        return [ValueError(f"bad item {it}") if it == "bad" else f"ok:{it}" for it in items]


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_batches_never_exceed_max_and_every_future_resolves_once() -> None:
    rec = Recorder(delay_s=0.002)

    async def main() -> list[Any]:
        with ThreadPoolExecutor(2) as pool:
            b: DynamicBatcher[Any, Any] = DynamicBatcher(
                rec, executor=pool, max_batch_size=5, max_wait_ms=5, queue_size=1000, workers=2
            )
            await b.start()
            results = await asyncio.gather(*(b.submit(i) for i in range(203)), return_exceptions=True)
            await b.stop()
            return results

    results = _run(main())
    assert rec.sizes and max(rec.sizes) <= 5
    assert sum(rec.sizes) == 203
    assert max(rec.sizes) > 1  # batching actually happened
    assert all(rec.calls[i] == 1 for i in range(203))  # each item ran exactly once
    assert [r.value for r in results] == [f"ok:{i}" for i in range(203)]  # own result, in order
    assert all(r.batch_size <= 5 and r.queue_ms >= 0 and r.inference_ms > 0 for r in results)


def test_one_bad_request_does_not_fail_its_batch_mates() -> None:
    rec = Recorder()

    async def main() -> list[Any]:
        with ThreadPoolExecutor(1) as pool:
            b: DynamicBatcher[Any, Any] = DynamicBatcher(
                rec, executor=pool, max_batch_size=8, max_wait_ms=50, queue_size=100
            )
            await b.start()
            items = ["a", "bad", "b", "boom", "c"]
            results = await asyncio.gather(*(b.submit(i) for i in items), return_exceptions=True)
            await b.stop()
            return results

    a, bad, b, boom, c = _run(main())
    assert [a.value, b.value, c.value] == ["ok:a", "ok:b", "ok:c"]
    assert isinstance(bad, ValueError)
    assert isinstance(boom, RuntimeError)  # the culprit of a whole-batch failure fails alone (retried singly)
    assert rec.sizes[0] == 5  # they really were in one batch


def test_queue_full_raises_with_retry_after_and_nothing_is_lost() -> None:
    rec = Recorder()
    rec.gate = threading.Event()

    async def main() -> tuple[list[Any], int]:
        with ThreadPoolExecutor(1) as pool:
            b: DynamicBatcher[Any, Any] = DynamicBatcher(
                rec, executor=pool, max_batch_size=2, max_wait_ms=0, queue_size=3
            )
            await b.start()
            tasks = [asyncio.create_task(b.submit(i)) for i in range(2)]
            await asyncio.sleep(0.05)  # the consumer took items 0, 1 and is blocked on the gate
            tasks += [asyncio.create_task(b.submit(i)) for i in range(2, 5)]  # fills the queue (3)
            await asyncio.sleep(0.01)
            with pytest.raises(QueueFullError) as info:
                await b.submit(99)
            retry_after = info.value.retry_after_s
            rec.gate.set()
            results = await asyncio.gather(*tasks)
            await b.stop()
            return results, retry_after

    results, retry_after = _run(main())
    assert retry_after >= 1
    assert [r.value for r in results] == [f"ok:{i}" for i in range(5)]
    assert 99 not in rec.calls


def test_stop_fails_queued_requests_instead_of_leaving_them_pending() -> None:
    rec = Recorder()
    rec.gate = threading.Event()

    async def main() -> list[Any]:
        with ThreadPoolExecutor(1) as pool:
            b: DynamicBatcher[Any, Any] = DynamicBatcher(
                rec, executor=pool, max_batch_size=1, max_wait_ms=0, queue_size=10
            )
            await b.start()
            tasks = [asyncio.create_task(b.submit(i)) for i in range(4)]
            await asyncio.sleep(0.05)
            stopper = asyncio.create_task(b.stop(drain=False))
            await asyncio.sleep(0.01)
            rec.gate.set()
            await stopper
            with pytest.raises(BatcherClosedError):
                await b.submit(5)
            return await asyncio.gather(*tasks, return_exceptions=True)

    results = _run(main())
    assert len(results) == 4
    assert all(isinstance(r, BatcherClosedError) or r.value.startswith("ok:") for r in results)
    assert any(isinstance(r, BatcherClosedError) for r in results)


def test_stop_resolves_requests_held_in_a_partial_batch() -> None:
    rec = Recorder()

    async def main() -> list[Any]:
        with ThreadPoolExecutor(1) as pool:
            b: DynamicBatcher[Any, Any] = DynamicBatcher(
                rec, executor=pool, max_batch_size=10, max_wait_ms=60_000, queue_size=10
            )
            await b.start()
            held = [asyncio.create_task(b.submit(i)) for i in range(3)]
            await asyncio.sleep(0.05)  # the consumer holds 3 items and waits for more
            await b.stop(drain=False)
            return await asyncio.gather(*held, return_exceptions=True)

    held = _run(main())
    assert len(held) == 3 and all(isinstance(r, BatcherClosedError) for r in held)
    assert rec.calls == {}


def test_consumers_finishing_out_of_order_with_array_items_stay_alive() -> None:
    # Two consumers hold same-size batches of numpy items; the one that took its batch second finishes
    # first. Bookkeeping that found "its" batch by value compared the other batch's items (arrays: an
    # ambiguous truth value) and the consumer task died, which /readyz reports as "batcher is not running".
    hold_first = threading.Event()

    def batch_fn(items: Sequence[Any]) -> list[Any]:
        if any(int(it[0]) == 0 for it in items):
            hold_first.wait(10)
        return [int(it[0]) for it in items]

    async def main() -> tuple[list[Any], bool, list[Any]]:
        with ThreadPoolExecutor(2) as pool:
            b: DynamicBatcher[Any, Any] = DynamicBatcher(
                batch_fn, executor=pool, max_batch_size=2, max_wait_ms=1000, queue_size=10, workers=2
            )
            await b.start()
            tasks = [asyncio.create_task(b.submit(np.full(4, i))) for i in range(4)]
            # Consumer 0 holds [0, 1] at the gate; consumer 1 runs [2, 3] and finishes first.
            done, _ = await asyncio.wait(tasks, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            second_finished_first = all(t not in done for t in tasks[:2])
            hold_first.set()
            results = await asyncio.gather(*tasks)
            alive = b.running
            more = asyncio.gather(*(b.submit(np.full(4, i)) for i in range(4, 8)))
            after = await asyncio.wait_for(more, 10)
            await b.stop()
            return [second_finished_first, *results], alive, after

    (second_finished_first, *results), alive, after = _run(main())
    assert second_finished_first
    assert {r.batch_size for r in results} == {2}
    assert alive, "a consumer task died"
    assert [r.value for r in results + after] == list(range(8))


# --------------------------------------------------------------------------- with the real predictor
@pytest.fixture(scope="module")
def predictor(settings: Settings) -> Predictor:
    p = Predictor(settings.model_copy(update={"warmup": False}))
    p.load()
    return p


def _inputs(predictor: Predictor) -> list[PreparedItem]:
    raws = [
        RawInput(text="I love it"),
        RawInput(text="this is the worst thing that ever happened to me, truly terrible " * 3),
        RawInput(image=face_jpeg()),
        RawInput(audio=wav(0.4)),
        RawInput(audio=wav(3.2, 44100, channels=2)),
        RawInput(text="ok", image=face_jpeg(), audio=wav(1.0)),
        RawInput(text="meh", image=no_face_png()),
        RawInput(text="fine", audio=wav(2.5, 8000)),
    ]
    return [predictor.prepare(r) for r in raws]


def test_batched_equals_unbatched_within_1e_5(predictor: Predictor) -> None:
    items = _inputs(predictor)
    batched = predictor.run_batch(items)
    for item, together in zip(items, batched, strict=True):
        (alone,) = predictor.run_batch([item])
        assert isinstance(together, ModelOutput) and isinstance(alone, ModelOutput)
        np.testing.assert_allclose(together.probabilities, alone.probabilities, atol=1e-5, rtol=0)
        np.testing.assert_allclose(
            together.modality_probabilities, alone.modality_probabilities, atol=1e-5, rtol=0
        )


def test_absent_modality_dummy_does_not_change_the_output(predictor: Predictor) -> None:
    (a,) = predictor.run_batch([predictor.prepare(RawInput(text="great"))])
    feeds = predictor.collate([predictor.prepare(RawInput(text="great"))])
    feeds["face"][:] = 0.7
    feeds["audio_features"][:] = -3.0
    assert predictor.model is not None
    probs, _ = predictor.model.run(feeds)
    assert isinstance(a, ModelOutput)
    np.testing.assert_allclose(probs[0], a.probabilities, atol=1e-6)


def test_invalid_item_fails_alone_in_run_batch(predictor: Predictor) -> None:
    good = predictor.prepare(RawInput(text="nice"))
    broken = PreparedItem.of(
        audio={
            "audio_features": np.full((10, 64), np.nan, dtype=np.float32),
            "audio_mask": np.ones(10, np.float32),
        }
    )
    out = predictor.run_batch([good, broken, good])
    assert isinstance(out[0], ModelOutput) and isinstance(out[2], ModelOutput)
    assert isinstance(out[1], ValueError)


def test_audio_is_padded_to_length_buckets(predictor: Predictor) -> None:
    feats = [np.zeros((n, 64), np.float32) for n in (37, 150)]
    feeds = predictor.collate(
        [
            PreparedItem.of(audio={"audio_features": f, "audio_mask": np.ones(len(f), np.float32)})
            for f in feats
        ]
    )
    assert feeds["audio_features"].shape[1] in predictor.audio_buckets
    assert feeds["audio_features"].shape[1] >= 150
    assert feeds["audio_mask"].sum(axis=1).tolist() == [37, 150]
    assert feeds["modality_mask"].tolist() == [[0, 0, 1], [0, 0, 1]]
    assert tone(1.0).shape == (16000,)
