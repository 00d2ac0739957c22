"""The seed's board demos as shell sessions: what a user types on the board, verbatim.

Each :class:`BoardDemo` is the script of one demo of the seed ("Samples and Demos"):
the docker/QEMU demos ``demo1A``/``1B``/``1C`` (echo, matrix, proxy on a lockstep R5)
and ``demo2`` (two split R5s started and stopped), and the STM32MP1 multi-services
demos 1-5.  The scripts are the demos' own shell -- ``echo start
>$R5_0/state``, ``echo_test``, ``cat /dev/ttyRPMSG0 &``,
``./rpmsg_export_dev /dev/rpmsg_ctrl0 rpmsg-tty 257 -1`` -- and run under ``/bin/sh``
inside a Linux guest whose remoteproc core boots our processors
(:mod:`openamp.platform.uml_rproc`).  The programs they call are pyopenamp's, put on
the ``PATH`` (and in the working directory, for ``./rpmsg_*``) by :func:`guest_files`:
``echo_test`` runs ``openamp echo_test``, ``rpmsg_ping`` runs
``python -m openamp.linux.rpmsg_utils rpmsg_ping``, and so on.  Kernel messages are
printed as a board's console shows them, interleaved with the commands (``dmesg -W``
in the background).

This module computes texts and data; it starts nothing (``openamp demo board`` does).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..platform.uml_rproc import Processor
    from .uml import UmlResult

PROMPT = "root@generic-arm64:~# "
"""The docker demo's prompt (a ZynqMP board)."""
STM32_PROMPT = "root@stm32mp15-disco-oss:~# "

TOOLS = {
    "echo_test": ("openamp", "echo_test"),
    "mat_mul_demo": ("openamp", "mat_mul_demo"),
    "proxy_app": ("openamp", "proxy_app"),
    "rpmsg_export_dev": ("openamp.linux.rpmsg_utils", "rpmsg_export_dev"),
    "rpmsg_export_ept": ("openamp.linux.rpmsg_utils", "rpmsg_export_ept"),
    "rpmsg_destroy_ept": ("openamp.linux.rpmsg_utils", "rpmsg_destroy_ept"),
    "rpmsg_ping": ("openamp.linux.rpmsg_utils", "rpmsg_ping"),
}
"""The demos' programs: name -> (module run with ``python -m``, its first argument)."""


@dataclass(frozen=True)
class Firmware:
    """A firmware file the demo loads: a Python firmware and its options."""

    spec: str
    options: Mapping[str, str] = field(default_factory=dict)
    vring_num: int = 16
    trace_name: str = "trace0"


@dataclass(frozen=True)
class BoardDemo:
    """One demo: its processors, firmware files and the session (shell)."""

    name: str
    title: str
    processors: tuple[str, ...]
    """Names of the remote processors (``remoteproc0``, ``1``... in this order)."""
    firmware: Mapping[str, Firmware]
    """File name (as the demo writes it to ``.../firmware``) -> what it runs."""
    session: str
    """The shell session: ``/bin/sh`` runs it with :data:`PRELUDE` before."""
    files: Mapping[str, str] = field(default_factory=dict)
    """Scripts the session runs (``demo1A``...), written to its working directory."""
    stdin: str = ""
    """What the user types (the proxy demo asks for a line)."""
    expect: tuple[str, ...] = ()
    """Lines (stripped of NULs and spaces at the ends) the session must print."""
    prompt: str = PROMPT


def _docker_demo1(letter: str, firmware: str, program: str, what: str) -> str:
    """The docker demo's ``demo1X`` script, as the image ships it."""
    return f"""#!/bin/sh

R5_0=/sys/class/remoteproc/remoteproc0

echo "Make sure the R5 is not running"
echo stop >$R5_0/state 2>/dev/null

echo "Set the firmware to use"
echo {firmware} >$R5_0/firmware

echo "Start the R5"
echo start >$R5_0/state

echo "Now run the {what} Linux application"
{program}

"""


