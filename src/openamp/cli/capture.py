"""``openamp capture``: record a link (a run of a command, or a passive tap) and show it.

* ``openamp capture run FILE COMMAND [ARGS...]`` runs ``openamp COMMAND ARGS --capture
  FILE`` (any command that runs a link);
* ``openamp capture tap FILE --machine virtual --name NAME`` watches two *other*
  processes' link read-only and records what they publish (``openamp.tools.tap``);
* ``openamp capture show FILE`` prints a capture decoded (``--json`` for scripts);
* ``openamp capture dissector`` says where the Wireshark dissector is (``--install``
  copies it into Wireshark's personal plugin folder).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path

from ..errors import UsageError
from .commands import help_for
from .common import add_json_option, print_json

EPILOG = """\
examples:
  openamp capture run echo.pcapng demo echo       # = openamp demo echo --capture echo.pcapng
  openamp capture show echo.pcapng
  openamp capture show echo.pcapng --json         # one JSON object per line

  openamp echo --machine virtual --name vm1 &     # two processes to watch
  openamp capture tap tap.pcapng --machine virtual --name vm1 --for 30 &
  openamp ping --machine virtual --name vm1 --count 100 --shutdown

  openamp capture dissector                       # where it is; --install copies it for
                                                  # Wireshark: wireshark echo.pcapng
"""

TAP_EPILOG = """\
The tap maps the shared memory read-only (O_RDONLY, PROT_READ) and follows the ring
indices; it never writes, never kicks and is invisible to both sides.  It is a poller:
a message whose buffer was reused before the tap looked is counted as missed, never
made up.  It ends by itself when the link is gone (its memory removed or unmapped).

