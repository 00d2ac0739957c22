"""pyopenamp: OpenAMP for Python.

remoteproc, virtio split rings and RPMsg, wire-compatible with the C OpenAMP library and
the Linux kernel, plus simulation, inspection and benchmarking tools.
"""

from .errors import (
    AddressExhaustedError,
    AddressInUseError,
    DeviceGoneError,
    EndpointClosedError,
    EndpointNotBoundError,
    EndpointUnboundError,
    FirmwareImageError,
    InvalidStateError,
    MessageError,
    MmioAckTimeoutError,
    MmioWindowError,
    NoBufferError,
    OpenAMPError,
    OpenAMPTimeoutError,
    PayloadTooLargeError,
    PeerGoneError,
    PeerProtocolError,
    RegionBoundsError,
    ResourceTableError,
    RingError,
    SendTimeoutError,
    TransportStoppedError,
    UsageError,
)

__version__ = "0.1.0"

_SUBMODULES = ("linux", "virtual", "platform", "remoteproc", "rpmsg", "services", "virtio")


def __getattr__(name: str) -> object:
    # ``openamp.linux`` and ``openamp.virtual`` work after a plain ``import openamp``,
    # loaded on first use so that an application pays only for what it touches.
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'openamp' has no attribute {name!r}")


__all__ = [
    "AddressExhaustedError",
    "AddressInUseError",
    "DeviceGoneError",
    "EndpointClosedError",
    "EndpointNotBoundError",
    "EndpointUnboundError",
    "FirmwareImageError",
    "InvalidStateError",
    "MessageError",
    "MmioAckTimeoutError",
    "MmioWindowError",
    "NoBufferError",
    "OpenAMPError",
    "OpenAMPTimeoutError",
    "PayloadTooLargeError",
    "PeerGoneError",
    "PeerProtocolError",
    "RegionBoundsError",
    "ResourceTableError",
    "RingError",
    "SendTimeoutError",
    "TransportStoppedError",
    "UsageError",
    "__version__",
]
