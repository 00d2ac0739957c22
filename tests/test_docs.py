"""The documentation's examples run, and the README's two commands stay true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks() -> list[tuple[str, int, str]]:
    blocks = []
    for doc in DOCS:
        text = doc.read_text()
        for m in re.finditer(r"```python\n(.*?)```", text, re.S):
            line = text[: m.start()].count("\n") + 1
            blocks.append((doc.name, line, m.group(1)))
    return blocks


@pytest.mark.parametrize(("doc", "line", "code"), python_blocks(), ids=lambda v: str(v)[:20])
def test_documentation_example_runs(doc: str, line: int, code: str) -> None:
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert r.returncode == 0, f"{doc}:{line} failed:\n{r.stdout}\n{r.stderr}"


def file_blocks() -> list[tuple[str, str, str]]:
    """The ```python file=NAME blocks (files of an example project; tested by the page's
    own test, not run one by one): (doc, NAME, code)."""
    blocks = []
    for doc in DOCS:
        for m in re.finditer(r"```python file=(\S+)\n(.*?)```", doc.read_text(), re.S):
            blocks.append((doc.name, m.group(1), m.group(2)))
    return blocks


def test_every_documented_example_passes_mypy_strict(tmp_path: Path) -> None:
    # The examples are what users copy: the API must type-check as they use it.
    files = []
    for doc, line, code in python_blocks():
        stem = re.sub(r"\W", "_", doc.removesuffix(".md")).lower()
        path = tmp_path / f"example_{stem}_line{line}.py"
        path.write_text(code)
        files.append(str(path))
    project = tmp_path / "project"  # the files of example projects, under their names
    project.mkdir()
    for _doc, name, code in file_blocks():
        (project / name).write_text(code)
        files.append(str(project / name))
    src = str(ROOT / "src")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": f"{src}:{project}"},
    )
    assert r.returncode == 0, r.stdout.replace(str(tmp_path) + "/", "") + r.stderr


def test_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```sh") + 3]
    assert block[0] == "python3 -m pip install . && openamp demo"
    assert block[1].startswith("python3 -m pip install -e '.[test]' && python3 -m pytest")
    assert lines.index("```sh") <= 3


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    test_command = lines[lines.index("```sh") + 2]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_the_remoteproc_page_shows_the_transition_table_the_code_uses() -> None:
    from openamp.remoteproc.state import transition_table_markdown

    assert transition_table_markdown() in (ROOT / "docs" / "remoteproc.md").read_text()
