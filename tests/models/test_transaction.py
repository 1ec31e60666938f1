"""The all-or-nothing directory helpers a pull relies on."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ftci.errors import InfraError
from ftci.models.transaction import disk_errors, move_into_place, staging_dir


def test_a_failed_build_leaves_no_staging_dir(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), staging_dir(tmp_path, "m") as staging:
        (staging / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_move_into_place_replaces_an_old_dir_and_leaves_nothing_else(tmp_path: Path) -> None:
    final = tmp_path / "m"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with staging_dir(tmp_path, "m") as staging:
        (staging / "new.txt").write_text("new")
        move_into_place(staging, final, "m")
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    assert [p.name for p in final.iterdir()] == ["new.txt"]


def test_disk_errors_name_the_path_and_the_remedy() -> None:
    with pytest.raises(InfraError) as caught, disk_errors():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/cache/models/x")
    assert "/cache/models/x" in caught.value.message
    assert os.strerror(errno.ENOSPC) in caught.value.message
    assert "FTCI_HOME" in (caught.value.hint or "")


def test_disk_errors_let_other_os_errors_through() -> None:
    with pytest.raises(FileNotFoundError), disk_errors():
        raise FileNotFoundError(errno.ENOENT, "gone", "x")
