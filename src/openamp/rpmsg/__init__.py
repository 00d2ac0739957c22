"""RPMsg: endpoints, addresses and the name service, over virtio (both roles).

What a link lets you observe (messages, name service, status, features, kicks, errors)
is one event model, :mod:`openamp.rpmsg.events`, handed to a device's ``capture`` hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "RxBuffer": ".buffers",
    "TxBuffer": ".buffers",
    "Endpoint": ".core",
    "RpmsgDevice": ".core",
    "QUEUE_LIMIT": ".core",
    "SEND_TIMEOUT": ".core",
    "SERVICE_LIMIT": ".core",
    "Waiter": ".core",
    "ConfigEvent": ".events",
    "EndpointEvent": ".events",
    "ErrorEvent": ".events",
    "Event": ".events",
    "EventHook": ".events",
    "FeaturesEvent": ".events",
    "KickEvent": ".events",
    "LinkEvent": ".events",
    "MessageEvent": ".events",
    "MissedEvent": ".events",
    "NsEvent": ".events",
    "StatusEvent": ".events",
    "TraceHook": ".events",
    "RpmsgVirtioConfig": ".virtio",
    "RpmsgVirtioDevice": ".virtio",
    "ShmPool": ".virtio",
    "NsMessage": ".wire",
    "RPMSG_ADDR_ANY": ".wire",
    "RPMSG_BUFFER_SIZE": ".wire",
    "RPMSG_HDR": ".wire",
    "RPMSG_NS_EPT_ADDR": ".wire",
    "RPMSG_NS_MSG": ".wire",
    "RpmsgConfigSpace": ".wire",
    "SHUTDOWN_MSG": ".wire",
    "VIRTIO_RPMSG_F_BUFSZ": ".wire",
    "VIRTIO_RPMSG_F_NS": ".wire",
    "decode_ns": ".wire",
    "encode_ns": ".wire",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .buffers import (
        RxBuffer as RxBuffer,
        TxBuffer as TxBuffer,
    )
    from .core import (
        QUEUE_LIMIT as QUEUE_LIMIT,
        SEND_TIMEOUT as SEND_TIMEOUT,
        SERVICE_LIMIT as SERVICE_LIMIT,
        Endpoint as Endpoint,
        RpmsgDevice as RpmsgDevice,
        Waiter as Waiter,
    )
    from .events import (
        ConfigEvent as ConfigEvent,
        EndpointEvent as EndpointEvent,
        ErrorEvent as ErrorEvent,
        Event as Event,
        EventHook as EventHook,
        FeaturesEvent as FeaturesEvent,
        KickEvent as KickEvent,
        LinkEvent as LinkEvent,
        MessageEvent as MessageEvent,
        MissedEvent as MissedEvent,
        NsEvent as NsEvent,
        StatusEvent as StatusEvent,
        TraceHook as TraceHook,
    )
    from .virtio import (
        RpmsgVirtioConfig as RpmsgVirtioConfig,
        RpmsgVirtioDevice as RpmsgVirtioDevice,
        ShmPool as ShmPool,
    )
    from .wire import (
        RPMSG_ADDR_ANY as RPMSG_ADDR_ANY,
        RPMSG_BUFFER_SIZE as RPMSG_BUFFER_SIZE,
        RPMSG_HDR as RPMSG_HDR,
        RPMSG_NS_EPT_ADDR as RPMSG_NS_EPT_ADDR,
        RPMSG_NS_MSG as RPMSG_NS_MSG,
        SHUTDOWN_MSG as SHUTDOWN_MSG,
        VIRTIO_RPMSG_F_BUFSZ as VIRTIO_RPMSG_F_BUFSZ,
        VIRTIO_RPMSG_F_NS as VIRTIO_RPMSG_F_NS,
        NsMessage as NsMessage,
        RpmsgConfigSpace as RpmsgConfigSpace,
        decode_ns as decode_ns,
        encode_ns as encode_ns,
    )
