"""openamp.linux.rpmsg and .tty: ioctls, channel discovery, endpoints, the tty, the CLI.

Discovery runs on directory trees laid out as spec/linux-kernel.md §2.1 describes (built
by tests/test_linux_remoteproc.py's ``Board``).  Where the kernel would act on an ioctl,
a fake ``fcntl.ioctl`` plays rpmsg_ctrl/rpmsg_char: it checks the request number and the
40-byte argument and makes or removes the class directory and /dev node.  Message
semantics are tested on real descriptors: a SOCK_SEQPACKET socketpair (one message per
read, like /dev/rpmsgN) and a real pseudo-terminal for the tty.  The same adapters and
the command run against the real kernel inside User-mode Linux in
tests/test_uml_adapters.py (the kernel's side alone, with plain system calls, in
tests/test_uml.py); tests below that it duplicates say so, and the regression tests of
the bugs it found name it.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import json
import os
import select
import shutil
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openamp.cli.rpmsg import add_parser as add_rpmsg_parser, parse_addr_arg
from openamp.errors import EndpointClosedError, OpenAMPTimeoutError, UsageError
from openamp.linux import (
    RPMSG_ADDR_ANY,
    DeviceBusyError,
    DeviceNotFoundError,
    EndpointGoneError,
    EndpointInfo,
    KernelNoBufferError,
    KernelSendTimeoutError,
    RequestRejectedError,
    RpmsgCtrl,
    RpmsgEndpoint,
    TtyStream,
    bind_channel,
    find_channel,
    list_channels,
    list_ctrls,
    list_endpoint_devices,
    list_ttys,
    open_channel,
    open_endpoint,
    open_tty,
    rpmsg as rpmsg_mod,
    unbind_channel,
)
from openamp.linux.remoteproc import IO, IOC_GENERIC, IOC_POWERPC, IOR, IOW, ioc_layout
from openamp.linux.tty import is_raw
from test_linux_remoteproc import Board, FakeIoctl, _link

CREATE_EPT, DESTROY_EPT, CREATE_DEV, RELEASE_DEV = 0x4028B501, 0x0000B502, 0x4028B503, 0x4028B504
GET_FC, SET_FC = 0x8004B505, 0x8004B506


# -- a board with rpmsg -------------------------------------------------------------------


@pytest.fixture
def board(tmp_path: Path) -> Board:
    """remoteproc0 running with virtio0: NS, ctrl (rpmsg_ctrl0), an echo channel bound to
    rpmsg_chrdev (/dev/rpmsg0, a FIFO that echoes), an unbound channel and a tty."""
    b = Board(tmp_path)
    b.add_remoteproc(0, name="m4", state="running")
    v = b.add_virtio(0)
    raw = b.add_channel(v, "rpmsg-raw", 0x400, 0x401, driver="rpmsg_chrdev")
    b.add_chrdev(raw, 0)
    b.add_channel(v, "rpmsg-openamp-demo-channel", RPMSG_ADDR_ANY, 0x402)
    tty = b.add_channel(v, "rpmsg-tty", 0x401, 0x403, driver="rpmsg_tty")
    b.add_class_device(tty / "tty" / "ttyRPMSG0", node="none", cls="tty")
    return b


class FakeRpmsgKernel:
    """rpmsg_ctrl and rpmsg_char for the ioctls, acting on the board's tree.

    What the real ones do is checked in tests/test_uml_adapters.py."""

    def __init__(self, board: Board, *, set_flow_errno: int = errno.EOPNOTSUPP) -> None:
        self.board = board
        self.set_flow_errno = set_flow_errno
        self.channels: set[tuple[str, int, int]] = set()
        self.ioctl = FakeIoctl(self.answer)

    def answer(self, node: str, request: int, arg: Any) -> int:
        name = Path(node).name
        if request in (CREATE_EPT, CREATE_DEV, RELEASE_DEV):
            assert name.startswith("rpmsg_ctrl") and len(arg) == 40
            info = EndpointInfo.unpack(bytes(arg))
            if request == CREATE_EPT:
                self._create_ept(name, info)
            elif request == CREATE_DEV:
                self.channels.add((info.name, info.src, info.dst))
            elif (info.name, info.src, info.dst) in self.channels:
                self.channels.remove((info.name, info.src, info.dst))
            else:
                raise OSError(errno.EINVAL, "Invalid argument")
            return 0
        assert name.startswith("rpmsg") and not name.startswith("rpmsg_ctrl"), node
        cls = self.board.sysfs / "class/rpmsg" / name
        if request == DESTROY_EPT:
            real = cls.resolve()
            if not real.parent.name.startswith("rpmsg_ctrl"):
                raise OSError(errno.EINVAL, "Invalid argument")
            shutil.rmtree(real)
            cls.unlink()
            os.unlink(self.board.dev / name)
            return 0
        if request == GET_FC:
            arg[:] = struct.pack("=i", 0)
            return 0
        if request == SET_FC:
            assert isinstance(arg, int)
            raise OSError(self.set_flow_errno, os.strerror(self.set_flow_errno))
        raise OSError(errno.EINVAL, "Invalid argument")

    def _create_ept(self, ctrl: str, info: EndpointInfo) -> None:
        taken = {int(p.name[5:]) for p in (self.board.sysfs / "class/rpmsg").glob("rpmsg[0-9]*")}
        n = min(set(range(len(taken) + 1)) - taken)
        ctrl_dir = (self.board.sysfs / "class/rpmsg" / ctrl).resolve()
        self.board.add_class_device(
            ctrl_dir / f"rpmsg{n}", name=info.name, src=info.src, dst=info.dst
        )


@pytest.fixture
def kernel(board: Board, monkeypatch: pytest.MonkeyPatch) -> FakeRpmsgKernel:
    k = FakeRpmsgKernel(board)
    monkeypatch.setattr(fcntl, "ioctl", k.ioctl)
    return k


@pytest.fixture
def seqpacket() -> Iterator[tuple[RpmsgEndpoint, socket.socket]]:
    """An endpoint over one end of a SOCK_SEQPACKET pair; the test plays the remote."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ep = RpmsgEndpoint.from_fd(a.detach(), name="seqpacket")
    try:
        yield ep, b
    finally:
        ep.close()
        b.close()