DEMO2 = """#!/bin/sh

echo "Show AMD Xilinx bare-metal Hello World in split mode"
R5_0=/sys/class/remoteproc/remoteproc0
R5_1=/sys/class/remoteproc/remoteproc1

echo "Make sure the R5s are not running"
echo stop >$R5_0/state 2>/dev/null
echo stop >$R5_1/state 2>/dev/null

echo "Set the firmware to use"
echo split_rpu0.elf >$R5_0/firmware
echo split_rpu1.elf >$R5_1/firmware

echo "Start R5_0, it will print to the main UART"
echo start >$R5_0/state

# sleeps are so you can see what is happening
sleep 5

echo "Start R5_1, it will also print the main UART"
echo start >$R5_1/state

sleep 5

echo "stop and start R5_1 3 times"
for i in 1 2 3; do
    echo stop  >$R5_1/state
    sleep 1
    echo start >$R5_1/state
    sleep 1
done

echo "Now stop both R5s"
echo stop  >$R5_0/state
echo stop  >$R5_1/state

"""


def _run_script(name: str) -> str:
    return f"run cat ./{name}\nrun ./{name}\n"


MULTI_SERVICES_START = """\
run cat /sys/class/remoteproc/remoteproc0/state
run 'echo rpmsg_multi_services.elf > /sys/class/remoteproc/remoteproc0/firmware'
run 'echo start >/sys/class/remoteproc/remoteproc0/state'
run cat /sys/class/remoteproc/remoteproc0/state
"""

MULTI_SERVICES_DEMOS = """\
note 'Demo 1: rpmsg-client-sample device (by itself: 100 messages, then the channel goes)'
wait_log 'rpmsg sample client driver is removed' 20
wait_for /dev/ttyRPMSG0 10
{trace}
note 'Demo 2: rpmsg-tty device'
run 'ls /dev/ttyRPMSG*'
run 'cat /dev/ttyRPMSG0 &'
run 'echo "Hello Zephyr" >/dev/ttyRPMSG0'
run 'echo "Goodbye Zephyr" >/dev/ttyRPMSG0'
note 'Demo 3: dynamic creation/release of a rpmsg-tty device'
run ./rpmsg_export_dev /dev/rpmsg_ctrl0 rpmsg-tty 257 -1
wait_for /dev/ttyRPMSG1 5
run 'ls /dev/ttyRPMSG*'
run 'cat /dev/ttyRPMSG1 &'
run 'echo hello dev0 >/dev/ttyRPMSG0'
run 'echo hello dev1 >/dev/ttyRPMSG1'
run ./rpmsg_export_dev /dev/rpmsg_ctrl0 -d rpmsg-tty 257 -1
run 'cat /sys/bus/rpmsg/devices/virtio0.rpmsg-tty.-1.*/src'
TTY_SRC=$(($(cat /sys/bus/rpmsg/devices/virtio0.rpmsg-tty.-1.*/src)))
run ./rpmsg_export_dev /dev/rpmsg_ctrl0 -d rpmsg-tty $TTY_SRC -1
wait_gone /dev/ttyRPMSG0 5
run 'ls /dev/ttyRPMSG*'
note 'Demo 4: rpmsg-char device'
run 'ls /dev/rpmsg?'
run ./rpmsg_ping /dev/rpmsg0
note 'Demo 5: Multi endpoints demo using rpmsg-ctrl device'
run 'ls /dev/rpmsg*'
run ./rpmsg_export_ept /dev/rpmsg_ctrl0 my_endpoint1 100 1
run ./rpmsg_export_ept /dev/rpmsg_ctrl0 my_endpoint2 101 1
run ./rpmsg_export_ept /dev/rpmsg_ctrl0 my_endpoint2 103 1
wait_for /dev/rpmsg3 5
run 'ls /dev/rpmsg?'
run ./rpmsg_ping /dev/rpmsg0
run ./rpmsg_ping /dev/rpmsg1
run ./rpmsg_ping /dev/rpmsg2
run ./rpmsg_ping /dev/rpmsg3
run ./rpmsg_destroy_ept /dev/rpmsg1
run ./rpmsg_destroy_ept /dev/rpmsg2
run ./rpmsg_destroy_ept /dev/rpmsg3
wait_gone /dev/rpmsg3 5
run 'ls /dev/rpmsg?'
"""

