"""``openamp doctor``: walk a link's bring-up and say what is broken and what to do.

On a shared-memory machine (``--machine virtual --name NAME``, or the linux-generic
one) the walk is :func:`openamp.tools.doctor.doctor_link`; on a board (``--board``)
:func:`openamp.tools.board.doctor_board`.  Exit status 0 when every step holds, 1 at
the first broken one.
"""

from __future__ import annotations

import argparse

from .commands import help_for
from .inspect import add_board_roots, add_link_options, board_roots, link_paths

EPILOG = """\
examples:
  openamp rproc run echo --name vm1 --for 10 &          # a host and its remote, for 10 s
  openamp send --machine virtual --name vm1 rpmsg-openamp-demo-channel hello --reply
  openamp doctor --machine virtual --name vm1 --service rpmsg-openamp-demo-channel
  openamp doctor --json --machine virtual --name vm1

  openamp echo &                                        # the C names: or the C rpmsg-echo
  openamp ping --count 100000 --shutdown &              # or the C ping
  openamp doctor --machine linux-generic --buffer-size 512  # the size both were built with

  openamp doctor --board --service rpmsg-client-sample
exit status: 0 when every step holds, 1 at the first broken one.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp doctor``."""
    p = sub.add_parser(
        "doctor",
        help=help_for("doctor"),
        description="Check a link step by step -- shared memory, resource table, vdev "
        "status, features, vrings, buffers, doorbell, processes, name service, endpoint; "
        "on a board: remoteproc state, firmware, rpmsg channels, driver binding, /dev "
        "nodes -- and stop at the first broken step with what to do.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_link_options(p)
    p.add_argument("--service", metavar="NAME", help="the service the host wants")
    p.add_argument(
        "--buffer-size",
        type=int,
        default=512,
        metavar="BYTES",
        help="the buffer size the sides were started with (%(default)s)",
    )
    p.add_argument("--rproc", metavar="NAME", help="board: which remote processor")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_board_roots(p)
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    """``openamp doctor``."""
    from ..tools.output import json_text

    if args.board:
        from ..tools.board import doctor_board, render_steps

        steps = doctor_board(board_roots(args), rproc=args.rproc, service=args.service)
    else:
        from ..tools.doctor import doctor_link, render_steps
        from .common import layout_for

        shm, event = link_paths(args)
        where = (
            f"--machine virtual --name {args.name}" if args.machine == "virtual" else ""
        ).strip()
        size = f" --buffer-size {args.buffer_size}" if args.buffer_size != 512 else ""
        steps = doctor_link(
            shm,
            event,
            layout=layout_for(args.buffer_size),
            buffer_size=args.buffer_size,
            service=args.service,
            server_hint=f"`openamp echo {where}{size}`".replace("  ", " "),
            client_hint=f"`openamp ping {where}{size}`".replace("  ", " "),
        )
    ok = all(s.ok for s in steps)
    if args.json:
        print(json_text({"ok": ok, "steps": [s.to_json() for s in steps]}))
    else:
        print(render_steps(steps), end="")
    return 0 if ok else 1
