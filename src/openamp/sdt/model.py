"""What a system description says, once read: carveouts, channels, and the error type.

The readers (:mod:`.domain` for the YAML, :mod:`.system` for the device tree) produce
these values; the generators and the checker consume them.  Nothing here reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError

__all__ = ["Carveout", "ChannelSpec", "DescriptionError", "DomainSpec", "Located"]


class DescriptionError(UsageError):
    """A description file is wrong: it names the file, where in it, and what was expected.

    ``file`` is the path, ``where`` a line (``12`` or ``12:5``) or a node path in a
    device tree, or None when the whole file is meant.
    """

    def __init__(self, message: str, *, file: str | None = None, where: str | None = None) -> None:
        self.file = file
        self.where = where
        self.reason = message
        if file and where and where[0].isdigit():
            prefix = f"{file}:{where}: "
        elif file and where:
            prefix = f"{file}: {where}: "
        elif file:
            prefix = f"{file}: "
        elif where:
            prefix = f"{where}: "
        else:
            prefix = ""
        super().__init__(prefix + message)


@dataclass(frozen=True)
class Located:
    """Where a value was written: file and line (1-based), for messages."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return (
            f"{self.file}:{self.line}:{self.column}" if self.column else f"{self.file}:{self.line}"
        )

    def error(self, message: str) -> DescriptionError:
        """A :class:`DescriptionError` pointing here."""
        where = None
        if self.line:
            where = f"{self.line}:{self.column}" if self.column else str(self.line)
        return DescriptionError(message, file=self.file, where=where)


@dataclass(frozen=True)
class Carveout:
    """A reserved region of memory the description names (``rpu0vdev0vring0``...)."""

    name: str
    """The description's name for it: the definitions key (2022 layout) or the
    ``reserved-memory`` node's label (2025 layout)."""
    start: int
    size: int
    no_map: bool = True
    at: Located = field(default=Located("?"), compare=False)
    node_name: str | None = None
    """The node name the 2025 layout gives it (``vdev0vring0@9860000``), else None."""

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.start + self.size

    def overlaps(self, other: Carveout) -> bool:
        """Whether the two regions share a byte."""
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class ChannelSpec:
    """One host -> remote relation as the YAML states it (names not yet resolved)."""

    index: int
    """Position among the host's remotes (channel number in the outputs)."""
    host: str
    remote: str
    remote_cluster: str
    remote_cpumask: int
    lockstep: bool
    elfload: tuple[str, ...]
    """Names in the remoteproc relation's ``elfload``: carveouts and TCM banks."""
    rpmsg: tuple[str, ...]
    """The rpmsg relation's carveouts (vring0, vring1, buffer), empty without rpmsg."""
    host_mbox: str | None
    remote_mbox: str | None
    native: bool
    at: Located = field(compare=False)
    host_mbox_at: Located | None = field(default=None, compare=False)
    remote_mbox_at: Located | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DomainSpec:
    """A domain YAML, read: its carveouts, channels and layout."""

    file: str
    layout: str
    """``"2022"`` (definitions with anchors, ``remoteproc-v1``), ``"2024"`` (lists per
    remote, ``remoteproc-v2``) or ``"2025"`` (top-level ``reserved-memory`` and
    ``relationN`` children)."""
    carveouts: dict[str, Carveout]
    channels: tuple[ChannelSpec, ...]
    host: str
    host_cluster: str
    host_cpumask: int

    def carveout(self, name: str) -> Carveout | None:
        """The carveout called ``name`` (by name, label or node name)."""
        found = self.carveouts.get(name)
        if found is not None:
            return found
        for c in self.carveouts.values():
            if c.node_name == name:
                return c
        return None
