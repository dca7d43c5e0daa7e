"""`make bench` runs every benchmark's quick mode (docs/benchmarks.md, "Quick mode").

Text checks only (nothing is run): a benchmark added to ``benchmarks/`` without a
``--quick`` flag, or left out of the Makefile's ``bench`` rule, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))


def bench_recipe() -> str:
    """The recipe lines of the Makefile's ``bench`` rule."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("bench:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line)
    return "\n".join(recipe)


def test_there_are_benchmarks() -> None:
    assert len(SCRIPTS) >= 9, [p.name for p in SCRIPTS]


def test_every_benchmark_has_a_quick_flag() -> None:
    missing = [p.name for p in SCRIPTS if '"--quick"' not in p.read_text()]
    assert missing == []


def test_bench_rule_runs_every_benchmark_quick() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^BENCH_ARGS \?= --quick$", makefile, re.MULTILINE)
    recipe = bench_recipe()
    assert "$(BENCH_ARGS)" in recipe
    run = [p.name for p in SCRIPTS if f"benchmarks/{p.name}" not in recipe]
    assert run == []
    # A failing benchmark must fail the rule, even though its output goes through tee.
    assert "pipefail" in recipe
    assert "exit 1" in recipe


def test_bench_rule_installs_first() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^bench: install sysdeps$", makefile, re.MULTILINE)


def test_documented_benchmark_commands_use_existing_flags() -> None:
    """Every command in docs/benchmarks.md names a benchmark that exists, with its flags.

    The commands take minutes to hours, so they are not run here (``make bench`` runs
    each benchmark's quick mode); a renamed script or flag still fails this test.
    """
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 9
    seen = set()
    for block in blocks:
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("#")[0]
            match = re.search(r"benchmarks/(\w+\.py)", command)
            if not match:
                continue
            script = ROOT / "benchmarks" / match.group(1)
            assert script.is_file(), command
            source = script.read_text()
            for flag in re.findall(
                r"(?<![\w-])(--[a-z][a-z0-9-]*)", command.split(match.group(1))[1]
            ):
                assert f'"{flag}"' in source, f"{script.name} has no {flag}: {command}"
            seen.add(script.name)
    assert len(seen) >= 8, seen