MULTI_SERVICES_EXPECT = (
    "TTY 0: Hello Zephyr",
    "TTY 0: Goodbye Zephyr",
    "TTY 1: hello dev1",  # after "bound": the tty kept it until cat opened it
    "TTY 0: hello dev0",
    'message for /dev/rpmsg0: "from ept 0x0402: ping /dev/rpmsg0"',
    'message for /dev/rpmsg1: "from ept 0x0001: ping /dev/rpmsg1"',
    'message for /dev/rpmsg2: "from ept 0x0001: ping /dev/rpmsg2"',
    'message for /dev/rpmsg3: "from ept 0x0001: ping /dev/rpmsg3"',
)


def multi_services_session(*, remoteproc: bool = True) -> str:
    """The STM32MP1 demos 1-5; without ``remoteproc`` the sysfs steps are left out (the
    rpmsg device is already there, e.g. over vhost-user)."""
    trace = "run cat /sys/kernel/debug/remoteproc/remoteproc0/trace0" if remoteproc else ""
    session = MULTI_SERVICES_DEMOS.format(trace=trace)
    if remoteproc:
        session = MULTI_SERVICES_START + session
        session += "run 'echo stop >/sys/class/remoteproc/remoteproc0/state'\n"
    return session


DEMOS: dict[str, BoardDemo] = {
    "echo": BoardDemo(
        "echo",
        "docker demo1A: the echo test on the R5 (image_echo_test_zcu102 + echo_test)",
        ("r5f_0",),
        {"image_echo_test_zcu102": Firmware("echo")},
        _run_script("demo1A"),
        {"demo1A": _docker_demo1("A", "image_echo_test_zcu102", "echo_test", "echo test")},
        expect=("Echo Test Round 0 Test Results: Error count = 0",),
    ),
    "matrix": BoardDemo(
        "matrix",
        "docker demo1B: matrix multiply on the R5 (image_matrix_multiply_zcu102 + mat_mul_demo)",
        ("r5f_0",),
        {"image_matrix_multiply_zcu102": Firmware("matrix")},
        _run_script("demo1B"),
        {
            "demo1B": _docker_demo1(
                "B", "image_matrix_multiply_zcu102", "mat_mul_demo", "matrix_multiply"
            )
        },
        expect=("Received RPMSG: 148 bytes", "Matrix multiply application end"),
    ),
    "proxy": BoardDemo(
        "proxy",
        "docker demo1C: the proxy (RPC) demo on the R5 (image_rpc_demo_zcu102 + proxy_app)",
        ("r5f_0",),
        {"image_rpc_demo_zcu102": Firmware("proxy")},
        "say 'The remote asks for a line on the console; the demo types: pyopenamp'\n"
        + _run_script("demo1C").replace("run ./demo1C", "run './demo1C < typed.txt'"),
        {
            "demo1C": _docker_demo1("C", "image_rpc_demo_zcu102", "proxy_app", "matrix_multiply"),
        },
        stdin="pyopenamp\n",
        expect=("Host>RPC service started !!", "Host>RPC service exiting !!"),
    ),
    "split": BoardDemo(
        "split",
        "docker demo2: Hello World on both R5s in split mode, started and stopped",
        ("r5f_0", "r5f_1"),
        {
            "split_rpu0.elf": Firmware("hello", {"name": "R5_0"}),
            "split_rpu1.elf": Firmware("hello", {"name": "R5_1"}),
        },
        _run_script("demo2"),
        {"demo2": DEMO2},
        expect=("Now stop both R5s",),
    ),
    "multi-services": BoardDemo(
        "multi-services",
        "STM32MP1 demos 1-5: the Zephyr rpmsg multi-services sample (rpmsg_multi_services.elf)",
        ("m4",),
        {
            "rpmsg_multi_services.elf": Firmware(
                "multi-services", vring_num=8, trace_name="Zephyr_log"
            )
        },
        multi_services_session(),
        expect=MULTI_SERVICES_EXPECT,
        prompt=STM32_PROMPT,
    ),
}
"""The demos of ``openamp demo board NAME``."""
ALIASES = {
    "demo1A": "echo",
    "demo1B": "matrix",
    "demo1C": "proxy",
    "demo2": "split",
    "stm32mp1": "multi-services",
}