# -- ioctl numbers and the argument -------------------------------------------------------


def test_rpmsg_ioctl_numbers_are_the_spec_literals() -> None:
    assert rpmsg_mod.RPMSG_CREATE_EPT_IOCTL == CREATE_EPT
    assert rpmsg_mod.RPMSG_DESTROY_EPT_IOCTL == DESTROY_EPT
    assert rpmsg_mod.RPMSG_CREATE_DEV_IOCTL == CREATE_DEV
    assert rpmsg_mod.RPMSG_RELEASE_DEV_IOCTL == RELEASE_DEV
    assert rpmsg_mod.RPMSG_GET_OUTGOING_FLOWCONTROL == GET_FC
    assert rpmsg_mod.RPMSG_SET_INCOMING_FLOWCONTROL == SET_FC


def test_powerpc_mips_and_sparc_encode_ioctls_differently() -> None:
    assert IOW(0xB5, 1, 40, IOC_POWERPC) == 0x8028B501
    assert IO(0xB5, 2, IOC_POWERPC) == 0x2000B502
    assert IOR(0xB5, 5, 4, IOC_POWERPC) == 0x4004B505
    assert IOW(0xB5, 1, 40, IOC_GENERIC) == CREATE_EPT
    assert ioc_layout("ppc64le") is IOC_POWERPC and ioc_layout("aarch64") is IOC_GENERIC
    with pytest.raises(UsageError):
        IOW(0xB5, 1, 1 << 14, IOC_GENERIC)


def test_the_endpoint_info_is_40_bytes_name_nul_padded() -> None:
    raw = EndpointInfo("rpmsg-raw", 1024, 0x400).pack()
    assert raw == b"rpmsg-raw" + bytes(23) + struct.pack("=II", 1024, 0x400)
    assert len(raw) == 40
    assert EndpointInfo.unpack(raw) == EndpointInfo("rpmsg-raw", 1024, 0x400)
    assert EndpointInfo("x").pack()[32:] == b"\xff" * 8


@pytest.mark.parametrize("name", ["", "a" * 32, "a\0b"])
def test_a_name_the_kernel_would_cut_or_misread_is_refused(name: str) -> None:
    with pytest.raises(UsageError, match=r"1..31 bytes"):
        EndpointInfo(name)


def test_addresses_must_be_32_bit() -> None:
    with pytest.raises(UsageError, match="src address"):
        EndpointInfo("x", src=1 << 32)


# -- discovery ----------------------------------------------------------------------------


def test_channels_are_read_from_the_bus_directory(board: Board) -> None:
    chans = {c.name: c for c in list_channels(sysfs=board.sysfs)}
    assert sorted(chans) == ["rpmsg-openamp-demo-channel", "rpmsg-raw", "rpmsg-tty"]
    raw = chans["rpmsg-raw"]
    assert (raw.device, raw.src, raw.dst) == ("virtio0.rpmsg-raw.1024.1025", 0x400, 0x401)
    assert (raw.driver, raw.driver_override, raw.announce) == ("rpmsg_chrdev", None, False)
    assert (raw.virtio, raw.remoteproc, raw.endpoints) == ("virtio0", "remoteproc0", ["rpmsg0"])
    demo = chans["rpmsg-openamp-demo-channel"]
    assert demo.device == "virtio0.rpmsg-openamp-demo-channel.-1.1026"
    assert demo.src == RPMSG_ADDR_ANY and demo.driver is None and demo.endpoints == []
    assert chans["rpmsg-tty"].ttys == ["ttyRPMSG0"]


def test_the_kernels_own_devices_are_listed_only_on_request(board: Board) -> None:
    all_ = list_channels(sysfs=board.sysfs, include_internal=True)
    internal = {c.device: (c.kind, c.driver_override) for c in all_ if c.kind != "service"}
    assert internal == {
        "virtio0.rpmsg_ns.53.53": ("ns", "rpmsg_ns"),
        "virtio0.rpmsg_ctrl.0.0": ("ctrl", "rpmsg_ctrl"),
    }


def test_a_channel_is_found_by_service_name_or_device_name(board: Board) -> None:
    assert find_channel("rpmsg-raw", sysfs=board.sysfs).dst == 0x401
    assert find_channel("virtio0.rpmsg-raw.1024.1025", sysfs=board.sysfs).name == "rpmsg-raw"


def test_an_unknown_channel_error_lists_the_channels(board: Board) -> None:
    with pytest.raises(DeviceNotFoundError) as e:
        find_channel("nosuch", sysfs=board.sysfs)
    assert str(e.value) == (
        "no rpmsg channel 'nosuch': channels: 'rpmsg-raw' (0x401), "
        "'rpmsg-openamp-demo-channel' (0x402), 'rpmsg-tty' (0x403)"
    )


def test_two_remotes_announcing_one_name_are_told_apart_by_dst(board: Board) -> None:
    board.add_remoteproc(1, name="dsp", state="running")
    v1 = board.add_virtio(1, 1, ctrl=1)
    board.add_channel(v1, "rpmsg-raw", 0x400, 0x500)
    with pytest.raises(UsageError, match="2 channels are named 'rpmsg-raw'"):
        find_channel("rpmsg-raw", sysfs=board.sysfs)
    assert find_channel("rpmsg-raw", sysfs=board.sysfs, dst=0x500).remoteproc == "remoteproc1"


