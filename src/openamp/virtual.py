"""The simulated machine, as the design names it: ``openamp.virtual.Machine``.

* :class:`Machine` — boots firmware as processes on this PC through a
  :class:`~openamp.remoteproc.RemoteProc` (the process driver);
* :class:`VirtualMachine` — one side of a two-process rpmsg link under a unique name;
* :class:`InProcessPair` — both sides in one process, deterministic.

Example::

    import openamp.virtual

    with openamp.virtual.Machine() as machine:
        rproc = machine.remoteproc(firmware="echo")
        rproc.start()
        ept = rproc.rpmsg.endpoint("rpmsg-openamp-demo-channel", timeout=2.0)
        ept.send(b"hello")
        assert ept.recv(timeout=1.0) == b"hello"
"""

from .platform.inprocess import InProcessPair
from .platform.process import ProcessMachine
from .platform.virtual import VirtualMachine

Machine = ProcessMachine
"""The simulated machine of the design: boots firmware as processes on this PC
(:class:`~openamp.platform.process.ProcessMachine`)."""

__all__ = ["InProcessPair", "Machine", "VirtualMachine"]
