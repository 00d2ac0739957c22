"""The layering in docs/architecture.md is true: imports only go down the table, board
commands load no simulation, and the lazy package exports agree with their type stubs.

The layer table is read from docs/architecture.md itself, so the page and this test
cannot drift apart.  Its first row is the bottom layer; a module may import from its own
row and the rows before it, never from a later one.  Every import counts: at run time,
inside a function (lazy) or for type checking only.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "openamp"
DOC = ROOT / "docs" / "architecture.md"


def _names(cell: str) -> list[str]:
    return [n or "(root)" for n in re.findall(r"`openamp(?:\.(\w+))?`", cell)]


def layer_table() -> list[tuple[list[str], list[str]]]:
    """(packages, packages never imported) of each layer, bottom first, from the table
    under '## Layers' in docs/architecture.md."""
    text = DOC.read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not line.lstrip().startswith("|") or set(cells[0]) <= {"-"}:
            continue
        if _names(cells[1]):
            rows.append((_names(cells[1]), _names(cells[2])))
    return rows


def rank_of() -> dict[str, int]:
    ranks = {}
    for i, (row, _never) in enumerate(layer_table()):
        for name in row:
            ranks[name] = i
    return ranks


def forbidden() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row, never in layer_table():
        for name in row:
            out[name] = set(never)
    return out


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def top(module: str) -> str:
    """The layer key of a module: its subpackage, or the root module's own name."""
    parts = module.split(".")
    if len(parts) == 1:
        return "(root)"
    return parts[1]


def imports_of(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported openamp module, line) for every import statement in ``path``."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    here = module.split(".") if is_pkg else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "openamp" or target.startswith("openamp."):
                found.append((target, node.lineno))
                found += [(f"{target}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("openamp")]
    return found


def upward_arrows() -> list[str]:
    ranks = rank_of()
    never = forbidden()
    mods = modules()
    problems = []
    for module, path in sorted(mods.items()):
        if module in ("openamp.__main__",):
            continue  # the entry point: `python -m openamp` runs the command line
        mine = top(module)
        if mine not in ranks:
            problems.append(f"{module}: package {mine!r} is in no row of the layer table")
            continue
        for target, line in imports_of(module, path):
            if target not in mods:
                continue  # a name imported from a module, not a module
            theirs = top(target)
            if theirs == "(root)" and target == "openamp":
                continue  # `from .. import __version__`, `from .. import errors`
            if theirs not in ranks:
                problems.append(f"{module}:{line} imports {target}, which is in no layer")
            elif ranks[theirs] > ranks[mine]:
                problems.append(
                    f"{module}:{line} imports {target}: {mine} (row {ranks[mine]}) may not "
                    f"import {theirs} (row {ranks[theirs]})"
                )
            elif theirs in never[mine]:
                problems.append(f"{module}:{line} imports {target}: {mine} never imports {theirs}")
    return problems


def test_the_layer_table_names_every_package() -> None:
    ranks = rank_of()
    packages = {top(m) for m in modules()} - {"__main__"}
    assert packages <= set(ranks), f"not in docs/architecture.md: {packages - set(ranks)}"


def test_packages_import_only_down_the_layer_table() -> None:
    problems = upward_arrows()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "line", "arrow"),
    [
        # the arrows the architecture review found
        (
            "openamp.firmware.context",
            "from ..platform.machine import DoorbellWaiter",
            "firmware (row 6) may not import platform (row 7)",
        ),
        (
            "openamp.remoteproc.core",
            "if TYPE_CHECKING:\n    from ..rpmsg.virtio import RpmsgVirtioDevice",
            "remoteproc never imports rpmsg",
        ),
        ("openamp.linux.rpmsg", "from ..virtio.ring import U32", "linux never imports virtio"),
    ],
)
def test_the_check_catches_the_arrows_found_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, line: str, arrow: str
) -> None:
    fake = dict(modules())
    bad = tmp_path / "bad.py"
    bad.write_text(f"from typing import TYPE_CHECKING\n{line}\n")
    fake[module] = bad
    monkeypatch.setattr(sys.modules[__name__], "modules", lambda: fake)
    problems = upward_arrows()
    assert any(p.startswith(module) and arrow in p for p in problems), problems


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


HEAVY = ("openamp.platform", "openamp.services", "openamp.firmware", "openamp.vhost", "elftools")


def heavy(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if m.startswith(HEAVY))


