"""``openamp rpmsg``: RPMsg on a real board through the kernel (:mod:`openamp.linux`).

What the C rpmsg-utils do, with readable output and ``--json``:

* ``ls`` — channels, control devices, endpoint devices and ttys, found in sysfs;
* ``ept create|destroy`` — ``rpmsg_export_ept`` / ``rpmsg_destroy_ept``;
* ``channel create|release`` — ``rpmsg_export_dev`` (``-d``);
* ``bind``/``unbind`` — a channel to/from ``rpmsg_chrdev`` (``driver_override``);
* ``ping``, ``send``, ``listen`` — ``rpmsg_ping`` and friends, on an endpoint device, a
  channel (by service name) or an rpmsg tty.

Every command takes ``--sysfs ROOT`` and ``--dev ROOT`` so it can be tried on a
directory tree laid out like the kernel's.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OpenAMPTimeoutError, UsageError
from ..linux.remoteproc import DeviceNotFoundError, EndpointGoneError
from ..linux.rpmsg import (
    RPMSG_ADDR_ANY,
    Channel,
    RpmsgCtrl,
    RpmsgEndpoint,
    bind_channel,
    describe_channels,
    describe_endpoint_devices,
    find_channel,
    find_ctrl,
    format_addr,
    list_channels,
    list_ctrls,
    list_endpoint_devices,
    list_ttys,
    open_channel,
    open_endpoint,
    unbind_channel,
)
from ..linux.tty import TtyStream, tty_index
from ..tools.output import json_text, payload_text, table
from .commands import help_for
from .values import count, limit, positive_seconds, seconds

EPILOG = """\
examples (on a board, as root):
  openamp rpmsg ls
  openamp rpmsg ping rpmsg-openamp-demo-channel --count 5
  openamp rpmsg ept create my-ept --src 1024 --dst 0x400   # rpmsg_export_ept
  openamp rpmsg send /dev/rpmsg1 hello "second message"
  openamp rpmsg listen /dev/rpmsg1 --count 10
  openamp rpmsg ept destroy /dev/rpmsg1                   # rpmsg_destroy_ept
  openamp rpmsg channel create rpmsg-raw --src 1026 --dst 0x401   # rpmsg_export_dev
  openamp rpmsg bind my-service                           # rpmsg_chrdev via driver_override
