"""OpenAMP on a real board: the Linux kernel's remoteproc and rpmsg, from Python.

On STM32MP1, i.MX8, ZynqMP and friends the kernel drives the remote core.  This package
is the host application's side of that: remote processors through sysfs
(:class:`RemoteProc`), endpoints through ``/dev/rpmsg_ctrlN`` and ``/dev/rpmsgN``
(:func:`open_endpoint`, :class:`RpmsgCtrl`, :class:`RpmsgEndpoint`), channels found by
name in ``/sys/bus/rpmsg/devices`` (:func:`list_channels`), and the rpmsg tty as a raw
byte stream (:func:`open_tty`)::

    import openamp.linux

    rp = openamp.linux.RemoteProc("remoteproc0")
    rp.firmware = "rproc-echo.elf"
    rp.start()
    with openamp.linux.open_endpoint("rpmsg-raw", src=1024, dst=0x400) as ep:
        ep.send(b"ping")
        print(ep.recv(timeout=1.0))

Every function takes the roots it reads (``sysfs``, ``debugfs``, ``dev``) as parameters,
so it works on a directory tree laid out like the kernel's.  Kernel errors become
:class:`KernelError` subclasses whose messages say what to do.  Nothing here imports
the simulation layers; see docs/on-a-board.md.
"""

from .remoteproc import (
    KERNEL_TRANSITIONS,
    DebugfsResource,
    DeviceBusyError,
    DeviceNotFoundError,
    EndpointGoneError,
    FirmwareInstallError,
    FirmwareNotFoundError,
    KernelError,
    KernelNoBufferError,
    KernelPermissionError,
    KernelSendTimeoutError,
    KernelState,
    MessageTooLargeError,
    RemoteProc,
    RemoteprocCdev,
    RequestRejectedError,
    firmware_search_path,
    list_remoteprocs,
)
from .rpmsg import (
    RPMSG_ADDR_ANY,
    Channel,
    CtrlDevice,
    EndpointDevice,
    EndpointInfo,
    RpmsgCtrl,
    RpmsgEndpoint,
    TtyDevice,
    bind_channel,
    find_channel,
    list_channels,
    list_ctrls,
    list_endpoint_devices,
    list_ttys,
    open_channel,
    open_endpoint,
    unbind_channel,
)
from .tty import TtyStream, open_tty

__all__ = [
    "KERNEL_TRANSITIONS",
    "RPMSG_ADDR_ANY",
    "Channel",
    "CtrlDevice",
    "DebugfsResource",
    "DeviceBusyError",
    "DeviceNotFoundError",
    "EndpointDevice",
    "EndpointGoneError",
    "EndpointInfo",
    "FirmwareInstallError",
    "FirmwareNotFoundError",
    "KernelError",
    "KernelNoBufferError",
    "KernelPermissionError",
    "KernelSendTimeoutError",
    "KernelState",
    "MessageTooLargeError",
    "RemoteProc",
    "RemoteprocCdev",
    "RequestRejectedError",
    "RpmsgCtrl",
    "RpmsgEndpoint",
    "TtyDevice",
    "TtyStream",
    "bind_channel",
    "find_channel",
    "firmware_search_path",
    "list_channels",
    "list_ctrls",
    "list_endpoint_devices",
    "list_remoteprocs",
    "list_ttys",
    "open_channel",
    "open_endpoint",
    "open_tty",
    "unbind_channel",
]
