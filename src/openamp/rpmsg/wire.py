"""RPMsg wire formats: the 16-byte message header and the 40-byte name-service record.

Defined once, as precompiled little-endian ``struct`` objects, for the C library and the
Linux kernel alike (both are packed and, on every supported target, little-endian).
Decoders here treat their input as untrusted and raise :class:`MessageError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import MessageError, UsageError

RPMSG_HDR = struct.Struct("<IIIHH")
"""``struct rpmsg_hdr``: src, dst, reserved, len, flags."""
RPMSG_HDR_SIZE = RPMSG_HDR.size  # 16

RPMSG_NS_MSG = struct.Struct("<32sII")
"""``struct rpmsg_ns_msg``: name[32], addr, flags."""
RPMSG_NS_MSG_SIZE = RPMSG_NS_MSG.size  # 40

RPMSG_NAME_SIZE = 32
RPMSG_NS_EPT_ADDR = 0x35
RPMSG_ADDR_ANY = 0xFFFFFFFF
RPMSG_RESERVED_ADDRESSES = 1024
RPMSG_ADDR_BMP_SIZE = 128
"""How many dynamic addresses the C library tracks (1024..1151)."""

RPMSG_NS_CREATE = 0
RPMSG_NS_DESTROY = 1

VIRTIO_RPMSG_F_NS = 0
"""Feature bit: the name service is supported."""

VIRTIO_RPMSG_F_BUFSZ = 1
"""Feature bit: the device's config space gives the buffer sizes (``virtio_rpmsg_config``).

As in the Linux patch series that adds it (``include/linux/rpmsg/virtio_rpmsg.h``, bit 1).
NuttX's fork of OpenAMP uses bit 2 with a different config layout; we do not speak that.
"""

VIRTIO_RPMSG_CONFIG = struct.Struct("<HII56x")
"""``struct virtio_rpmsg_config`` (packed, 66 bytes): version, txbuf_size, rxbuf_size,
reserved[14].  Sizes are from the *remote's* view: ``txbuf_size`` is remote -> host."""
VIRTIO_RPMSG_CONFIG_SIZE = VIRTIO_RPMSG_CONFIG.size  # 66


@dataclass(frozen=True)
class RpmsgConfigSpace:
    """The rpmsg device's config space when ``VIRTIO_RPMSG_F_BUFSZ`` is offered.

    ``txbuf_size``/``rxbuf_size`` are the remote's transmit and receive buffer sizes,
    i.e. remote -> host and host -> remote; whole buffers, header included.
    """

    txbuf_size: int
    rxbuf_size: int
    version: int = 0

    def to_bytes(self) -> bytes:
        """The 66 bytes to put in the vdev's config space."""
        for name in ("txbuf_size", "rxbuf_size"):
            v = getattr(self, name)
            if not RPMSG_HDR_SIZE < v <= 0xFFFFFFFF:
                raise UsageError(f"{name} must hold a header and a payload byte, got {v}")
        return VIRTIO_RPMSG_CONFIG.pack(self.version, self.txbuf_size, self.rxbuf_size)

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RpmsgConfigSpace:
        """Decode a config space the peer wrote; :class:`MessageError` if it is too short
        or names a buffer that cannot hold a header."""
        if len(data) < VIRTIO_RPMSG_CONFIG_SIZE:
            raise MessageError(
                f"rpmsg config space is {len(data)} bytes, "
                f"VIRTIO_RPMSG_F_BUFSZ needs {VIRTIO_RPMSG_CONFIG_SIZE}"
            )
        version, tx, rx = VIRTIO_RPMSG_CONFIG.unpack_from(data)
        if tx <= RPMSG_HDR_SIZE or rx <= RPMSG_HDR_SIZE:
            raise MessageError(
                f"rpmsg config space gives buffer sizes {tx} (remote tx) and {rx} (remote rx); "
                f"each must be over the {RPMSG_HDR_SIZE}-byte header"
            )
        return cls(txbuf_size=tx, rxbuf_size=rx, version=version)


RPMSG_BUFFER_SIZE = 512
"""Default buffer size of the C library and Linux (496-byte payload)."""

SHUTDOWN_MSG = 0xEF56A55A
"""First u32 of the demos' shutdown message."""


@dataclass(frozen=True)
class NsMessage:
    """A decoded name-service announcement."""

    name: str
    addr: int
    destroy: bool

    @property
    def flags(self) -> int:
        """The wire flags value (0 create, 1 destroy)."""
        return RPMSG_NS_DESTROY if self.destroy else RPMSG_NS_CREATE


def encode_name(name: str) -> bytes:
    """A service name as the 32-byte NUL-padded field (at most 31 bytes of name).

    Unlike the C library, which leaves stack bytes after the terminating NUL, the rest
    of the field is always zero.
    """
    raw = name.encode("utf-8")
    if len(raw) >= RPMSG_NAME_SIZE:
        raise UsageError(f"service name {name!r} is {len(raw)} bytes; at most 31 fit")
    if b"\0" in raw:
        raise UsageError(f"service name {name!r} contains a NUL byte")
    return raw


def decode_name(field: bytes) -> str:
    """The name in a 32-byte field: up to the first NUL (C ``strncmp(…, 32)`` semantics)."""
    end = field.find(b"\0")
    raw = field if end < 0 else field[:end]
    return raw.decode("utf-8", errors="replace")


def encode_ns(name: str, addr: int, destroy: bool = False) -> bytes:
    """The 40-byte name-service payload for ``name`` at ``addr``."""
    return RPMSG_NS_MSG.pack(encode_name(name), addr, RPMSG_NS_DESTROY if destroy else 0)


def decode_ns(payload: bytes | memoryview) -> NsMessage:
    """Decode a name-service payload; it must be exactly 40 bytes (as both C and Linux require)."""
    if len(payload) != RPMSG_NS_MSG_SIZE:
        raise MessageError(
            f"name-service message of {len(payload)} bytes (must be {RPMSG_NS_MSG_SIZE})"
        )
    raw, addr, flags = RPMSG_NS_MSG.unpack_from(payload)
    return NsMessage(decode_name(raw), addr, bool(flags & 1))
