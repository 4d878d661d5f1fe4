"""The service runs numpy's BLAS single-threaded (log-mel in every preprocessing thread)."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from app.config import Settings
from app.inference.predictor import Predictor


def _blas_threads() -> list[int]:
    return [int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]


def test_loading_the_predictor_limits_blas_to_one_thread(settings: Settings) -> None:
    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS is loaded
    assert _blas_threads(), "numpy's BLAS library is not visible to threadpoolctl"
    with threadpool_limits(limits=2, user_api="blas"):  # restored afterwards for the other tests
        assert set(_blas_threads()) == {2}
        Predictor(settings).load()
        assert set(_blas_threads()) == {1}
