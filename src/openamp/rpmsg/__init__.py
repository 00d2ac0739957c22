"""RPMsg: endpoints, addresses and the name service, over virtio (both roles)."""

from .buffers import RxBuffer, TxBuffer
from .core import SEND_TIMEOUT, Endpoint, RpmsgDevice, Waiter
from .virtio import MessageEvent, RpmsgVirtioConfig, RpmsgVirtioDevice, ShmPool
from .wire import (
    RPMSG_ADDR_ANY,
    RPMSG_BUFFER_SIZE,
    RPMSG_HDR,
    RPMSG_NS_EPT_ADDR,
    RPMSG_NS_MSG,
    SHUTDOWN_MSG,
    VIRTIO_RPMSG_F_BUFSZ,
    VIRTIO_RPMSG_F_NS,
    NsMessage,
    RpmsgConfigSpace,
    decode_ns,
    encode_ns,
)

__all__ = [
    "RPMSG_ADDR_ANY",
    "RPMSG_BUFFER_SIZE",
    "RPMSG_HDR",
    "RPMSG_NS_EPT_ADDR",
    "RPMSG_NS_MSG",
    "SEND_TIMEOUT",
    "SHUTDOWN_MSG",
    "VIRTIO_RPMSG_F_BUFSZ",
    "VIRTIO_RPMSG_F_NS",
    "Endpoint",
    "MessageEvent",
    "NsMessage",
    "RpmsgConfigSpace",
    "RpmsgDevice",
    "RpmsgVirtioConfig",
    "RpmsgVirtioDevice",
    "RxBuffer",
    "ShmPool",
    "TxBuffer",
    "Waiter",
    "decode_ns",
    "encode_ns",
]
