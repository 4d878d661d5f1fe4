"""glibc malloc tuning applied at startup (app/malloc.py)."""

from __future__ import annotations

import platform
import sys

import pytest

from app.malloc import ARENA_MAX, MMAP_THRESHOLD_BYTES, tune_malloc

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="needs Linux with glibc"
)


@glibc
def test_mallopt_applies_both_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert tune_malloc() == {"MALLOC_ARENA_MAX": ARENA_MAX, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD_BYTES}


@glibc
def test_environment_variables_take_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert tune_malloc() == {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD_BYTES}
