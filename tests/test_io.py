"""Atomic writes: complete or absent, never half-written, with ordinary file modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ftci.io import atomic_write_text


def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        target = tmp_path / "sub" / "ftci.yaml"
        atomic_write_text(target, "a: 1\n")
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
        target.chmod(0o640)
        atomic_write_text(target, "a: 2\n")
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
        assert target.read_text() == "a: 2\n"
    finally:
        os.umask(old_umask)


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