def prelude(src: str, python: str, *, prompt: str = PROMPT, pace: float = 0.15) -> str:
    """The shell set-up every session runs first.

    ``src``: the ``sys.path`` entry holding the ``openamp`` package the guest runs;
    ``python``: the interpreter.  Defines ``say`` (print a line), ``note`` (a comment
    line), ``run`` (print ``prompt`` and the command, run it, give background readers
    ``pace`` seconds), ``wait_for``/``wait_gone`` (a path appears/disappears),
    ``wait_log`` (a kernel message), and starts printing kernel messages as a console does.
    """
    return f"""\
export PATH="$PWD/bin:$PATH" PYTHONPATH={shlex.quote(src)} PYTHONDONTWRITEBYTECODE=1
grep -q ' /sys/kernel/debug ' /proc/mounts || mount -t debugfs none /sys/kernel/debug
say() {{ printf '%s\\n' "$*"; }}
note() {{ printf '# %s\\n' "$*"; }}
BG=
run() {{
    printf '{prompt}%s\\n' "$*"; eval "$@"
    case "$*" in *'&') BG="$BG $!" ;; esac
    sleep {pace}
}}
wait_for() {{
    i=0; while [ ! -e "$1" ] && [ $i -lt $(($2 * 20)) ]; do sleep 0.05; i=$((i+1)); done
}}
wait_log() {{
    i=0; while ! dmesg | grep -q "$1" && [ $i -lt $(($2 * 20)) ]; do sleep 0.05; i=$((i+1)); done
}}
wait_gone() {{
    i=0; while ls $1 >/dev/null 2>&1 && [ $i -lt $(($2 * 20)) ]; do sleep 0.05; i=$((i+1)); done
}}
stdbuf -oL dmesg -W --level=emerg,alert,crit,err,warn,notice,info &
KMSG=$!
sleep 0.1
"""


EPILOGUE = """\
sleep 0.5
kill $KMSG $BG 2>/dev/null
wait 2>/dev/null
true
"""


def guest_files(
    demo: BoardDemo, src: str, python: str, *, sleep_scale: float = 1.0
) -> dict[str, str]:
    """The files of a session's working directory: the scripts, ``bin/`` with the
    demo's programs, the same programs as ``./rpmsg_*``, the typed input and
    ``session.sh`` (what the guest runs).  ``sleep_scale`` shortens (or stretches) the
    scripts' ``sleep``s, through a ``sleep`` of ours first on the ``PATH``."""
    files = dict(demo.files)
    if sleep_scale != 1.0:
        files["bin/sleep"] = (
            f'#!/bin/sh\nexec /bin/sleep $(awk "BEGIN {{ print $1 * {sleep_scale!r} }}")\n'
        )
    for name, (module, first) in TOOLS.items():
        wrapper = f'#!/bin/sh\nexec {shlex.quote(python)} -u -s -m {module} {first} "$@"\n'
        files[f"bin/{name}"] = wrapper
        if name.startswith("rpmsg_"):
            files[name] = wrapper
    files["typed.txt"] = demo.stdin
    files["session.sh"] = prelude(src, python, prompt=demo.prompt) + demo.session + EPILOGUE
    return files


@dataclass
class BoardRun:
    """What one run of a demo produced."""

    demo: BoardDemo
    transcript: str
    """The session's output: what the user sees on the board's terminal."""
    uml: UmlResult
    processors: list[Processor]
    """The processors' history (loads, starts, stops, crashes) and consoles."""

    @property
    def missing(self) -> list[str]:
        """Expected lines the transcript lacks."""
        return missing_lines(self.demo, self.transcript)

    @property
    def ok(self) -> bool:
        """The guest ran the session to its end and every expected line was printed."""
        return self.uml.ok and not self.missing


