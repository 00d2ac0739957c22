"""pyopenamp: OpenAMP for Python.

remoteproc, virtio split rings and RPMsg, wire-compatible with the C OpenAMP library and
the Linux kernel, plus simulation, inspection and benchmarking tools.
"""

from .errors import (
    AddressExhaustedError,
    AddressInUseError,
    EndpointClosedError,
    EndpointNotBoundError,
    FirmwareImageError,
    InvalidStateError,
    MessageError,
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
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "AddressExhaustedError",
    "AddressInUseError",
    "EndpointClosedError",
    "EndpointNotBoundError",
    "FirmwareImageError",
    "InvalidStateError",
    "MessageError",
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
    "UsageError",
    "__version__",
]