def test_control_devices_map_to_dev_nodes_through_sysfs(board: Board) -> None:
    (ctrl,) = list_ctrls(sysfs=board.sysfs, dev=board.dev)
    assert ctrl.device == "rpmsg_ctrl0" and ctrl.node == board.dev / "rpmsg_ctrl0"
    assert (ctrl.parent, ctrl.virtio, ctrl.remoteproc) == (
        "virtio0.rpmsg_ctrl.0.0",
        "virtio0",
        "remoteproc0",
    )


def test_the_dev_node_name_comes_from_the_uevent(board: Board) -> None:
    uevent = board.sysfs / "class/rpmsg/rpmsg_ctrl0/uevent"
    uevent.write_text("MAJOR=240\nMINOR=0\nDEVNAME=rpmsg/ctrl0\n")
    assert list_ctrls(sysfs=board.sysfs, dev=board.dev)[0].node == board.dev / "rpmsg/ctrl0"


def test_endpoint_devices_say_who_made_them_and_read_signed_addresses(
    board: Board, kernel: FakeRpmsgKernel
) -> None:
    with RpmsgCtrl(board.dev / "rpmsg_ctrl0", sysfs=board.sysfs) as ctrl:
        ctrl.create_endpoint("mine", RPMSG_ADDR_ANY, 0x402)
    eps = {e.device: e for e in list_endpoint_devices(sysfs=board.sysfs, dev=board.dev)}
    assert (board.sysfs / "class/rpmsg/rpmsg1/src").read_text() == "-1\n"
    assert eps["rpmsg1"].src == RPMSG_ADDR_ANY and eps["rpmsg1"].dst == 0x402
    assert (eps["rpmsg1"].ctrl, eps["rpmsg1"].channel) == ("rpmsg_ctrl0", None)
    assert (eps["rpmsg0"].ctrl, eps["rpmsg0"].channel) == (None, "virtio0.rpmsg-raw.1024.1025")
    assert eps["rpmsg0"].node == board.dev / "rpmsg0"


def test_ttys_are_found_with_their_channel(board: Board) -> None:
    (tty,) = list_ttys(sysfs=board.sysfs, dev=board.dev)
    assert (tty.device, tty.node, tty.name, tty.src, tty.dst) == (
        "ttyRPMSG0",
        board.dev / "ttyRPMSG0",
        "rpmsg-tty",
        0x401,
        0x403,
    )


# -- rpmsg_ctrl ---------------------------------------------------------------------------


def test_create_endpoint_passes_the_struct_and_finds_the_new_node(
    board: Board, kernel: FakeRpmsgKernel
) -> None:
    """Against the real kernel: tests/test_uml_adapters.py (ctrl endpoints, CLI ept)."""
    with RpmsgCtrl("rpmsg_ctrl0", sysfs=board.sysfs, dev=board.dev) as ctrl:
        ep = ctrl.create_endpoint("my-ept", 1024, 0x400)
    assert kernel.ioctl.calls == [
        (str(board.dev / "rpmsg_ctrl0"), CREATE_EPT, EndpointInfo("my-ept", 1024, 0x400).pack())
    ]
    assert (ep.device, ep.node, ep.name, ep.src, ep.dst, ep.ctrl) == (
        "rpmsg1",
        board.dev / "rpmsg1",
        "my-ept",
        1024,
        0x400,
        "rpmsg_ctrl0",
    )


def test_create_and_release_channel_use_their_ioctls(board: Board, kernel: FakeRpmsgKernel) -> None:
    with RpmsgCtrl(board.dev / "rpmsg_ctrl0", sysfs=board.sysfs) as ctrl:
        ctrl.create_channel("rpmsg-raw", 1026, 0x401)
        ctrl.release_channel("rpmsg-raw", 1026, 0x401)
        with pytest.raises(RequestRejectedError) as e:
            ctrl.release_channel("nosuch", 1, 2)
    assert [c[1] for c in kernel.ioctl.calls] == [CREATE_DEV, RELEASE_DEV, RELEASE_DEV]
    assert str(e.value).startswith(
        "EINVAL ioctl RPMSG_RELEASE_DEV_IOCTL on "
    ) and "there is no channel 'nosuch' (0x1 -> 0x2) to release" in str(e.value)


def test_a_missing_control_device_lists_the_ones_there_are(board: Board) -> None:
    with pytest.raises(DeviceNotFoundError) as e:
        RpmsgCtrl(board.dev / "rpmsg_ctrl5", sysfs=board.sysfs)
    assert f"control devices: {board.dev / 'rpmsg_ctrl0'}" in str(e.value)


def test_the_ctrl_on_a_regular_file_is_not_an_rpmsg_device(board: Board) -> None:
    # without the fake, the tree's node is a plain file: the real kernel answers ENOTTY
    with (
        RpmsgCtrl(board.dev / "rpmsg_ctrl0", sysfs=board.sysfs) as ctrl,
        pytest.raises(
            RequestRejectedError,
            match=r"^ENOTTY ioctl RPMSG_CREATE_EPT_IOCTL on .* does not understand this ioctl",
        ),
    ):
        ctrl.create_endpoint("x", 1, 2)


# -- open_endpoint, open_channel, binding -------------------------------------------------


def test_open_endpoint_talks_to_the_channel_the_remote_announced(
    board: Board, kernel: FakeRpmsgKernel
) -> None:
    """Against the real kernel: tests/test_uml_adapters.py (open_endpoint by name)."""
    with open_endpoint("rpmsg-openamp-demo-channel", sysfs=board.sysfs, dev=board.dev) as ep:
        assert (ep.path, ep.name, ep.src, ep.dst) == (
            board.dev / "rpmsg1",
            "rpmsg-openamp-demo-channel",
            RPMSG_ADDR_ANY,
            0x402,
        )
        ep.send(b"ping")
        assert ep.recv(timeout=1) == b"ping"  # the tree's node is a FIFO: it echoes
    assert [c[1] for c in kernel.ioctl.calls] == [CREATE_EPT, DESTROY_EPT]
    assert not (board.dev / "rpmsg1").exists()
    assert not (board.sysfs / "class/rpmsg/rpmsg1").exists()


