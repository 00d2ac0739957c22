"""``openamp monitor``: a live view of a running link, read-only (like python-can's viewer).

Endpoints with their message and byte counters, the rate, what the tap may have missed
and the fill level of each ring, redrawn every ``--interval`` seconds.  The view is a
passive tap (:mod:`openamp.tools.tap`): it never writes to the link.
"""

from __future__ import annotations

import argparse
import sys

from .commands import help_for
from .inspect import add_link_options

EPILOG = """\
examples:
  openamp echo --machine virtual --name vm1 &
  openamp monitor --machine virtual --name vm1 --for 3 --json &
  openamp ping --machine virtual --name vm1 --count 1000 --shutdown

  openamp rproc run echo --name vm2 --for 5 &
  openamp monitor --machine virtual --name vm2             # Ctrl-C to quit

  openamp echo &                                           # the C names: or rpmsg-echo
  openamp ping --count 100000 --shutdown &                 # or the C ping
  openamp monitor --machine linux-generic --interval 0.5 --for 2   # the C demos' link
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp monitor``."""
    p = sub.add_parser(
        "monitor",
        help=help_for("monitor"),
        description="Watch a running link: endpoints (named from the name service), "
        "message and byte counters, rates, ring fill levels; redrawn in the terminal.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_link_options(p)
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="redraw")
    p.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="stop after")
    p.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the link to come up (%(default)s)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the final counters as JSON (no live view)"
    )
    p.set_defaults(func=cmd_monitor)


def cmd_monitor(args: argparse.Namespace) -> int:
    """``openamp monitor``."""
    from ..tools.monitor import LinkMonitor
    from ..tools.output import json_text
    from ..tools.tap import Tap
    from .inspect import link_paths

    path, _event = link_paths(args)
    view = LinkMonitor(title=path)
    live = not args.json and sys.stdout.isatty()

    def tick(tap: Tap) -> bool:
        view.levels = tap.ring_levels()
        view.update_rates()
        if live:
            sys.stdout.write("\x1b[H\x1b[2J" + view.render())
            sys.stdout.flush()
        return True

    tap = Tap(path, view)
    print(f"monitor: waiting for {path} ...", file=sys.stderr, flush=True)
    try:
        stats = tap.run(
            wait=args.wait, duration=args.duration, tick=tick, tick_interval=args.interval
        )
    except KeyboardInterrupt:
        stats = tap.stats
        stats.stop_reason = "interrupted"
    if args.json:
        print(json_text(view.snapshot() | {"stopped": stats.stop_reason}))
    else:
        print(view.render() + f"stopped: {stats.stop_reason}")
    return 0