TARGET is an endpoint device (/dev/rpmsg1, rpmsg1), an rpmsg tty (/dev/ttyRPMSG0,
ttyRPMSG0), or a channel's service name: its own endpoint device if it has one, its tty,
or else a temporary endpoint made through the control device and destroyed at the end.
Addresses are numbers (1024, 0x400) or -1/any for RPMSG_ADDR_ANY.
"""


def parse_addr_arg(text: str) -> int:
    """An address on the command line: ``1024``, ``0x400``, ``-1`` or ``any``."""
    t = text.strip().lower()
    if t in ("-1", "any"):
        return RPMSG_ADDR_ANY
    try:
        value = int(t, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address: {text!r}") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"address out of range: {text!r}")
    return value


def _options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the kernel's files are")
    g.add_argument("--sysfs", default="/sys", metavar="ROOT", help="sysfs root (%(default)s)")
    g.add_argument("--dev", default="/dev", metavar="ROOT", help="device root (%(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _target_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET")
    p.add_argument(
        "--src",
        type=parse_addr_arg,
        default=RPMSG_ADDR_ANY,
        help="local address of a temporary endpoint (default: any)",
    )
    p.add_argument("--dst", type=parse_addr_arg, help="remote address (default: the channel's)")
    p.add_argument("--ctrl", metavar="DEV", help="control device (default: the channel's)")
    p.add_argument(
        "--bind",
        action="store_true",
        help="bind the channel to rpmsg_chrdev and use its own endpoint device",
    )
    p.add_argument("--timeout", type=seconds, default=2.0, metavar="SECONDS")


def _sub(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str, desc: str
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help=help_,
        description=desc,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _options(p)
    return p


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``openamp rpmsg``."""
    p = sub.add_parser(
        "rpmsg",
        help=help_for("rpmsg"),
        description="RPMsg through the Linux kernel: what the C rpmsg-utils do.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rsub = p.add_subparsers(dest="rpmsg_command", metavar="ACTION", required=True)

    ls = _sub(
        rsub,
        "ls",
        "list channels, control and endpoint devices, ttys",
        "Everything rpmsg in sysfs: the channels the remotes announced (name, addresses, "
        "driver), the control devices, the endpoint devices with their /dev nodes, and the "
        "rpmsg ttys.",
    )
    ls.add_argument("--all", action="store_true", help="also the kernel's rpmsg_ns/rpmsg_ctrl")
    ls.set_defaults(func=cmd_rpmsg_ls)

    ept = rsub.add_parser("ept", help="create or destroy endpoint devices (/dev/rpmsgN)")
    esub = ept.add_subparsers(dest="ept_command", metavar="ACTION", required=True)
    p = _sub(
        esub,
        "create",
        "make /dev/rpmsgN (rpmsg_export_ept)",
        "RPMSG_CREATE_EPT_IOCTL on a control device. Without --dst, NAME must be a channel "
        "and its address is used. The device stays until destroyed.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--src", type=parse_addr_arg, default=RPMSG_ADDR_ANY)
    p.add_argument("--dst", type=parse_addr_arg)
    p.add_argument("--ctrl", metavar="DEV", help="control device (default: the channel's)")
    p.add_argument("--timeout", type=seconds, default=2.0, metavar="SECONDS")
    p.set_defaults(func=cmd_rpmsg_ept_create)
    p = _sub(
        esub,
        "destroy",
        "remove /dev/rpmsgN (rpmsg_destroy_ept)",
        "RPMSG_DESTROY_EPT_IOCTL on each endpoint device (a path, rpmsgN, or the name of "
        "endpoints made through a control device).",
    )
    p.add_argument("targets", metavar="DEV", nargs="+")
    p.set_defaults(func=cmd_rpmsg_ept_destroy)

    ch = rsub.add_parser("channel", help="create or release channels (rpmsg_export_dev)")
    csub = ch.add_subparsers(dest="channel_command", metavar="ACTION", required=True)
    for name, func, what in (
        ("create", cmd_rpmsg_channel_create, "RPMSG_CREATE_DEV_IOCTL: a new channel"),
        ("release", cmd_rpmsg_channel_release, "RPMSG_RELEASE_DEV_IOCTL: remove a channel"),
    ):
        p = _sub(csub, name, what, what + " (kernel v5.19+).")
        p.add_argument("name", metavar="NAME")
        p.add_argument("--src", type=parse_addr_arg, default=RPMSG_ADDR_ANY)
        p.add_argument("--dst", type=parse_addr_arg, default=RPMSG_ADDR_ANY)
        p.add_argument("--ctrl", metavar="DEV", help="control device (default: the only one)")
        p.set_defaults(func=func)

    p = _sub(
        rsub,
        "bind",
        "bind a channel to rpmsg_chrdev",
        "Write the driver into the channel's driver_override, then the channel into "
        "/sys/bus/rpmsg/drivers/DRIVER/bind, as the OpenAMP examples do.",
    )
    p.add_argument("channel", metavar="CHANNEL")
    p.add_argument("--driver", default="rpmsg_chrdev")
    p.add_argument("--rebind", action="store_true", help="unbind another driver first")
    p.set_defaults(func=cmd_rpmsg_bind)
    p = _sub(
        rsub, "unbind", "unbind a channel from its driver", "Unbind and clear driver_override."
    )
    p.add_argument("channel", metavar="CHANNEL")
    p.set_defaults(func=cmd_rpmsg_unbind)

    p = _sub(
        rsub,
        "ping",
        "send messages and wait for the replies (rpmsg_ping)",
        "Send COUNT messages, one at a time, and wait for each reply. Exit status 1 if a "
        "reply is missing (or, with --echo, differs).",
    )
    _target_options(p)
    p.add_argument("--count", type=count, default=1, metavar="N", help="messages (%(default)s)")
    p.add_argument("--message", help="payload text (default: 'ping N')")
    p.add_argument(
        "--size", type=limit, metavar="BYTES", help="payload of BYTES bytes of 0xA5 instead"
    )
    p.add_argument("--echo", action="store_true", help="require replies equal to the message")
    p.set_defaults(func=cmd_rpmsg_ping)

    p = _sub(
        rsub,
        "send",
        "send messages",
        "Send each DATA argument as one message ('-' reads one message from stdin).",
    )
    _target_options(p)
    p.add_argument("data", metavar="DATA", nargs="+")
    p.add_argument("--hex", action="store_true", help="DATA is hex (e.g. 'de ad be ef')")
    p.set_defaults(func=cmd_rpmsg_send)

    p = _sub(
        rsub,
        "listen",
        "print the messages that arrive",
        "Print each message (text, or hex when not printable) until --count messages, "
        "--for SECONDS, or Ctrl-C.",
    )
    _target_options(p)
    p.add_argument(
        "--count", type=limit, default=0, metavar="N", help="stop after N messages (0: no limit)"
    )
    p.add_argument("--for", dest="duration", type=positive_seconds, metavar="SECONDS")
    p.add_argument("--hex", action="store_true", help="always print hex")
    p.set_defaults(func=cmd_rpmsg_listen)


# -- ls -----------------------------------------------------------------------------------


def _print_json(value: object) -> None:
    print(json_text(value))


def _table(rows: list[list[str]]) -> str:
    return table(rows, indent="  ")


def cmd_rpmsg_ls(args: argparse.Namespace) -> int:
    """``openamp rpmsg ls``."""
    channels = list_channels(sysfs=args.sysfs, include_internal=args.all)
    ctrls = list_ctrls(sysfs=args.sysfs, dev=args.dev)
    eps = list_endpoint_devices(sysfs=args.sysfs, dev=args.dev)
    ttys = list_ttys(sysfs=args.sysfs, dev=args.dev)
    if args.json:
        _print_json(
            {
                "channels": [c.to_json() for c in channels],
                "ctrls": [c.to_json() for c in ctrls],
                "endpoints": [e.to_json() for e in eps],
                "ttys": [t.to_json() for t in ttys],
            }
        )
        return 0
    print(f"channels ({Path(args.sysfs) / 'bus/rpmsg/devices'})")
    if channels:
        rows = [["NAME", "SRC", "DST", "DRIVER", "DEVICE", "REMOTEPROC"]]
        for c in channels:
            nodes = [str(Path(args.dev) / e) for e in c.endpoints] + [
                str(Path(args.dev) / t) for t in c.ttys
            ]
            rows.append(
                [
                    c.name,
                    format_addr(c.src),
                    format_addr(c.dst),
                    c.driver or "-",
                    ", ".join(nodes) or "-",
                    c.remoteproc or "-",
                ]
            )
        print(_table(rows))
    else:
        print(f"  none: {describe_channels([])}")
    print("control devices")
    if ctrls:
        print(_table([[str(c.node), c.parent or "-", c.remoteproc or "-"] for c in ctrls]))
    else:
        print("  none")
    print("endpoint devices")
    if eps:
        rows = [["NODE", "NAME", "SRC", "DST", "MADE BY"]]
        for e in eps:
            made = f"ctrl {e.ctrl}" if e.ctrl else f"channel {e.channel}" if e.channel else "-"
            rows.append([str(e.node), e.name, format_addr(e.src), format_addr(e.dst), made])
        print(_table(rows))
    else:
        print("  none")
    print("ttys")
    if ttys:
        print(
            _table(
                [
                    [
                        str(t.node),
                        t.name or "-",
                        format_addr(t.src) if t.src is not None else "-",
                        format_addr(t.dst) if t.dst is not None else "-",
                    ]
                    for t in ttys
                ]
            )
        )
    else:
        print("  none")
    return 0


# -- ept, channel, bind -------------------------------------------------------------------


def _ctrl_path(args: argparse.Namespace, channel: Channel | None) -> Path:
    if args.ctrl:
        return Path(args.ctrl) if "/" in args.ctrl else Path(args.dev) / args.ctrl
    found = find_ctrl(channel, sysfs=args.sysfs, dev=args.dev)
    if found is None:
        have = ", ".join(str(c.node) for c in list_ctrls(sysfs=args.sysfs, dev=args.dev))
        raise DeviceNotFoundError(
            f"no control device to use (control devices: {have or 'none'}); pass --ctrl"
        )
    return found.node


def cmd_rpmsg_ept_create(args: argparse.Namespace) -> int:
    """``openamp rpmsg ept create NAME``."""
    channel = None
    dst = args.dst
    if dst is None:
        channel = find_channel(args.name, sysfs=args.sysfs)
        dst = channel.dst
    with RpmsgCtrl(_ctrl_path(args, channel), sysfs=args.sysfs, dev=args.dev) as ctrl:
        ep = ctrl.create_endpoint(args.name, args.src, dst, timeout=args.timeout)
    if args.json:
        _print_json(ep.to_json())
    else:
        print(f"{ep.node}: {ep.name!r} {format_addr(ep.src)} -> {format_addr(ep.dst)}")
    return 0


def cmd_rpmsg_ept_destroy(args: argparse.Namespace) -> int:
    """``openamp rpmsg ept destroy DEV...``."""
    eps = list_endpoint_devices(sysfs=args.sysfs, dev=args.dev)
    nodes: list[Path] = []
    for t in args.targets:
        if "/" in t:
            nodes.append(Path(t))
            continue
        by_dev = [e.node for e in eps if e.device == t]
        by_name = [e.node for e in eps if e.name == t and e.ctrl]
        if not by_dev + by_name:
            raise DeviceNotFoundError(f"no endpoint device {t!r}: {describe_endpoint_devices(eps)}")
        nodes += by_dev or by_name
    done = []
    for node in nodes:
        RpmsgEndpoint(node, sysfs=args.sysfs, dev=args.dev).destroy()
        done.append(str(node))
        if not args.json:
            print(f"{node}: destroyed")
    if args.json:
        _print_json({"destroyed": done})
    return 0


def _channel_cmd(args: argparse.Namespace, release: bool) -> int:
    with RpmsgCtrl(_ctrl_path(args, None), sysfs=args.sysfs, dev=args.dev) as ctrl:
        if release:
            ctrl.release_channel(args.name, args.src, args.dst)
        else:
            ctrl.create_channel(args.name, args.src, args.dst)
    what = "released" if release else "created"
    if args.json:
        _print_json({"channel": args.name, "src": args.src, "dst": args.dst, what: True})
    else:
        print(f"channel {args.name!r} {format_addr(args.src)} -> {format_addr(args.dst)}: {what}")
    return 0


def cmd_rpmsg_channel_create(args: argparse.Namespace) -> int:
    """``openamp rpmsg channel create NAME``."""
    return _channel_cmd(args, release=False)


def cmd_rpmsg_channel_release(args: argparse.Namespace) -> int:
    """``openamp rpmsg channel release NAME``."""
    return _channel_cmd(args, release=True)


def cmd_rpmsg_bind(args: argparse.Namespace) -> int:
    """``openamp rpmsg bind CHANNEL``."""
    ch = bind_channel(args.channel, args.driver, sysfs=args.sysfs, rebind=args.rebind)
    if args.json:
        _print_json(ch.to_json())
    else:
        print(f"{ch.device}: driver_override {ch.driver_override}, driver {ch.driver or '-'}")
    return 0


def cmd_rpmsg_unbind(args: argparse.Namespace) -> int:
    """``openamp rpmsg unbind CHANNEL``."""
    ch = unbind_channel(args.channel, sysfs=args.sysfs)
    if args.json:
        _print_json(ch.to_json())
    else:
        print(f"{ch.device}: driver {ch.driver or '-'}")
    return 0


# -- talking ------------------------------------------------------------------------------


@dataclass
class Link:
    """What ``ping``/``send``/``listen`` talk through: an endpoint device or a tty."""

    ep: RpmsgEndpoint | None
    tty: TtyStream | None
    description: str

    def send(self, data: bytes, timeout: float) -> None:
        if self.ep is not None:
            self.ep.send(data, timeout=timeout)
        elif self.tty is not None:
            self.tty.write(data, timeout=timeout)

    def recv(self, timeout: float | None, size: int | None = None) -> bytes:
        if self.ep is not None:
            return self.ep.recv(timeout=timeout)
        assert self.tty is not None
        try:
            if size is not None:
                data = self.tty.read_exactly(size, timeout=timeout)
            else:
                data = self.tty.read(timeout=timeout)
        except EOFError:
            data = b""
        if not data:  # end of file: the tty was hung up (a tty read never returns b"" else)
            raise EndpointGoneError(
                f"{self.description} was hung up: the remote destroyed its channel, or the "
                "processor stopped or crashed",
                errno=errno.EIO,
                path=str(self.tty.path),
                action="tty:read",
            )
        return data


@contextlib.contextmanager
def open_target(args: argparse.Namespace) -> Iterator[Link]:
    """Open TARGET (see the epilog); a temporary endpoint is destroyed on exit."""
    t: str = args.target
    sysfs, dev = args.sysfs, args.dev
    if tty_index(t) is not None:
        with TtyStream(t if "/" in t else Path(dev) / t) as tty:
            yield Link(None, tty, str(tty.path))
        return
    if "/" in t or (t.startswith("rpmsg") and t[5:].isdigit()):
        with RpmsgEndpoint(t, sysfs=sysfs, dev=dev) as ep:
            yield Link(ep, None, str(ep.path))
        return
    try:
        channel = find_channel(t, sysfs=sysfs, dst=args.dst)
    except DeviceNotFoundError:
        if args.dst is None:
            eps = list_endpoint_devices(sysfs=sysfs, dev=dev)
            raise DeviceNotFoundError(
                f"no endpoint device, tty or channel {t!r}: "
                f"{describe_channels(list_channels(sysfs=sysfs))}; "
                f"{describe_endpoint_devices(eps)}"
            ) from None
        channel = None
    if channel is not None and (channel.endpoints or args.bind):
        with open_channel(channel.device, sysfs=sysfs, dev=dev, timeout=args.timeout) as ep:
            yield Link(ep, None, f"{ep.path} (channel {channel.name})")
        return
    if channel is not None and channel.ttys:
        with TtyStream(Path(dev) / channel.ttys[0]) as tty:
            yield Link(None, tty, f"{tty.path} (channel {channel.name})")
        return
    dst = args.dst if args.dst is not None else channel.dst if channel else RPMSG_ADDR_ANY
    with open_endpoint(
        channel.name if channel else t,
        args.src,
        dst,
        ctrl=args.ctrl,
        sysfs=sysfs,
        dev=dev,
        timeout=args.timeout,
    ) as ep:
        yield Link(ep, None, f"{ep.path} (temporary, {format_addr(dst)})")


def cmd_rpmsg_ping(args: argparse.Namespace) -> int:
    """``openamp rpmsg ping TARGET``."""
    results: list[dict[str, Any]] = []
    with open_target(args) as link:
        if not args.json:
            print(f"ping {link.description}")
        for n in range(1, args.count + 1):
            if args.size is not None:
                payload = bytes([0xA5]) * args.size
            else:
                payload = (args.message or f"ping {n}").encode()
            t0 = time.perf_counter()
            link.send(payload, timeout=args.timeout)
            try:
                expect = len(payload) if link.tty is not None else None
                reply = link.recv(timeout=args.timeout, size=expect)
            except OpenAMPTimeoutError:
                results.append({"seq": n, "sent": len(payload), "reply": None})
                if not args.json:
                    print(f"  {n}: no reply within {args.timeout} s")
                continue
            rtt = time.perf_counter() - t0
            same = reply == payload
            results.append(
                {
                    "seq": n,
                    "sent": len(payload),
                    "reply": len(reply),
                    "echo": same,
                    "rtt_us": round(rtt * 1e6, 1),
                    "data": reply.hex(),
                }
            )
            if not args.json:
                mark = "" if same else " (differs from the message)"
                print(
                    f"  {n}: {len(reply)} bytes in {rtt * 1e3:.3f} ms: {payload_text(reply)}{mark}"
                )
    replies = [r for r in results if r["reply"] is not None]
    ok = len(replies) == len(results) and (not args.echo or all(r["echo"] for r in replies))
    rtts = [r["rtt_us"] for r in replies]
    summary = {
        "target": args.target,
        "sent": len(results),
        "replies": len(replies),
        "echoed": sum(1 for r in replies if r["echo"]),
        "median_rtt_us": statistics.median(rtts) if rtts else None,
        "ok": ok,
        "results": results,
    }
    if args.json:
        _print_json(summary)
    else:
        med = f", median {summary['median_rtt_us'] / 1e3:.3f} ms" if rtts else ""
        print(
            f"{summary['sent']} sent, {summary['replies']} replies, "
            f"{summary['echoed']} identical{med}"
        )
    return 0 if ok else 1


def _payloads(args: argparse.Namespace) -> list[bytes]:
    out = []
    for d in args.data:
        if d == "-":
            out.append(sys.stdin.buffer.read())
        elif args.hex:
            try:
                out.append(bytes.fromhex(d))
            except ValueError:
                raise UsageError(f"not hex: {d!r}") from None
        else:
            out.append(d.encode())
    return out


def cmd_rpmsg_send(args: argparse.Namespace) -> int:
    """``openamp rpmsg send TARGET DATA...``."""
    payloads = _payloads(args)
    with open_target(args) as link:
        for p in payloads:
            link.send(p, timeout=args.timeout)
        where = link.description
    if args.json:
        _print_json({"target": where, "sent": [len(p) for p in payloads]})
    else:
        print(f"{where}: sent {len(payloads)} message(s), {sum(map(len, payloads))} bytes")
    return 0


def cmd_rpmsg_listen(args: argparse.Namespace) -> int:
    """``openamp rpmsg listen TARGET``."""
    count = 0
    with open_target(args) as link:
        if not args.json:
            print(f"listening on {link.description}", flush=True)
        start = time.monotonic()
        deadline = None if args.duration is None else start + args.duration
        while not args.count or count < args.count:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                data = link.recv(timeout=remaining)
            except OpenAMPTimeoutError:
                break
            count += 1
            t = time.monotonic() - start
            if args.json:
                print(
                    json.dumps(
                        {"seq": count, "t": round(t, 6), "len": len(data), "hex": data.hex()}
                    ),
                    flush=True,
                )
            else:
                print(
                    f"[{t:9.3f}] {len(data):4d} bytes: {payload_text(data, args.hex)}", flush=True
                )
    if not args.json:
        print(f"{count} message(s)")
    return 0
