"""Remote processor management: life cycle, firmware loading and resource tables.

* :mod:`.rsc_table` — parse, build and check resource tables (the contract between a
  firmware and its host);
* :mod:`.elf`, :mod:`.store` — ELF images (pyelftools) and the stores they are read from;
* :mod:`.core` — :class:`RemoteProc`, its :class:`RemoteprocOps` and resource handling;
* :mod:`.state` — the life cycle as a transition table;
* :mod:`.virtio` — a vdev entry of a live table as a virtio transport.

Platforms (how memory is reached, how a core starts) live in :mod:`openamp.platform`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "Firmware": ".core",
    "Mapping": ".core",
    "MemoryMapOps": ".core",
    "RemoteProc": ".core",
    "RemoteprocOps": ".core",
    "StateEvent": ".core",
    "TraceBuffer": ".core",
    "VdevDevice": ".core",
    "VdevLink": ".core",
    "VdevResource": ".core",
    "COPY_CHUNK": ".elf",
    "ELF_MAGIC": ".elf",
    "ElfImage": ".elf",
    "MapCallback": ".elf",
    "RSC_TABLE_SECTION": ".elf",
    "RscTableLocation": ".elf",
    "Segment": ".elf",
    "is_elf": ".elf",
    "load_segments": ".elf",
    "ElfFirmware": ".firmware",
    "CARVEOUT": ".rsc_table",
    "Carveout": ".rsc_table",
    "DEVMEM": ".rsc_table",
    "Devmem": ".rsc_table",
    "Entry": ".rsc_table",
    "FW_RSC_ADDR_ANY": ".rsc_table",
    "NAME_SIZE": ".rsc_table",
    "RSC_CARVEOUT": ".rsc_table",
    "RSC_DEVMEM": ".rsc_table",
    "RSC_LAST": ".rsc_table",
    "RSC_NOTIFY_ID_ANY": ".rsc_table",
    "RSC_TRACE": ".rsc_table",
    "RSC_VDEV": ".rsc_table",
    "RSC_VENDOR_END": ".rsc_table",
    "RSC_VENDOR_START": ".rsc_table",
    "ResourceTable": ".rsc_table",
    "TABLE_HDR": ".rsc_table",
    "TABLE_OFFSET": ".rsc_table",
    "TABLE_VERSION": ".rsc_table",
    "TRACE": ".rsc_table",
    "Trace": ".rsc_table",
    "UnknownEntry": ".rsc_table",
    "VDEV": ".rsc_table",
    "VDEV_CONFIG_LEN_OFFSET": ".rsc_table",
    "VDEV_DFEATURES_OFFSET": ".rsc_table",
    "VDEV_GFEATURES_OFFSET": ".rsc_table",
    "VDEV_NOTIFYID_OFFSET": ".rsc_table",
    "VDEV_NUM_VRINGS_OFFSET": ".rsc_table",
    "VDEV_STATUS_OFFSET": ".rsc_table",
    "VDEV_VRING": ".rsc_table",
    "VDEV_VRINGS_OFFSET": ".rsc_table",
    "VENDOR": ".rsc_table",
    "VIRTIO_ID_RPMSG": ".rsc_table",
    "Vdev": ".rsc_table",
    "VdevVring": ".rsc_table",
    "Vendor": ".rsc_table",
    "entry_type_name": ".rsc_table",
    "RemoteprocStateError": ".state",
    "RprocState": ".state",
    "TRANSITIONS": ".state",
    "BytesImageStore": ".store",
    "FileImageStore": ".store",
    "ImageStore": ".store",
    "ImageStoreBase": ".store",
    "STREAM_BACKLOG": ".store",
    "StreamingImageStore": ".store",
    "open_image": ".store",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .core import (
        Firmware as Firmware,
        Mapping as Mapping,
        MemoryMapOps as MemoryMapOps,
        RemoteProc as RemoteProc,
        RemoteprocOps as RemoteprocOps,
        StateEvent as StateEvent,
        TraceBuffer as TraceBuffer,
        VdevDevice as VdevDevice,
        VdevLink as VdevLink,
        VdevResource as VdevResource,
    )
    from .elf import (
        COPY_CHUNK as COPY_CHUNK,
        ELF_MAGIC as ELF_MAGIC,
        RSC_TABLE_SECTION as RSC_TABLE_SECTION,
        ElfImage as ElfImage,
        MapCallback as MapCallback,
        RscTableLocation as RscTableLocation,
        Segment as Segment,
        is_elf as is_elf,
        load_segments as load_segments,
    )
    from .firmware import (
        ElfFirmware as ElfFirmware,
    )
    from .rsc_table import (
        CARVEOUT as CARVEOUT,
        DEVMEM as DEVMEM,
        FW_RSC_ADDR_ANY as FW_RSC_ADDR_ANY,
        NAME_SIZE as NAME_SIZE,
        RSC_CARVEOUT as RSC_CARVEOUT,
        RSC_DEVMEM as RSC_DEVMEM,
        RSC_LAST as RSC_LAST,
        RSC_NOTIFY_ID_ANY as RSC_NOTIFY_ID_ANY,
        RSC_TRACE as RSC_TRACE,
        RSC_VDEV as RSC_VDEV,
        RSC_VENDOR_END as RSC_VENDOR_END,
        RSC_VENDOR_START as RSC_VENDOR_START,
        TABLE_HDR as TABLE_HDR,
        TABLE_OFFSET as TABLE_OFFSET,
        TABLE_VERSION as TABLE_VERSION,
        TRACE as TRACE,
        VDEV as VDEV,
        VDEV_CONFIG_LEN_OFFSET as VDEV_CONFIG_LEN_OFFSET,
        VDEV_DFEATURES_OFFSET as VDEV_DFEATURES_OFFSET,
        VDEV_GFEATURES_OFFSET as VDEV_GFEATURES_OFFSET,
        VDEV_NOTIFYID_OFFSET as VDEV_NOTIFYID_OFFSET,
        VDEV_NUM_VRINGS_OFFSET as VDEV_NUM_VRINGS_OFFSET,
        VDEV_STATUS_OFFSET as VDEV_STATUS_OFFSET,
        VDEV_VRING as VDEV_VRING,
        VDEV_VRINGS_OFFSET as VDEV_VRINGS_OFFSET,
        VENDOR as VENDOR,
        VIRTIO_ID_RPMSG as VIRTIO_ID_RPMSG,
        Carveout as Carveout,
        Devmem as Devmem,
        Entry as Entry,
        ResourceTable as ResourceTable,
        Trace as Trace,
        UnknownEntry as UnknownEntry,
        Vdev as Vdev,
        VdevVring as VdevVring,
        Vendor as Vendor,
        entry_type_name as entry_type_name,
    )
    from .state import (
        TRANSITIONS as TRANSITIONS,
        RemoteprocStateError as RemoteprocStateError,
        RprocState as RprocState,
    )
    from .store import (
        STREAM_BACKLOG as STREAM_BACKLOG,
        BytesImageStore as BytesImageStore,
        FileImageStore as FileImageStore,
        ImageStore as ImageStore,
        ImageStoreBase as ImageStoreBase,
        StreamingImageStore as StreamingImageStore,
        open_image as open_image,
    )
