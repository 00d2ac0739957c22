"""``openamp echo``: the C ``rpmsg-echo`` remote (virtio device, socket server)."""

from __future__ import annotations

import argparse

from .commands import help_for
from .common import add_json_option, add_machine_options, connected, print_json, status_printer
from .values import limit

EPILOG_ECHO = """\
examples:
  openamp echo --machine virtual --name vm1 &    # and in another shell:
  openamp ping --machine virtual --name vm1

  openamp echo --machine virtual --name vm2 --count 5 --json &
  openamp ping --machine virtual --name vm2 --count 5 -q

Without --machine it uses the C names (/dev/shm/openamp.shm, /tmp/openamp.event.0)
and pairs with the C msg-test-rpmsg-ping.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp echo``."""
    p = sub.add_parser(
        "echo",
        help=help_for("echo"),
        description="Announce rpmsg-openamp-demo-channel and send every message back. "
        "Stops on the shutdown message (0xEF56A55A), on the host's NS destroy, when the "
        "host disconnects, or after --count messages.",
        epilog=EPILOG_ECHO,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_machine_options(p, role="device")
    p.add_argument(
        "--count", type=limit, default=0, metavar="N", help="stop after N echoes (0: no limit)"
    )
    p.add_argument(
        "--size",
        type=limit,
        default=0,
        metavar="BYTES",
        help="largest payload to echo; longer ones are reported and not echoed (0: any)",
    )
    add_json_option(p)
    p.add_argument(
        "--sink",
        action="store_true",
        help="count messages instead of echoing them (the remote of `openamp bench bulk`)",
    )
    p.set_defaults(func=cmd_echo)


def cmd_echo(args: argparse.Namespace) -> int:
    """``openamp echo``."""
    from ..services.echo import ECHO_SERVICE, EchoService, SinkService

    say = status_printer(args)
    with connected(args, "echo", say) as rpmsg:
        service: EchoService | SinkService
        if args.sink:
            service = SinkService(rpmsg)
        else:
            service = EchoService(rpmsg, count=args.count, max_size=args.size)
        say(f"echo: serving {ECHO_SERVICE!r} at {service.endpoint.addr:#x}")
        stats = service.run()
    if args.json:
        print_json(
            {
                "messages": stats.messages,
                "bytes": stats.bytes,
                "rejected": stats.rejected,
                "stop_reason": stats.stop_reason,
            }
        )
        return 0
    rejected = f", {stats.rejected} too long" if stats.rejected else ""
    print(
        f"echo: {stats.messages} messages ({stats.bytes} bytes) echoed{rejected}; stopped: "
        f"{stats.stop_reason}",
        flush=True,
    )
    return 0
