"""The compose scale-out profile's nginx template, tested with Debian's nginx on loopback: two replicas of
the real service (bundled model), a bounded load, one replica killed (SIGKILL) mid-run → no failed client
request. The issue's full 60 s / kill-at-20 s run is ``python -m benchmarks.failover``.

Skips without nginx; fails instead under ``SENTIMENT_REQUIRE_NGINX=1`` (``.ci/run`` installs nginx).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.failover import nginx_binary, run_failover

pytestmark = pytest.mark.nginx


@pytest.fixture(scope="module", autouse=True)
def _nginx() -> None:
    if nginx_binary() is None:
        pytest.skip("nginx not installed: apt-get install -y --no-install-recommends nginx")


@pytest.mark.slow
def test_killing_one_of_two_replicas_mid_load_fails_no_client_request(tmp_path: Path) -> None:
    result = run_failover(tmp_path, duration_s=15, kill_at_s=5)
    assert not result.failures, result.summary() + "\n" + "\n".join(result.failures[:20])
    survivor = next(a for a in result.answered_before_kill if a != result.killed)
    # Both replicas served before the kill; only the survivor after it.
    assert result.answered_before_kill[result.killed] > 0 and result.answered_before_kill[survivor] > 0
    assert set(result.answered_after_kill) == {survivor}, result.summary()
    # nginx tried the dead replica at least once (connection refused or reset) and sent the request on.
    assert result.retried >= 1, result.summary()
    assert result.requests >= 100, result.summary()  # the load really ran (≈ 35 requests/s here)
