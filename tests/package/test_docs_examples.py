"""Every shell command and code block in README.md and docs/ runs as written.

Each page's fenced blocks are read in order and handled by their language tag:

* ``bash`` and ``python`` blocks run, in order, in one fresh folder per page (a page is a
  walk-through: later blocks use what earlier ones wrote), with ``patchwise`` and
  ``python`` from this environment on the PATH. A block that cannot run here (it needs
  network, a GPU, a cluster, an interactive window) is preceded by
  ``<!-- covered-by: tests/test_x.py::test_name, ... -->``, and every test it names must
  exist (or the named file, e.g. ``.ci/run``).
* ``synopsis`` blocks (the CLI at a glance) are checked against the parser: every
  ``patchwise COMMAND`` exists and every ``--flag`` given for it is one of its options.
* ``text`` blocks are not code (diagrams, file maps, printed output).

A block without a language tag is an error: say what it is.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"bash", "python"}
KNOWN = RUNNABLE | {"synopsis", "text"}
FENCE = re.compile(r"^(`{3,})(\S*)\s*$")
COVERED = re.compile(r"<!--\s*covered-by:\s*(.+?)\s*-->")

pytestmark = [pytest.mark.gui, pytest.mark.torch]


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    covered_by: list[str]

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, with the covered-by note before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang, start = match.group(1), match.group(2), i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == fence)
        before = lines[start - 1] if start > 0 else ""
        if not before.strip() and start > 1:
            before = lines[start - 2]
        note = COVERED.search(before)
        covered = [t.strip() for t in note.group(1).split(",")] if note else []
        code = "\n".join(lines[start + 1 : end]) + "\n"
        blocks.append(Block(page, start + 1, lang, code, covered))
        i = end + 1
    return blocks


def test_every_block_says_what_it_is():
    untagged = [b.where() for p in PAGES for b in blocks_of(p) if b.lang not in KNOWN]
    assert not untagged, f"blocks without a known language tag ({sorted(KNOWN)}): {untagged}"


def _test_exists(ref: str) -> bool:
    path, _, name = ref.partition("::")
    file = ROOT / path
    if not file.is_file():
        return False
    if not name:
        return True
    tree = ast.parse(file.read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.FunctionDef) and node.name == name.split("[")[0]
        for node in ast.walk(tree)
    )


def test_every_covered_block_names_existing_tests():
    missing = [
        f"{b.where()}: {ref}"
        for p in PAGES
        for b in blocks_of(p)
        for ref in b.covered_by
        if not _test_exists(ref)
    ]
    assert not missing, f"covered-by names tests that do not exist: {missing}"


def test_synopsis_commands_and_flags_exist():
    from napari_patchwise.cli.main import build_parser

    parser = build_parser()
    commands = next(
        a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"
    ).choices
    wrong = []
    for page in PAGES:
        for block in (b for b in blocks_of(page) if b.lang == "synopsis"):
            command = None
            for line in block.code.splitlines():
                line = line.split("#")[0]
                words = line.split()
                if words[:1] == ["patchwise"] and len(words) > 1:
                    command = words[1]
                    if command not in commands:
                        wrong.append(f"{block.where()}: no command {command!r}")
                        command = None
                        continue
                if command is None:
                    continue
                options = commands[command]._option_string_actions
                for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", line):
                    if flag not in options:
                        wrong.append(f"{block.where()}: {command} has no {flag}")
    assert not wrong, wrong


def _runnable_pages() -> list[Path]:
    return [p for p in PAGES if any(b.lang in RUNNABLE and not b.covered_by for b in blocks_of(p))]


def test_bash_blocks_use_existing_commands_and_flags():
    """Every ``patchwise`` command in a page's bash blocks, continuation lines included,
    names a command and flags the parser has (checked without running anything: the
    researchers' guide walk-through itself is slow)."""
    from napari_patchwise.cli.main import build_parser

    parser = build_parser()
    commands = next(
        a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"
    ).choices
    wrong, seen = [], 0
    for page in PAGES:
        for block in (b for b in blocks_of(page) if b.lang in RUNNABLE):
            command, continued = None, False
            for raw in block.code.splitlines():
                line = raw.split(" #")[0].strip()
                words = line.split()
                if not continued:  # a new shell command: patchwise or something else
                    command = None
                    if "patchwise" in words[:3] and words.index("patchwise") + 1 < len(words):
                        command = words[words.index("patchwise") + 1]
                        seen += 1
                        if command.startswith("-"):  # patchwise --help / --version
                            command = None
                        elif command not in commands:
                            wrong.append(f"{block.where()}: no command {command!r}")
                            command = None
                continued = line.endswith("\\")
                if command is None:
                    continue
                options = commands[command]._option_string_actions
                for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", line):
                    if flag not in options:
                        wrong.append(f"{block.where()}: {command} has no {flag}")
    assert seen > 20  # the check saw the guides' commands
    assert not wrong, wrong


#: Walk-throughs too long for every CI run (``make test-all`` runs them): the researchers'
#: guide's ~20 commands take ~95 s. Each of its commands is covered by its own CLI test,
#: and every flag it uses by ``test_documented_commands_use_existing_flags`` above.
SLOW_PAGES = {"guide-researchers.md"}


def _page_params() -> list:
    return [
        pytest.param(page, marks=pytest.mark.slow) if page.name in SLOW_PAGES else page
        for page in _runnable_pages()
    ]


@pytest.mark.parametrize("page", _page_params(), ids=lambda p: p.name)
def test_page_runs_as_written(page, tmp_path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "NAPARI_CONFIG": str(tmp_path / "napari-settings.yaml"),
        "PATCHWISE_CACHE_DIR": str(tmp_path / "cache"),
        "MPLBACKEND": "Agg",
    }
    work = tmp_path / "work"
    work.mkdir()
    for block in blocks_of(page):
        if block.lang not in RUNNABLE or block.covered_by:
            continue
        if block.lang == "bash":
            cmd = ["bash", "-euo", "pipefail", "-c", block.code]
        else:
            cmd = [sys.executable, "-c", block.code]
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (
            f"{block.where()} ({block.lang}) failed with {proc.returncode}:\n"
            f"{block.code}\n--- stderr ---\n{proc.stderr[-3000:]}"
        )


def test_every_relative_link_and_image_exists():
    """Links and images in README and docs point to files of the repository."""
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address, or an anchor on the same page
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken
