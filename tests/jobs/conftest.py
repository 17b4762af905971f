"""Fixtures shared by the job-file tests."""

import pytest


@pytest.fixture
def folder(tmp_path):
    """A job folder with a fake prepared system (the loader only checks the files exist)."""
    system = tmp_path / "system"
    system.mkdir()
    (system / "system.npz").write_bytes(b"")
    (system / "state.npz").write_bytes(b"")
    return tmp_path
