"""Shared fixtures. Tests that need the real data fail (never skip) when it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    configured = os.environ.get("BANDITOPS_DATA_DIR") or str(REPO.parent / "shared" / "data")
    path = Path(configured)
    if not (path / "adult" / "adult.data").is_file():
        pytest.fail(f"real datasets not found at {path}; set BANDITOPS_DATA_DIR (make test does)")
    return path
