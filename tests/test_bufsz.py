"""Buffer sizes negotiated through the config space (VIRTIO_RPMSG_F_BUFSZ).

Layout and semantics follow the Linux series that adds the feature
(``include/linux/rpmsg/virtio_rpmsg.h``: bit 1, ``struct virtio_rpmsg_config`` packed,
sizes from the remote's view)."""

from __future__ import annotations

import struct
import subprocess
from dataclasses import replace

import pytest

from openamp import ResourceTableError, UsageError
from openamp.platform import LINUX_GENERIC, InProcessPair, MachineLayout
from openamp.remoteproc.rsc_table import RSC_VDEV, ResourceTable
from openamp.rpmsg import (
    VIRTIO_RPMSG_F_BUFSZ,
    VIRTIO_RPMSG_F_NS,
    RpmsgConfigSpace,
    RpmsgVirtioConfig,
)

KERNEL_STRUCT = r"""
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
/* include/linux/rpmsg/virtio_rpmsg.h of the series, with __virtioNN as little-endian */
struct virtio_rpmsg_config {
    uint16_t version;
    uint32_t txbuf_size;
    uint32_t rxbuf_size;
    uint32_t reserved[14];
} __attribute__((packed));
int main(void) {
    struct virtio_rpmsg_config c = {0};
    c.version = 1; c.txbuf_size = 0x1000; c.rxbuf_size = 0x200;
    printf("%zu %zu %zu ", sizeof c, offsetof(struct virtio_rpmsg_config, txbuf_size),
           offsetof(struct virtio_rpmsg_config, rxbuf_size));
    for (size_t i = 0; i < sizeof c; i++) printf("%02x", ((unsigned char *)&c)[i]);
    printf("\n");
    return 0;
}
"""


def _layout(r2h: int, h2r: int) -> MachineLayout:
    return replace(MachineLayout.for_buffers(max(r2h, h2r)), buffer_sizes=(r2h, h2r))


def test_the_config_space_is_the_kernel_struct(tmp_path):
    (tmp_path / "c.c").write_text(KERNEL_STRUCT)
    subprocess.run(["gcc", "-o", str(tmp_path / "c"), str(tmp_path / "c.c")], check=True)
    out = subprocess.run([str(tmp_path / "c")], capture_output=True, text=True, check=True)
    size, tx_at, rx_at, image = out.stdout.split()
    assert (int(size), int(tx_at), int(rx_at)) == (66, 2, 6)
    ours = RpmsgConfigSpace(txbuf_size=0x1000, rxbuf_size=0x200, version=1).to_bytes()
    assert ours.hex() == image
    assert RpmsgConfigSpace.parse(bytes.fromhex(image)) == RpmsgConfigSpace(0x1000, 0x200, 1)


def test_the_remote_decides_the_sizes_per_direction():
    p = InProcessPair(layout=_layout(r2h=1024, h2r=4096))
    # the driver asks for 512 both ways, but the remote offers BUFSZ: the remote wins
    host = p.driver(config=RpmsgVirtioConfig(512, 512))
    remote = p.device()
    assert host.features & (1 << VIRTIO_RPMSG_F_BUFSZ)
    assert remote.features & (1 << VIRTIO_RPMSG_F_BUFSZ)
    assert (host.rx_capacity, host.tx_capacity) == (1008, 4080)
    r = remote.create_endpoint("", src=0x400)
    h = host.create_endpoint("", src=0x400, dst=0x400)
    h.send(b"h" * 4080)
    assert r.recv(timeout=0) == b"h" * 4080
    r.sendto(b"r" * 1008, 0x400)
    assert h.recv(timeout=0) == b"r" * 1008
    with pytest.raises(Exception, match="1008"):
        r.sendto(b"r" * 1009, 0x400)


def test_the_table_carries_the_offer():
    table = _layout(r2h=2048, h2r=1024).resource_table()
    off, vdev = table.find(RSC_VDEV)
    assert vdev.dfeatures == (1 << VIRTIO_RPMSG_F_NS) | (1 << VIRTIO_RPMSG_F_BUFSZ)
    assert vdev.config == struct.pack("<HII", 0, 2048, 1024) + bytes(56)
    assert ResourceTable.parse(table.to_bytes()).find(RSC_VDEV)[1].config == vdev.config


def test_the_c_layout_offers_nothing_and_keeps_its_bytes():
    # The Linux generic machine of the C demos has no config space; nothing changes there.
    table = LINUX_GENERIC.resource_table()
    vdev = table.find(RSC_VDEV)[1]
    assert vdev.dfeatures == 1 << VIRTIO_RPMSG_F_NS and vdev.config == b""
    assert len(table.to_bytes()) == 88


def test_a_driver_that_does_not_know_the_feature_uses_its_own_sizes():
    # As a C host or a Linux without the series does: gfeatures lack BUFSZ, and the
    # device simply uses what the descriptors say.
    p = InProcessPair(layout=replace(MachineLayout.for_buffers(2048), buffer_sizes=(1024, 1024)))
    host = p.driver(config=RpmsgVirtioConfig(2048, 2048), features=1 << VIRTIO_RPMSG_F_NS)
    remote = p.device()
    assert not host.features & (1 << VIRTIO_RPMSG_F_BUFSZ)
    assert (host.rx_capacity, host.tx_capacity) == (2032, 2032)
    r = remote.create_endpoint("", src=0x400)
    host.create_endpoint("", dst=0x400).send(b"x" * 2032)
    assert r.recv(timeout=0) == b"x" * 2032


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (b"\0" * 10, "66"),  # too short
        (struct.pack("<HII", 0, 16, 512) + bytes(56), "header"),  # no room for a payload
        (struct.pack("<HII", 0, 512, 0x20000) + bytes(56), "up to"),  # larger than we do
    ],
)
def test_a_bad_config_space_is_a_typed_error(config, match):
    layout = MachineLayout.for_buffers(512)
    p = InProcessPair(layout=replace(layout, buffer_sizes=None))
    # write a BUFSZ offer with a bad config by hand, as a broken remote would
    table = p.layout.resource_table()
    vdev = table.find(RSC_VDEV)[1]
    bad = ResourceTable(
        [replace(vdev, dfeatures=vdev.dfeatures | 1 << VIRTIO_RPMSG_F_BUFSZ, config=config)]
    )
    p.region.write_block(p.layout.rsc_offset, bad.to_bytes())
    with pytest.raises(ResourceTableError, match=match):
        p.driver()


def test_a_layout_whose_pool_cannot_hold_the_offered_buffers_is_refused():
    with pytest.raises(UsageError, match="do not fit"):
        replace(LINUX_GENERIC, buffer_sizes=(4096, 4096))


def test_a_pool_with_no_room_for_a_transmit_buffer_fails_at_start_not_at_the_first_send():
    # 256 receive buffers of 2048 fill a pool sized for 1024-byte buffers both ways
    p = InProcessPair(layout=replace(MachineLayout.for_buffers(1024), buffer_sizes=None))
    with pytest.raises(UsageError, match="no room for a transmit buffer"):
        p.driver(config=RpmsgVirtioConfig(2048, 2048))