def test_open_endpoint_with_explicit_addresses_as_in_the_design(
    board: Board, kernel: FakeRpmsgKernel
) -> None:
    with open_endpoint("rpmsg-raw", src=1030, dst=0x400, sysfs=board.sysfs, dev=board.dev):
        pass
    assert kernel.ioctl.calls[0][2] == EndpointInfo("rpmsg-raw", 1030, 0x400).pack()


def test_a_local_address_a_channel_holds_is_refused_before_a_node_is_made(
    board: Board, kernel: FakeRpmsgKernel
) -> None:
    """Regression, found by tests/test_uml_adapters.py: for a taken address the kernel
    makes the node, then refuses to open it (EINVAL), and a node that cannot be opened
    cannot be destroyed.  The board's rpmsg-raw channel holds 0x400 (1024)."""
    with pytest.raises(RequestRejectedError) as e:
        open_endpoint("rpmsg-raw", src=1024, dst=0x400, sysfs=board.sysfs, dev=board.dev)
    assert e.value.errno == errno.EADDRINUSE
    assert str(e.value) == (
        "EADDRINUSE local address 0x400: channel virtio0.rpmsg-raw.1024.1025 (driver "
        "rpmsg_chrdev) holds it; use another src, or RPMSG_ADDR_ANY (-1) for a dynamic address"
    )
    assert kernel.ioctl.calls == []