def test_importing_the_command_line_loads_no_command() -> None:
    mods = loaded_after("import openamp.cli")
    assert heavy(mods) == []
    assert sorted(m for m in mods if m.startswith("openamp.")) == [
        "openamp.cli",
        "openamp.cli.commands",
        "openamp.errors",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["rpmsg", "ls"],
        ["rproc", "ls"],
        ["rpmsg", "ls", "--json"],
        ["echo_test", "--timeout", "1"],
        ["mat_mul_demo", "--timeout", "1"],
        ["proxy_app", "--no-delay", "--timeout", "1"],
        ["inspect", "--board"],
        ["inspect", "--board", "--json"],
        ["doctor", "--board"],
    ],
)
def test_board_commands_load_no_simulation_services_or_pyelftools(
    argv: list[str], tmp_path: Path
) -> None:
    roots = ["--sysfs", str(tmp_path)]
    code = (
        "import contextlib, io\n"
        "from openamp.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n    main({argv + roots!r})"
    )
    assert heavy(loaded_after(code)) == []


def test_a_python_firmware_loads_no_platform() -> None:
    mods = loaded_after("import openamp.firmware.context")
    assert not [m for m in mods if m.startswith(("openamp.platform", "openamp.vhost"))]
    assert "elftools" not in mods


def test_the_board_adapter_needs_no_pyelftools() -> None:
    mods = loaded_after("import openamp.linux\nopenamp.linux.list_remoteprocs")
    assert heavy(mods) == [] and "openamp.remoteproc" not in mods


def lazy_packages() -> list[Path]:
    return [p for p in PACKAGE.rglob("__init__.py") if "lazy_exports(" in p.read_text()]


@pytest.mark.parametrize("init", lazy_packages(), ids=lambda p: p.parent.name)
def test_lazy_exports_and_their_type_stubs_name_the_same_things(init: Path) -> None:
    tree = ast.parse(init.read_text())
    table: dict[str, str] = {}
    stubs: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets
        ):
            table = ast.literal_eval(node.value)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                for alias in imp.names:
                    assert alias.asname == alias.name, "re-export as `X as X`"
                    stubs[alias.name] = "." * imp.level + (imp.module or "")
    assert table == stubs


@pytest.mark.parametrize("init", lazy_packages(), ids=lambda p: p.parent.name)
def test_every_lazy_export_resolves(init: Path) -> None:
    package = ".".join(init.parent.relative_to(SRC).parts)
    code = f"import {package} as p\nfor n in p.__all__: getattr(p, n)"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- a board without pyelftools ---------------------------------------------------------

HIDE_ELFTOOLS = """\
import sys

class HideElftools:
    # As if pyelftools were not installed: every import of it fails.
    def find_spec(self, name, path=None, target=None):
        if name == "elftools" or name.startswith("elftools."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, HideElftools())
"""


def run_without_pyelftools(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HIDE_ELFTOOLS + code], capture_output=True, text=True, timeout=60
    )


def test_the_hook_really_hides_pyelftools() -> None:
    r = run_without_pyelftools("import elftools.elf.elffile")
    assert r.returncode == 1 and "No module named 'elftools" in r.stderr


def test_board_commands_work_without_pyelftools_installed(tmp_path: Path) -> None:
    from test_linux_remoteproc import Board

    board = Board(tmp_path)
    board.add_remoteproc(0, name="m4", firmware="rproc-m4-fw")
    (board.firmware / "rproc-m4-fw").write_bytes(b"\x7fELF" + bytes(60))
    board.add_virtio(0)
    roots = board.cli_roots()
    code = (
        "import json, contextlib, io\n"
        "from openamp.cli import main\n"
        "for argv in ARGVS:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        assert main(argv) == 0, argv\n"
        "    print(out.getvalue())\n"
        "assert not [m for m in sys.modules if m.startswith('elftools')]\n"
    )
    argvs = [
        ["rproc", "ls", "--json", *roots],
        ["rproc", "firmware", "0", "rproc-m4-fw", "--firmware-path", str(board.firmware), *roots],
        ["rpmsg", "ls", *roots],
    ]
    r = run_without_pyelftools(f"ARGVS = {argvs!r}\n{code}")
    assert r.returncode == 0, r.stderr
    assert '"name": "m4"' in r.stdout
    assert "remoteproc0: firmware rproc-m4-fw" in r.stdout
    assert "control devices" in r.stdout


def test_board_commands_do_not_load_asyncio(tmp_path: Path) -> None:
    # asyncio (with ssl) costs a board command about 30 ms and 5 MB; only awaiting loads it
    code = (
        "import contextlib, io\n"
        "from openamp.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main(['rpmsg', 'ls', '--sysfs', {str(tmp_path)!r}])"
    )
    assert "asyncio" not in loaded_after(code)
