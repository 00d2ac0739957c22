"""One system description for both sides: a Lopper domain YAML and the system device tree
become the Linux tree, the firmware's header and resource table, the channel info and a
simulated machine -- and a checker proves that such files agree.

Theory of operation.  :mod:`.domain` reads the YAML (three layouts, Lopper's ``<<+``
merge) into a :class:`~.model.DomainSpec`; :mod:`.fdt` reads the device tree (DTS through
the real ``dtc``, DTB, or ``/proc/device-tree``); :mod:`.system` joins the two into a
:class:`~.system.System`, one :class:`~.system.Channel` per remote core with every
address resolved.  :mod:`.generate` derives each output from that one value, each
number by one rule, so the outputs agree by construction.  :mod:`.check` starts from the
other end: it reads whatever files it is given, turns each into claims about each core,
and reports every claim that differs, naming the file to change.

Rules of this folder:

* it imports remoteproc (tables, ELF), platform (machine layouts) and the layers below;
  nothing imports it but the front ends (``openamp sdt``, ``openamp demo sdt``);
* every mistake in an input is a :class:`~.model.DescriptionError` naming the file,
  the line or node, and what was expected -- never a ``KeyError`` or ``struct.error``;
* it never hand-parses DTS text: ``dtc`` does, and we read its blob;
* importing it is cheap: PyYAML and pyelftools load only when a YAML or an ELF is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "Carveout": ".model",
    "DescriptionError": ".model",
    "DomainSpec": ".model",
    "DeviceTree": ".fdt",
    "load_tree": ".fdt",
    "load_domain": ".domain",
    "parse_domain": ".domain",
    "System": ".system",
    "resolve": ".system",
    "Outputs": ".generate",
    "generate": ".generate",
    "Report": ".check",
    "check_files": ".check",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .check import Report as Report, check_files as check_files
    from .domain import load_domain as load_domain, parse_domain as parse_domain
    from .fdt import DeviceTree as DeviceTree, load_tree as load_tree
    from .generate import Outputs as Outputs, generate as generate
    from .model import (
        Carveout as Carveout,
        DescriptionError as DescriptionError,
        DomainSpec as DomainSpec,
    )
    from .system import System as System, resolve as resolve
