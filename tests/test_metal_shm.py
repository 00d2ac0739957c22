"""SharedMemory: POSIX shm segments and files, created and grown the way libmetal does."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from openamp.errors import InvalidStateError, UsageError
from openamp.metal import SHM_DIR, IoRegion, SharedMemory, unique_name

PREFIX = "openamp-test"


@pytest.fixture
def shm_name() -> Iterator[str]:
    """A fresh segment name; whatever the test leaves under it is removed afterwards."""
    name = unique_name(PREFIX)
    try:
        yield name
    finally:
        path = os.path.join(SHM_DIR, name)
        if os.path.exists(path):
            os.unlink(path)


def _shm_path(name: str) -> str:
    return os.path.join(SHM_DIR, name)


def test_unique_name_has_prefix_pid_and_random_part() -> None:
    name = unique_name()
    assert re.fullmatch(rf"openamp-{os.getpid()}-[0-9a-f]{{8}}", name)
    assert unique_name("x") != unique_name("x")


def test_open_creates_segment_with_mode_0600_and_size(shm_name: str) -> None:
    with SharedMemory.open(shm_name, 0x3000) as shm:
        st = os.stat(_shm_path(shm_name))
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_size == 0x3000
        assert shm.size == 0x3000
        assert len(shm.mmap) == 0x3000
        assert shm.name == shm_name
        assert shm.path == _shm_path(shm_name)


def test_new_segment_reads_as_zeros(shm_name: str) -> None:
    with SharedMemory.open(shm_name, 4096) as shm:
        assert shm.region().read_block(0, 4096) == bytes(4096)


def test_open_without_size_maps_the_whole_existing_segment(shm_name: str) -> None:
    with SharedMemory.open(shm_name, 8192) as first:
        first.region().write32(8188, 0xDEADBEEF)
        with SharedMemory.open(shm_name) as second:
            assert second.size == 8192
            assert second.region().read32(8188) == 0xDEADBEEF


def test_open_with_larger_size_grows_the_segment_and_keeps_its_bytes(shm_name: str) -> None:
    with SharedMemory.open(shm_name, 4096) as small:
        small.region().write_block(0, b"keep")
    with SharedMemory.open(shm_name, 3 * 4096) as big:
        assert os.stat(_shm_path(shm_name)).st_size == 3 * 4096
        assert big.region().read_block(0, 4) == b"keep"
        assert big.region().read_block(4096, 16) == bytes(16)


def test_open_with_smaller_size_never_shrinks_the_segment(shm_name: str) -> None:
    with SharedMemory.open(shm_name, 0x10000) as big:
        big.region().write8(0xFFFF, 0x5A)
        with SharedMemory.open(shm_name, 0x1000) as small:
            assert small.size == 0x1000
            assert os.stat(_shm_path(shm_name)).st_size == 0x10000
        assert big.region().read8(0xFFFF) == 0x5A


def test_open_missing_segment_with_create_false_raises_file_not_found(shm_name: str) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(shm_name)) as info:
        SharedMemory.open(shm_name, 4096, create=False)
    assert "create=False" in str(info.value)
    assert not os.path.exists(_shm_path(shm_name))


def test_open_missing_segment_without_size_raises_file_not_found(shm_name: str) -> None:
    with pytest.raises(FileNotFoundError, match="give a size"):
        SharedMemory.open(shm_name)
    assert not os.path.exists(_shm_path(shm_name))


def test_open_existing_empty_segment_without_size_is_a_usage_error(shm_name: str) -> None:
    fd = os.open(_shm_path(shm_name), os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(UsageError, match="empty"):
        SharedMemory.open(shm_name)


def test_open_existing_segment_with_create_false(shm_name: str) -> None:
    with SharedMemory.open(shm_name, 4096), SharedMemory.open(shm_name, create=False) as again:
        assert again.size == 4096


@pytest.mark.parametrize("bad", ["", "a/b", "/openamp.shm", ".", "..", "nul\0byte", "x" * 256])
def test_bad_shm_names_are_rejected(bad: str) -> None:
    with pytest.raises(UsageError):
        SharedMemory.open(bad, 4096)


def test_name_with_slash_error_explains_what_to_do() -> None:
    with pytest.raises(UsageError, match=r"must not contain '/'.*open_file"):
        SharedMemory.open("dir/name", 4096)


@pytest.mark.parametrize("bad", [0, -4096])
def test_non_positive_size_is_rejected(shm_name: str, bad: int) -> None:
    with pytest.raises(UsageError, match="positive"):
        SharedMemory.open(shm_name, bad)
    assert not os.path.exists(_shm_path(shm_name))


def test_unlink_removes_segment_and_is_idempotent(shm_name: str) -> None:
    shm = SharedMemory.open(shm_name, 4096)
    try:
        shm.unlink()
        assert not os.path.exists(_shm_path(shm_name))
        shm.unlink()
        shm.region().write8(0, 1)  # still mapped until close
    finally:
        shm.close()


def test_unlink_ignores_a_segment_someone_else_removed(shm_name: str) -> None:
    with SharedMemory.open(shm_name, 4096) as shm:
        os.unlink(_shm_path(shm_name))
        shm.unlink()


def test_unlink_on_close_removes_segment(shm_name: str) -> None:
    with SharedMemory.open(shm_name, 4096, unlink_on_close=True):
        assert os.path.exists(_shm_path(shm_name))
    assert not os.path.exists(_shm_path(shm_name))


def test_close_without_unlink_on_close_keeps_segment(shm_name: str) -> None:
    with SharedMemory.open(shm_name, 4096):
        pass
    assert os.path.exists(_shm_path(shm_name))


def test_close_is_idempotent_and_mmap_is_gone_afterwards(shm_name: str) -> None:
    shm = SharedMemory.open(shm_name, 4096, unlink_on_close=True)
    shm.close()
    shm.close()
    assert shm.closed
    with pytest.raises(InvalidStateError, match="closed"):
        _ = shm.mmap
    with pytest.raises(InvalidStateError):
        shm.region()


def test_close_releases_regions_handed_out(shm_name: str) -> None:
    shm = SharedMemory.open(shm_name, 4096, unlink_on_close=True)
    region = shm.region()
    region.write32(0, 7)
    shm.close()  # would raise BufferError if the region's view were still exported
    with pytest.raises(ValueError):
        region.read32(0)


def test_close_with_an_outstanding_view_warns_instead_of_failing(shm_name: str) -> None:
    shm = SharedMemory.open(shm_name, 4096, unlink_on_close=True)
    sub = shm.region().subregion(0x100, 0x10)
    with pytest.warns(ResourceWarning, match="still alive"):
        shm.close()
    assert shm.closed
    assert not os.path.exists(_shm_path(shm_name))
    sub.write8(0, 1)  # the memory stays mapped while the view lives
    sub.release()


def test_region_has_requested_phys_base_and_name(shm_name: str) -> None:
    with SharedMemory.open(shm_name, 0x2000) as shm:
        default = shm.region()
        assert isinstance(default, IoRegion)
        assert default.name == shm_name
        assert default.size == 0x2000
        assert default.phys_base == 0
        r = shm.region(phys_base=0x8000_0000, name="carveout")
        assert r.name == "carveout"
        assert r.phys_to_offset(0x8000_1000) == 0x1000


def test_open_file_maps_and_grows_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "mem.bin"
    path.write_bytes(b"abc")
    with SharedMemory.open_file(path, 4096) as shm:
        assert shm.path == str(path)
        assert shm.name == str(path)
        assert shm.region().read_block(0, 3) == b"abc"
        shm.region().write_block(4000, b"xyz")
    assert path.stat().st_size == 4096
    assert path.read_bytes()[4000:4003] == b"xyz"


def test_open_file_missing_with_create_false(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SharedMemory.open_file(tmp_path / "missing", 4096, create=False)


def test_open_file_unlink_on_close_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "mem.bin"
    with SharedMemory.open_file(path, 4096, unlink_on_close=True):
        assert path.exists()
    assert not path.exists()


def test_two_processes_see_each_others_writes(shm_name: str) -> None:
    child_code = textwrap.dedent(
        f"""
        from openamp.metal import SharedMemory
        with SharedMemory.open({shm_name!r}, create=False) as shm:
            r = shm.region()
            assert r.read_block(0, 5) == b"hello", r.read_block(0, 5)
            r.write_block(0x800, b"world")
            r.write32(0x1000, r.read32(0x10) + 1)
        """
    )
    with SharedMemory.open(shm_name, 0x2000, unlink_on_close=True) as shm:
        r = shm.region()
        r.write_block(0, b"hello")
        r.write32(0x10, 41)
        proc = subprocess.run(
            [sys.executable, "-c", child_code], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 0, proc.stderr
        # seen through the mapping that stayed open while the child wrote
        assert r.read_block(0x800, 5) == b"world"
        assert r.read32(0x1000) == 42