def test_a_node_the_kernel_will_not_open_is_named_in_the_error(
    board: Board, kernel: FakeRpmsgKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression, found by tests/test_uml_adapters.py: an address another open endpoint
    holds is refused only when the new node is opened; that node stays (nothing can
    destroy it before it can be opened), and the error says so."""
    node = str(board.dev / "rpmsg1")
    real_open = os.open

    def kernel_open(path: Any, flags: int, *a: Any) -> int:
        if str(path) == node:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", kernel_open)
    with pytest.raises(RequestRejectedError) as e:
        open_endpoint("pyopenamp", src=0x3000, dst=0x2000, sysfs=board.sysfs, dev=board.dev)
    assert "its local address (0x3000) is probably taken" in str(e.value)
    assert str(e.value).endswith(
        f"({node} stays until it can be opened; remove it then with "
        f"`openamp rpmsg ept destroy {node}`)"
    )
    assert e.value.errno == errno.EINVAL
    assert [c[1] for c in kernel.ioctl.calls] == [CREATE_EPT]


def test_open_endpoint_for_an_unknown_channel_lists_the_channels(board: Board) -> None:
    with pytest.raises(DeviceNotFoundError, match="no rpmsg channel 'echo': channels: "):
        open_endpoint("echo", sysfs=board.sysfs, dev=board.dev)


def test_before_v5_18_the_channel_is_bound_to_get_a_control_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = Board(tmp_path)
    b.add_remoteproc(0, state="running")
    v = b.add_virtio(0, ctrl=None)
    chan = b.add_channel(v, "rpmsg-openamp-demo-channel", RPMSG_ADDR_ANY, 0x400)
    kernel = FakeRpmsgKernel(b)
    monkeypatch.setattr(fcntl, "ioctl", kernel.ioctl)
    bind_file = b.sysfs / "bus/rpmsg/drivers/rpmsg_chrdev/bind"

    def old_rpmsg_char() -> None:  # binds, then makes the ctrl below the channel
        while bind_file.read_text() != chan.name:
            time.sleep(0.001)
        _link(chan / "driver", b.sysfs / "bus/rpmsg/drivers/rpmsg_chrdev")
        b.add_class_device(chan / "rpmsg" / "rpmsg_ctrl0", node="file")

    t = threading.Thread(target=old_rpmsg_char)
    t.start()
    try:
        with open_endpoint("rpmsg-openamp-demo-channel", sysfs=b.sysfs, dev=b.dev) as ep:
            assert ep.dst == 0x400
    finally:
        t.join()
    assert (chan / "driver_override").read_text() == "rpmsg_chrdev"
    assert kernel.ioctl.calls[0][0] == str(b.dev / "rpmsg_ctrl0")


def test_bind_writes_driver_override_then_bind(board: Board) -> None:
    chan = find_channel("rpmsg-openamp-demo-channel", sysfs=board.sysfs)
    bind_channel(chan, sysfs=board.sysfs)
    assert (chan.path / "driver_override").read_bytes() == b"rpmsg_chrdev"
    assert (board.sysfs / "bus/rpmsg/drivers/rpmsg_chrdev/bind").read_bytes() == (
        b"virtio0.rpmsg-openamp-demo-channel.-1.1026"
    )


def test_a_channel_bound_to_another_driver_is_not_taken_without_rebind(board: Board) -> None:
    with pytest.raises(DeviceBusyError) as e:
        bind_channel("rpmsg-tty", sysfs=board.sysfs)
    assert str(e.value) == (
        "EBUSY binding virtio0.rpmsg-tty.1025.1027 to rpmsg_chrdev: channel "
        "virtio0.rpmsg-tty.1025.1027 is already bound to rpmsg_tty; unbind it first "
        "(rebind=True, `--rebind`)"
    )
    bind_channel("rpmsg-tty", sysfs=board.sysfs, rebind=True)
    assert (board.sysfs / "bus/rpmsg/drivers/rpmsg_tty/unbind").read_text() == (
        "virtio0.rpmsg-tty.1025.1027"
    )


def test_binding_to_a_driver_that_is_not_loaded_says_modprobe(board: Board) -> None:
    shutil.rmtree(board.sysfs / "bus/rpmsg/drivers/rpmsg_chrdev")
    with pytest.raises(DeviceNotFoundError, match="modprobe rpmsg_char"):
        bind_channel("rpmsg-openamp-demo-channel", sysfs=board.sysfs)
    chan = find_channel("rpmsg-openamp-demo-channel", sysfs=board.sysfs)
    assert chan.driver_override is None  # nothing was written


def test_a_failed_bind_leaves_the_channel_bound_as_it_was(board: Board) -> None:
    """Regression, found by tests/test_uml_adapters.py: with ``rebind`` the channel used
    to be unbound and its driver_override written before the driver was looked for."""
    with pytest.raises(DeviceNotFoundError, match="no driver no_such_driver"):
        bind_channel("rpmsg-raw", "no_such_driver", sysfs=board.sysfs, rebind=True)
    chan = find_channel("rpmsg-raw", sysfs=board.sysfs)
    assert (chan.driver, chan.driver_override) == ("rpmsg_chrdev", None)
    assert (board.sysfs / "bus/rpmsg/drivers/rpmsg_chrdev/unbind").read_text() == ""


def test_unbind_writes_the_device_and_clears_the_override(board: Board) -> None:
    chan = find_channel("rpmsg-raw", sysfs=board.sysfs)
    (chan.path / "driver_override").write_text("rpmsg_chrdev\n")
    unbind_channel("rpmsg-raw", sysfs=board.sysfs)
    assert (board.sysfs / "bus/rpmsg/drivers/rpmsg_chrdev/unbind").read_text() == chan.device
    assert (chan.path / "driver_override").read_text() == "\n"


def test_open_channel_opens_the_channels_own_endpoint_device(board: Board) -> None:
    with open_channel("rpmsg-raw", sysfs=board.sysfs, dev=board.dev) as ep:
        assert (ep.path, ep.src, ep.dst) == (board.dev / "rpmsg0", 0x400, 0x401)
        ep.send(b"\x00\xff")
        assert ep.recv(timeout=1) == b"\x00\xff"
    assert (board.dev / "rpmsg0").exists()  # closing a channel's device leaves it


def test_open_channel_binds_rpmsg_chrdev_when_needed(board: Board) -> None:
    """Against the real kernel: tests/test_uml_adapters.py (pyopenamp-svc)."""
    chan = find_channel("rpmsg-openamp-demo-channel", sysfs=board.sysfs)
    bind_file = board.sysfs / "bus/rpmsg/drivers/rpmsg_chrdev/bind"

    def rpmsg_char_probe() -> None:
        while bind_file.read_text() != chan.device:
            time.sleep(0.001)
        _link(chan.path / "driver", board.sysfs / "bus/rpmsg/drivers/rpmsg_chrdev")
        board.add_chrdev(chan.path, 1)

    t = threading.Thread(target=rpmsg_char_probe)
    t.start()
    try:
        with open_channel("rpmsg-openamp-demo-channel", sysfs=board.sysfs, dev=board.dev) as ep:
            assert ep.path == board.dev / "rpmsg1"
    finally:
        t.join()


def test_open_channel_without_bind_says_how_to_bind(board: Board) -> None:
    with pytest.raises(DeviceNotFoundError, match="openamp rpmsg bind rpmsg-openamp-demo"):
        open_channel("rpmsg-openamp-demo-channel", sysfs=board.sysfs, bind=False)


# -- endpoint semantics on real descriptors -----------------------------------------------


def test_one_send_is_one_message_and_one_recv_returns_it(seqpacket: Any) -> None:
    ep, remote = seqpacket
    assert ep.send(b"first") == 5
    ep.send(b"")
    ep.send(b"third")
    assert [remote.recv(100) for _ in range(3)] == [b"first", b"", b"third"]
    remote.send(b"a")
    remote.send(b"bc")
    assert ep.recv(timeout=1) == b"a" and ep.recv(timeout=1) == b"bc"


def test_a_short_receive_buffer_cuts_the_message_as_the_kernel_does(seqpacket: Any) -> None:
    ep, remote = seqpacket
    remote.send(b"0123456789")
    remote.send(b"next")
    assert ep.recv(timeout=1, max_size=4) == b"0123"
    assert ep.recv(timeout=1) == b"next"


def test_recv_times_out_and_zero_polls_once(seqpacket: Any) -> None:
    ep, _ = seqpacket
    t0 = time.monotonic()
    with pytest.raises(OpenAMPTimeoutError, match=r"no message on seqpacket within 0.05 s"):
        ep.recv(timeout=0.05)
    assert 0.04 < time.monotonic() - t0 < 1
    with pytest.raises(OpenAMPTimeoutError):
        ep.recv(timeout=0)


def test_recv_waits_for_a_message_that_comes_later(seqpacket: Any) -> None:
    ep, remote = seqpacket
    timer = threading.Timer(0.05, remote.send, args=(b"late",))
    timer.start()
    try:
        assert ep.recv(timeout=5) == b"late"
    finally:
        timer.join()


def test_the_endpoint_works_with_select(seqpacket: Any) -> None:
    ep, remote = seqpacket
    assert select.select([ep], [], [], 0)[0] == []
    remote.send(b"x")
    assert select.select([ep], [], [], 1)[0] == [ep]


def test_arecv_and_asend_work_with_asyncio(seqpacket: Any) -> None:
    ep, remote = seqpacket

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, remote.send, b"async")
        got = await asyncio.wait_for(ep.arecv(), timeout=5)
        await ep.asend(b"reply")
        return got

    assert asyncio.run(main()) == b"async"
    assert remote.recv(100) == b"reply"


def _fill(ep: RpmsgEndpoint) -> None:
    while True:
        try:
            ep.trysend(b"x" * 1000)
        except KernelNoBufferError:
            return


def test_with_no_buffer_free_trysend_fails_and_send_times_out(seqpacket: Any) -> None:
    ep, remote = seqpacket
    _fill(ep)
    with pytest.raises(KernelNoBufferError, match=r"^EAGAIN sending to seqpacket: no transmit"):
        ep.trysend(b"y")
    with pytest.raises(KernelSendTimeoutError, match=r"within 0.05 s"):
        ep.send(b"y", timeout=0.05)


def test_send_waits_until_the_remote_consumes_a_buffer(seqpacket: Any) -> None:
    ep, remote = seqpacket
    _fill(ep)
    timer = threading.Timer(0.05, remote.recv, args=(2000,))
    timer.start()
    try:
        assert ep.send(b"y" * 10, timeout=5) == 10
    finally:
        timer.join()


def test_a_vanished_peer_is_endpoint_gone(seqpacket: Any) -> None:
    ep, remote = seqpacket
    remote.close()
    with pytest.raises(EndpointGoneError, match=r"^EPIPE sending to seqpacket: the endpoint"):
        ep.send(b"x")


def test_an_endpoint_the_kernel_removed_is_closed_without_destroying_it_again(
    seqpacket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression, found by tests/test_uml_adapters.py: when the remote vanished, the
    kernel removes ctrl-made endpoint devices itself; RPMSG_DESTROY_EPT_IOCTL on one then
    crashes Linux 6.1 (it deletes the device twice).  The endpoint polls as gone
    (``POLLERR`` from the kernel; a closed socket pair's ``POLLHUP`` here)."""
    ep, remote = seqpacket
    ioctl = FakeIoctl()
    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    assert ep.gone() is False
    remote.close()
    assert ep.gone() is True
    ep.destroy_on_close = True
    ep.close()
    assert ep.closed and ioctl.calls == []


def test_a_closed_endpoint_refuses_use(seqpacket: Any) -> None:
    ep, _ = seqpacket
    ep.close()
    ep.close()
    with pytest.raises(EndpointClosedError):
        ep.send(b"x")
    with pytest.raises(EndpointClosedError):
        ep.fileno()


def test_iterating_yields_messages(seqpacket: Any) -> None:
    ep, remote = seqpacket
    for m in (b"1", b"2"):
        remote.send(m)
    it = iter(ep)
    assert [next(it), next(it)] == [b"1", b"2"]


def test_flow_control_ioctls(board: Board, kernel: FakeRpmsgKernel) -> None:
    """Linux 6.1 in tests/test_uml_adapters.py has no flow control: EINVAL, both ways."""
    with RpmsgEndpoint(board.dev / "rpmsg0", sysfs=board.sysfs) as ep:
        assert ep.outgoing_flow_restricted() is False
        with pytest.raises(RequestRejectedError, match="virtio never has"):
            ep.set_incoming_flow_control(True)
    node = str(board.dev / "rpmsg0")
    assert kernel.ioctl.calls == [(node, GET_FC, bytes(4)), (node, SET_FC, 1)]


def test_destroying_a_channels_endpoint_device_is_refused_with_advice(
    board: Board, kernel: FakeRpmsgKernel
) -> None:
    """Against the real kernel: tests/test_uml_adapters.py (rpmsg-raw's node)."""
    ep = RpmsgEndpoint("rpmsg0", sysfs=board.sysfs, dev=board.dev)
    with pytest.raises(
        RequestRejectedError, match=r"is a channel's endpoint .* \(`openamp rpmsg unbind"
    ):
        ep.destroy()
    assert ep.closed and (board.dev / "rpmsg0").exists()


def test_opening_a_missing_endpoint_device_lists_the_ones_there_are(board: Board) -> None:
    with pytest.raises(DeviceNotFoundError) as e:
        RpmsgEndpoint("rpmsg9", sysfs=board.sysfs, dev=board.dev)
    assert str(e.value) == (
        f"no endpoint device {board.dev / 'rpmsg9'}: endpoint devices: "
        f"{board.dev / 'rpmsg0'} ('rpmsg-raw' 0x400 -> 0x401)"
    )


def test_a_second_opener_gets_ebusy_advice(board: Board, monkeypatch: pytest.MonkeyPatch) -> None:
    def busy(path: Any, flags: int, *a: Any) -> int:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(os, "open", busy)
    with pytest.raises(DeviceBusyError, match=r"one opener at a time.*fuser"):
        RpmsgEndpoint(board.dev / "rpmsg0")


# -- the tty ------------------------------------------------------------------------------


@pytest.fixture
def pty() -> Iterator[tuple[TtyStream, int]]:
    """A TtyStream on the slave side of a real pseudo-terminal; the test holds the master."""
    master, slave = os.openpty()
    stream = TtyStream(os.ttyname(slave))
    os.close(slave)
    try:
        yield stream, master
    finally:
        stream.close()
        os.close(master)


ALL_BYTES = bytes(range(256))


def test_the_tty_is_raw_and_binary_safe_in_both_directions(pty: Any) -> None:
    stream, master = pty
    assert is_raw(stream.fileno())
    os.write(master, ALL_BYTES)
    assert stream.read_exactly(256, timeout=2) == ALL_BYTES
    stream.write(b"\r\n\x03\x04\x11\x13\xff\n")
    got = b""
    while len(got) < 8:
        got += os.read(master, 100)
    assert got == b"\r\n\x03\x04\x11\x13\xff\n"  # no \n -> \r\n, no ^C/^S handling


def test_readline_returns_whole_lines_and_keeps_the_rest(pty: Any) -> None:
    stream, master = pty
    os.write(master, b"one\ntwo\nthr")
    assert stream.readline(timeout=1) == b"one\n"
    assert stream.readline(timeout=1) == b"two\n"
    with pytest.raises(OpenAMPTimeoutError, match="3 bytes buffered"):
        stream.readline(timeout=0.05)
    os.write(master, b"ee\r\n")
    assert stream.readline(timeout=1, newline=b"\r\n") == b"three\r\n"


def test_read_returns_what_is_there_and_times_out_when_nothing_is(pty: Any) -> None:
    stream, master = pty
    with pytest.raises(OpenAMPTimeoutError, match=r"within 0.05 s"):
        stream.read(timeout=0.05)
    os.write(master, b"abc")
    assert stream.read(2, timeout=1) == b"ab"
    assert stream.read(timeout=1) == b"c"


def test_aread_works_with_asyncio(pty: Any) -> None:
    stream, master = pty

    async def main() -> bytes:
        asyncio.get_running_loop().call_later(0.02, os.write, master, b"hey")
        return await asyncio.wait_for(stream.aread(), timeout=5)

    assert asyncio.run(main()) == b"hey"


def test_a_closed_master_reads_as_end_of_file() -> None:
    master, slave = os.openpty()
    stream = TtyStream.from_fd(slave, name="pty")
    os.close(master)
    assert stream.read(timeout=1) == b""
    stream.close()


def test_writing_to_a_hung_up_tty_is_endpoint_gone() -> None:
    """Regression, found by tests/test_uml_adapters.py: the kernel hangs the rpmsg tty up
    when its channel goes; a write then fails with EIO, which was an untyped KernelError."""
    master, slave = os.openpty()
    stream = TtyStream.from_fd(slave, name="pty")
    os.close(master)
    with pytest.raises(EndpointGoneError, match=r"^EIO writing to pty: the rpmsg tty pty is gone"):
        stream.write(b"x\n", timeout=1)
    stream.close()


def test_open_tty_finds_the_tty_by_index_name_channel_or_alone(board: Board) -> None:
    master, slave = os.openpty()
    try:
        os.symlink(os.ttyname(slave), board.dev / "ttyRPMSG0")
        for kwargs in ({"target": 0}, {"target": "ttyRPMSG0"}, {"channel": "rpmsg-tty"}, {}):
            with open_tty(**kwargs, sysfs=board.sysfs, dev=board.dev) as stream:
                os.write(master, b"x\r")
                assert stream.read_exactly(2, timeout=1) == b"x\r"
    finally:
        os.close(master)
        os.close(slave)


def test_open_tty_for_an_unknown_channel_lists_the_ttys(board: Board) -> None:
    with pytest.raises(DeviceNotFoundError, match=r"ttyRPMSG0 \(rpmsg-tty\)"):
        open_tty(channel="nosuch", sysfs=board.sysfs, dev=board.dev)


def test_a_file_that_is_not_a_terminal_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "plain"
    f.write_text("")
    with pytest.raises(UsageError, match="is not a terminal"):
        TtyStream(f)


# -- the command line ---------------------------------------------------------------------


def rpmsg(board: Board, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``openamp rpmsg ARGS`` through a parser built like the openamp command's."""
    parser = argparse.ArgumentParser(prog="openamp")
    sub = parser.add_subparsers(dest="command")
    add_rpmsg_parser(sub)
    ns = parser.parse_args(["rpmsg", *args, "--sysfs", str(board.sysfs), "--dev", str(board.dev)])
    code = ns.func(ns)
    return code, capsys.readouterr().out


def test_cli_addresses_accept_hex_decimal_and_any() -> None:
    assert [parse_addr_arg(a) for a in ("1024", "0x400", "-1", "any")] == [
        1024,
        0x400,
        RPMSG_ADDR_ANY,
        RPMSG_ADDR_ANY,
    ]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_addr_arg("x")


def test_cli_ls_shows_channels_ctrls_endpoints_and_ttys(board: Board, capsys: Any) -> None:
    code, out = rpmsg(board, capsys, "ls")
    assert code == 0
    d = board.dev
    assert f"rpmsg-raw                   0x400  0x401  rpmsg_chrdev  {d}/rpmsg0" in out
    assert "rpmsg-openamp-demo-channel  ANY    0x402  -" in out
    assert f"{d}/rpmsg_ctrl0  virtio0.rpmsg_ctrl.0.0  remoteproc0" in out
    assert f"{d}/rpmsg0  rpmsg-raw  0x400  0x401  channel virtio0.rpmsg-raw.1024.1025" in out
    assert f"{d}/ttyRPMSG0  rpmsg-tty  0x401  0x403" in out
    code, out = rpmsg(board, capsys, "ls", "--json")
    data = json.loads(out)
    assert [c["name"] for c in data["channels"]] == [
        "rpmsg-raw",
        "rpmsg-openamp-demo-channel",
        "rpmsg-tty",
    ]
    assert data["ctrls"][0]["node"] == f"{d}/rpmsg_ctrl0"


def test_cli_ept_create_and_destroy_like_the_rpmsg_utils(
    board: Board, kernel: FakeRpmsgKernel, capsys: Any
) -> None:
    """Against the real kernel: tests/test_uml_adapters.py (the command in the guest)."""
    code, out = rpmsg(board, capsys, "ept", "create", "my-ept", "--src", "1024", "--dst", "0x400")
    assert (code, out) == (0, f"{board.dev / 'rpmsg1'}: 'my-ept' 0x400 -> 0x400\n")
    code, out = rpmsg(board, capsys, "ept", "create", "rpmsg-openamp-demo-channel", "--json")
    assert json.loads(out)["dst"] == 0x402 and json.loads(out)["node"].endswith("/rpmsg2")
    code, out = rpmsg(board, capsys, "ept", "destroy", "rpmsg1", str(board.dev / "rpmsg2"))
    assert out == f"{board.dev / 'rpmsg1'}: destroyed\n{board.dev / 'rpmsg2'}: destroyed\n"
    assert [c[1] for c in kernel.ioctl.calls] == [CREATE_EPT, CREATE_EPT, DESTROY_EPT, DESTROY_EPT]


def test_cli_channel_create_and_release(board: Board, kernel: FakeRpmsgKernel, capsys: Any) -> None:
    code, out = rpmsg(
        board, capsys, "channel", "create", "rpmsg-raw", "--src", "1026", "--dst", "0x401"
    )
    assert out == "channel 'rpmsg-raw' 0x402 -> 0x401: created\n"
    rpmsg(board, capsys, "channel", "release", "rpmsg-raw", "--src", "1026", "--dst", "0x401")
    assert kernel.ioctl.calls[1] == (
        str(board.dev / "rpmsg_ctrl0"),
        RELEASE_DEV,
        EndpointInfo("rpmsg-raw", 1026, 0x401).pack(),
    )


def test_cli_bind_and_unbind(board: Board, capsys: Any) -> None:
    code, out = rpmsg(board, capsys, "bind", "rpmsg-openamp-demo-channel")
    assert (
        out == "virtio0.rpmsg-openamp-demo-channel.-1.1026: driver_override rpmsg_chrdev, "
        "driver -\n"
    )
    code, out = rpmsg(board, capsys, "unbind", "rpmsg-raw", "--json")
    assert json.loads(out)["device"] == "virtio0.rpmsg-raw.1024.1025"


def test_cli_ping_gets_the_echo_of_each_message(board: Board, capsys: Any) -> None:
    code, out = rpmsg(board, capsys, "ping", "rpmsg-raw", "--count", "3", "--echo")
    assert code == 0
    assert out.startswith(f"ping {board.dev / 'rpmsg0'} (channel rpmsg-raw)\n")
    assert "  2: 6 bytes in " in out and ": 'ping 2'\n" in out
    assert "3 sent, 3 replies, 3 identical, median" in out


def test_cli_ping_through_a_temporary_endpoint_json(
    board: Board, kernel: FakeRpmsgKernel, capsys: Any
) -> None:
    code, out = rpmsg(
        board, capsys, "ping", "rpmsg-openamp-demo-channel", "--size", "496", "--json"
    )
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["results"][0]["data"] == "a5" * 496
    assert [c[1] for c in kernel.ioctl.calls] == [CREATE_EPT, DESTROY_EPT]


def test_cli_ping_without_a_reply_exits_1(board: Board, capsys: Any) -> None:
    master, slave = os.openpty()  # a node that takes messages and never answers
    os.unlink(board.dev / "rpmsg0")
    os.symlink(os.ttyname(slave), board.dev / "rpmsg0")
    try:
        code, out = rpmsg(board, capsys, "ping", "rpmsg0", "--timeout", "0.05")
    finally:
        os.close(master)
        os.close(slave)
    assert code == 1 and "1: no reply within 0.05 s" in out and "1 sent, 0 replies" in out


def test_cli_ping_over_the_tty(board: Board, capsys: Any) -> None:
    master, slave = os.openpty()
    os.symlink(os.ttyname(slave), board.dev / "ttyRPMSG0")
    stop = threading.Event()

    def echo() -> None:  # the remote: sends back what it gets
        while not stop.is_set():
            if select.select([master], [], [], 0.01)[0]:
                os.write(master, os.read(master, 1000))

    t = threading.Thread(target=echo)
    t.start()
    try:
        code, out = rpmsg(board, capsys, "ping", "ttyRPMSG0", "--message", "a\r\nb", "--echo")
    finally:
        stop.set()
        t.join()
        os.close(master)
        os.close(slave)
    assert code == 0 and "1 sent, 1 replies, 1 identical" in out


def test_cli_listen_on_a_tty_that_hangs_up_ends_with_endpoint_gone(
    board: Board, capsys: Any
) -> None:
    """Regression, found by tests/test_uml_adapters.py: a hung-up tty reads as end of
    file, and ``listen`` printed empty messages forever instead of stopping."""
    master, slave = os.openpty()
    os.symlink(os.ttyname(slave), board.dev / "ttyRPMSG0")
    hang_up = threading.Timer(0.1, os.close, [master])
    hang_up.start()
    try:
        with pytest.raises(EndpointGoneError, match=r"ttyRPMSG0 was hung up"):
            rpmsg(board, capsys, "listen", "ttyRPMSG0", "--for", "5")
    finally:
        hang_up.join()
        os.close(slave)
    assert "0 bytes" not in capsys.readouterr().out


def test_cli_send_and_listen(board: Board, capsys: Any) -> None:
    keep = os.open(board.dev / "rpmsg0", os.O_RDWR)  # a FIFO forgets its data when unopened
    try:
        code, out = rpmsg(board, capsys, "send", "rpmsg0", "hello")
        assert out == f"{board.dev / 'rpmsg0'}: sent 1 message(s), 5 bytes\n"
        code, out = rpmsg(board, capsys, "listen", "rpmsg0", "--count", "1", "--for", "5")
        assert "    5 bytes: 'hello'" in out and out.endswith("1 message(s)\n")
        code, out = rpmsg(board, capsys, "send", "rpmsg-raw", "--hex", "00ff 10", "--json")
        assert json.loads(out)["sent"] == [3]
        code, out = rpmsg(board, capsys, "listen", "rpmsg0", "--for", "0.2", "--json")
    finally:
        os.close(keep)
    first = json.loads(out.splitlines()[0])
    assert (first["seq"], first["len"], first["hex"]) == (1, 3, "00ff10")


def test_cli_listen_for_a_while_with_nothing_arriving(board: Board, capsys: Any) -> None:
    code, out = rpmsg(board, capsys, "listen", "rpmsg0", "--for", "0.05", "--hex")
    assert code == 0 and out.endswith("0 message(s)\n")


def test_cli_an_unknown_target_lists_channels_and_endpoint_devices(
    board: Board, capsys: Any
) -> None:
    with pytest.raises(DeviceNotFoundError) as e:
        rpmsg(board, capsys, "send", "nosuch", "x")
    assert "no endpoint device, tty or channel 'nosuch': channels: 'rpmsg-raw'" in str(e.value)
    assert f"endpoint devices: {board.dev / 'rpmsg0'}" in str(e.value)
