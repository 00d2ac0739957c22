"""What ``openamp send``, ``listen`` and ``console`` share: the options that name a
running virtual machine, and the connection to its relay (:mod:`openamp.tools.relay`)."""

from __future__ import annotations

import argparse

from .values import seconds

EPILOG = """\
examples (the first two in terminals of their own):
  openamp rproc run echo --name lab &            # boots the firmware and keeps it up
  openamp listen --machine virtual --name lab rpmsg-openamp-demo-channel --count 1 &
  openamp send --machine virtual --name lab rpmsg-openamp-demo-channel hello --reply
  openamp console --machine virtual --name lab --for 1   # its console and trace

SERVICE is a name the firmware announced (`openamp rproc run` prints them).  send,
listen and console talk to the `openamp rproc run --name NAME` process, which relays
(/tmp/NAME.ctl); a message the firmware sends goes to every listen on its service.
"""


def add_machine_name(p: argparse.ArgumentParser) -> None:
    """``--machine virtual --name NAME``: which running virtual machine."""
    g = p.add_argument_group("machine")
    g.add_argument(
        "--machine",
        choices=["virtual"],
        default="virtual",
        help="the kind of machine: a virtual machine `openamp rproc run --name` keeps up",
    )
    g.add_argument("--name", required=True, help="its name, as given to `openamp rproc run --name`")
    g.add_argument(
        "--timeout",
        type=seconds,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for the relay and for a reply (%(default)s)",
    )