examples:
  openamp echo --machine virtual --name vm1 &
  openamp capture tap run.pcapng --machine virtual --name vm1 --for 30 &
  openamp ping --machine virtual --name vm1 --count 100 --shutdown

  openamp capture tap c-echo.jsonl --machine linux-generic --count 480 &
  openamp echo &                    # on the C names: or the C rpmsg-echo
  openamp ping --shutdown           # or the C ping
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp capture``."""
    p = sub.add_parser(
        "capture",
        help=help_for("capture"),
        description="Record what travels over a link, as pcapng for Wireshark (with our "
        "dissector) or JSON Lines, and print captures decoded.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    csub = p.add_subparsers(dest="capture_command", metavar="ACTION", required=True)

    run = csub.add_parser(
        "run",
        help="run an openamp command with --capture FILE",
        description="Run `openamp COMMAND ARGS... --capture FILE`.",
    )
    run.add_argument("file", metavar="FILE", help="capture file (.pcapng, or .jsonl)")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARGS...]")
    add_json_option(run)  # before COMMAND; passed on to the command as its own --json
    run.set_defaults(func=cmd_capture_run)

    tap = csub.add_parser(
        "tap",
        help="record two other processes' link from its shared memory, read-only",
        description="Follow the rings of a running link on the linux-generic or virtual "
        "machine and record every message as it is published, with a count of what may "
        "have been missed.",
        epilog=TAP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tap.add_argument("file", metavar="FILE", help="capture file (.pcapng, or .jsonl)")
    tap.add_argument(
        "--machine",
        choices=["linux-generic", "virtual"],
        default="linux-generic",
        help="whose memory: the C names (/dev/shm/openamp.shm) or a virtual machine",
    )
    tap.add_argument("--name", help="name of the virtual machine")
    tap.add_argument("--shm", metavar="PATH", help="any shared-memory file laid out the same way")
    tap.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="stop after")
    tap.add_argument("--count", type=int, default=0, help="stop after N messages (0: no limit)")
    tap.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the link to appear (%(default)s)",
    )
    tap.add_argument(
        "--app",
        choices=["echo", "matrix", "proxy", "rpc", "sample"],
        help="the protocol the demo channel speaks (default: echo)",
    )
    add_json_option(tap)
    tap.set_defaults(func=cmd_capture_tap)

    show = csub.add_parser(
        "show",
        help="print a capture decoded",
        description="Print every event of a capture file (pcapng or JSON Lines) decoded: "
        "messages with their rpmsg header and payload, name service, status, features, "
        "kicks, errors and missed counts; ends with a summary per link.",
    )
    show.add_argument("file", metavar="FILE")
    show.add_argument("--json", action="store_true", help="one JSON document for scripts")
    show.add_argument("--messages", action="store_true", help="messages only")
    show.add_argument("--link", type=int, help="only link N (pcapng interface N)")
    show.set_defaults(func=cmd_capture_show)

    dis = csub.add_parser(
        "dissector",
        help="where the Wireshark dissector is; --install copies it",
        description="Print the path of the Lua dissector shipped with pyopenamp; with "
        "--install copy it into Wireshark's personal Lua plugin folder.",
    )
    dis.add_argument(
        "--install",
        nargs="?",
        const="",
        metavar="DIR",
        help="copy it into DIR (default: ~/.local/lib/wireshark/plugins)",
    )
    add_json_option(dis)
    dis.set_defaults(func=cmd_capture_dissector)


def cmd_capture_run(args: argparse.Namespace) -> int:
    """``openamp capture run FILE COMMAND...``."""
    from . import main

    command = [c for c in args.command if c != "--"]
    if not command:
        raise UsageError("name the command to run, e.g. `openamp capture run x.pcapng demo echo`")
    extra = ["--json"] if args.json and "--json" not in command else []
    return main([*command, *extra, "--capture", args.file])


def cmd_capture_tap(args: argparse.Namespace) -> int:
    """``openamp capture tap FILE``."""
    from ..rpmsg.events import Event
    from ..tools.capture import open_capture
    from ..tools.decode import describe_event
    from ..tools.tap import Tap, shm_path_for

    path = args.shm or shm_path_for(args.machine, args.name)
    quiet = args.quiet or args.json
    recorded = 0
    try:
        with open_capture(args.file, app=args.app) as cap:
            hook = cap.link(f"tap {os.path.basename(path)}", f"passive tap of {path}")

            def record(event: Event) -> None:
                nonlocal recorded
                recorded += 1
                hook(event)
                if not quiet:
                    print(f"tap: {describe_event(event)}", flush=True)

            tap = Tap(path, record)
            print(f"tap: waiting for {path} ...", file=sys.stderr, flush=True)
            stats = tap.run(wait=args.wait, duration=args.duration, count=args.count)
    except BaseException:
        if not recorded:  # nothing seen: leave no empty capture behind
            with contextlib.suppress(OSError):
                os.unlink(args.file)
        raise
    if args.json:
        print_json(
            {
                "file": args.file,
                "shm": path,
                "messages": stats.messages,
                "host_to_remote": stats.h2r,
                "remote_to_host": stats.r2h,
                "missed": stats.missed,
                "stop_reason": stats.stop_reason,
            }
        )
        return 0
    print(
        f"tap: {stats.messages} messages recorded ({stats.h2r} host->remote, "
        f"{stats.r2h} remote->host), {stats.missed} may have been missed; "
        f"stopped: {stats.stop_reason}; written to {args.file}",
        flush=True,
    )
    return 0


def cmd_capture_show(args: argparse.Namespace) -> int:
    """``openamp capture show FILE``."""
    from ..rpmsg.events import MessageEvent, MissedEvent
    from ..tools.capture import event_to_json, read_capture
    from ..tools.decode import decode_payload, describe_event
    from ..tools.output import json_text, table

    data = read_capture(args.file)
    events = [
        ce
        for ce in data.events
        if (args.link is None or ce.link == args.link)
        and (not args.messages or isinstance(ce.event, MessageEvent))
    ]
    if args.json:
        out = []
        for ce in events:
            obj = {"t": ce.timestamp_ns, "link": ce.link} | event_to_json(ce.event)
            if isinstance(ce.event, MessageEvent):
                d = decode_payload(ce.event.payload, ce.app, dst=ce.event.dst, h2r=ce.h2r)
                obj |= {"app": d.protocol, "h2r": ce.h2r, "summary": d.summary}
                obj["fields"] = [[key, value] for key, value in d.fields]
            out.append(obj)
        print(
            json_text(
                {
                    "file": data.path,
                    "format": data.format,
                    "links": [{"name": n, "description": d} for n, d in data.links],
                    "events": out,
                    "skipped": data.skipped,
                }
            )
        )
        return 0
    t0 = events[0].timestamp_ns if events else 0
    for ce in events:
        name = data.links[ce.link][0] if ce.link < len(data.links) else str(ce.link)
        dt = (ce.timestamp_ns - t0) / 1e9
        print(f"{dt:12.6f}  {name}  {describe_event(ce.event, ce.app, ce.h2r)}")
    rows = [["link", "messages", "tx", "rx", "bytes", "missed", "errors"]]
    for i, (name, _desc) in enumerate(data.links):
        mine = [ce.event for ce in data.events if ce.link == i]
        msgs = [e for e in mine if isinstance(e, MessageEvent)]
        rows.append(
            [
                f"{i} {name}",
                str(len(msgs)),
                str(sum(e.direction == "tx" for e in msgs)),
                str(sum(e.direction == "rx" for e in msgs)),
                str(sum(e.length for e in msgs)),
                str(sum(e.missed for e in mine if isinstance(e, MissedEvent))),
                str(sum(e.kind == "error" for e in mine)),
            ]
        )
    print()
    print(table(rows, align="<>>>>>>"))
    if data.skipped:
        print(f"{data.skipped} packets were not pyopenamp records and were skipped")
    return 0


def cmd_capture_dissector(args: argparse.Namespace) -> int:
    """``openamp capture dissector [--install [DIR]]``."""
    from ..tools.capture import dissector_path

    src = dissector_path()
    if args.install is None:
        if args.json:
            print_json({"dissector": str(src)})
        else:
            print(src)
        return 0
    target = Path(args.install or Path.home() / ".local/lib/wireshark/plugins")
    target.mkdir(parents=True, exist_ok=True)
    dest = target / src.name
    shutil.copyfile(src, dest)
    if args.json:
        print_json({"dissector": str(src), "installed": str(dest)})
    else:
        print(f"installed {dest}; Wireshark loads it at its next start (tshark: at once)")
    return 0