def run_board_demo(
    demo: BoardDemo,
    *,
    kernel: str | os.PathLike[str] | None = None,
    output: Callable[[str], object] | None = None,
    timeout: float = 180.0,
    keep: str | os.PathLike[str] | None = None,
    sleep_scale: float = 1.0,
    env: Mapping[str, str] | None = None,
) -> BoardRun:
    """Boot a UML kernel with ``demo``'s processors and run its session inside.

    ``kernel``: the UML binary (default :func:`~openamp.tools.uml.find_or_build_kernel`).
    ``output`` receives the transcript as it comes (text chunks) and the processors'
    console lines (``"[r5f_0] Hello World..."``).  ``timeout``: seconds for the whole
    boot.  ``keep``: a directory to keep the firmware files, scripts and logs in (by
    default they go to a temporary directory that is removed).  ``sleep_scale``: see
    :func:`guest_files`.  ``env``: more environment for the firmware processes.
    """
    from ..metal.shm import unique_name
    from ..platform.uml_rproc import UmlRprocMachine, firmware_table, write_firmware
    from .uml import UmlGuest, find_or_build_kernel

    binary = Path(kernel) if kernel is not None else find_or_build_kernel()
    base = Path("/tmp") / unique_name("openamp-board")
    base.mkdir()
    lock = threading.Lock()

    def emit(text: str) -> None:
        if output is not None:
            with lock:
                output(text)

    try:
        fw_dir = base / "firmware"
        fw_dir.mkdir()
        for filename, fw in demo.firmware.items():
            table = firmware_table(vring_num=fw.vring_num, trace_name=fw.trace_name)
            write_firmware(fw_dir, filename, fw.spec, fw.options, table=table)
        script = write_session(demo, base / "session", sleep_scale=sleep_scale)

        def console(p: Processor, line: str) -> None:
            emit(f"[{p.name} console] {line}\n")

        with UmlRprocMachine(base, demo.processors, on_console=console, env=env) as machine:
            args = [*machine.kernel_args(), f"firmware_class.path={fw_dir}"]
            with UmlGuest(
                binary, {}, script, timeout=timeout, workdir=base / "uml", extra_args=args
            ) as guest:
                guest.start()
                log = base / "uml" / "script.log"
                seen = 0
                deadline = time.monotonic() + timeout
                while guest.running and time.monotonic() < deadline:
                    seen = _forward(log, seen, emit)
                    time.sleep(0.05)
                result = guest.wait(check=False)
                _forward(log, seen, emit)
            processors = list(machine.processors)
        run = BoardRun(demo, result.output, result, processors)
        if keep is not None:
            shutil.copytree(base, Path(keep), dirs_exist_ok=True)
        return run
    finally:
        shutil.rmtree(base, ignore_errors=True)


def write_session(
    demo: BoardDemo, directory: Path, *, python: str = sys.executable, sleep_scale: float = 1.0
) -> str:
    """Write :func:`guest_files` into ``directory`` (made if needed; the guest must see
    it, as with hostfs) and return the guest script that runs the session there."""
    directory.mkdir(parents=True, exist_ok=True)
    src = str(Path(__file__).resolve().parents[2])
    for rel, text in guest_files(demo, src, python, sleep_scale=sleep_scale).items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if rel.startswith(("bin/", "rpmsg_", "demo")):
            path.chmod(0o755)
    return f"cd {shlex.quote(str(directory))} && exec /bin/sh session.sh\n"


def _forward(path: Path, seen: int, emit: Callable[[str], None]) -> int:
    """Pass on what ``path`` gained since byte ``seen``; return the new position."""
    try:
        with open(path, "rb") as f:
            f.seek(seen)
            data = f.read()
    except OSError:
        return seen
    if data:
        emit(data.decode(errors="replace"))
    return seen + len(data)


def display(text: str) -> str:
    """What a terminal shows of ``text``: NUL bytes (the responders' trailing byte) are
    invisible; carriage returns before a newline too."""
    return text.replace("\0", "").replace("\r\n", "\n")


def missing_lines(demo: BoardDemo, transcript: str) -> list[str]:
    """The expected lines the transcript lacks (each must end a line of it: what came
    before on the line, such as a tty's earlier bytes, does not matter)."""
    lines = [line.strip() for line in display(transcript).splitlines()]
    return [want for want in demo.expect if not any(line.endswith(want) for line in lines)]


__all__ = [
    "ALIASES",
    "DEMOS",
    "PROMPT",
    "TOOLS",
    "BoardDemo",
    "BoardRun",
    "Firmware",
    "display",
    "guest_files",
    "missing_lines",
    "multi_services_session",
    "prelude",
    "run_board_demo",
    "write_session",
]
