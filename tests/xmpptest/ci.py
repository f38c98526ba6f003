"""The CI rule for missing tools: fail under CI, skip elsewhere, never a silent skip in CI."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(message: str):
    """Fail under CI, skip elsewhere: never a silent skip in CI."""
    if in_ci():
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(message)
