"""Shared test fixtures. Tests are offline: the only network they use is 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Real speech and assets live beside the checkout (never inside the package).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA} (tests expect ../shared/data beside the repo)")
    return SHARED_DATA


def tone(seconds: float, sample_rate: int = 16000, freq: float = 440.0) -> torch.Tensor:
    """A quiet sine tone: a cheap, deterministic stand-in for speech in format tests."""
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    return 0.3 * torch.sin(2 * torch.pi * freq * t)
