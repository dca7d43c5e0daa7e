"""`make bench` runs every benchmark's quick mode (docs/benchmarks.md, "Quick mode").

Text checks only (nothing is run): a benchmark added to ``benchmarks/`` without a
``--quick`` flag, or left out of the Makefile's ``bench`` rule, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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
            if "from _protocol import" in source:  # its flags: --repeats, --allow-loaded, ...
                source += (ROOT / "benchmarks" / "_protocol.py").read_text()
            for flag in re.findall(
                r"(?<![\w-])(--[a-z][a-z0-9-]*)", command.split(match.group(1))[1]
            ):
                assert f'"{flag}"' in source, f"{script.name} has no {flag}: {command}"
            seen.add(script.name)
    assert len(seen) >= 8, seen


# Benchmarks whose published files hold no timings (accuracy tables): the load gate and
# the interleaved repeats of the timing protocol do not apply to them.
NOT_TIMINGS = {
    "planted_bias.py": "accuracy over seeds, not wall times",
    "bench_encoder_heads.py": "head accuracy over seeds, not wall times",
    "hidden_shortcut.py": "WGA and discovery over seeds, not wall times",
}


def publishes(source: str) -> bool:
    """Whether a benchmark writes files meant for docs/results/."""
    marks = ("write_results(", "results_dir(", "docs/results", "Protocol(", "Protocol.from_args(")
    return any(s in source for s in marks)


def test_every_benchmark_that_publishes_timings_uses_the_protocol() -> None:
    """A benchmark writing into docs/results/ goes through ``benchmarks/_protocol.py``
    (interleaved rotating repeats, min and median, the load gate, machine and versions in
    its meta) and never around it with ``_results_io.write_results``."""
    offenders = []
    for script in SCRIPTS:
        source = script.read_text()
        if not publishes(source) or script.name in NOT_TIMINGS:
            continue
        uses = "from _protocol import" in source and "Protocol" in source
        if not uses or "write_results(" in source:
            offenders.append(script.name)
    assert offenders == []
    assert set(NOT_TIMINGS) <= {p.name for p in SCRIPTS}


def test_the_protocol_rule_sees_a_benchmark_that_bypasses_it() -> None:
    direct = "from _results_io import results_dir, write_results\nwrite_results(folder, t)\n"
    assert publishes(direct) and "from _protocol import" not in direct
    assert not publishes("print(table)\n")


def speed_rows(readme: str) -> list[str]:
    """The body rows of README's speed-budget table."""
    start = readme.index("\n## Speed budgets")
    section = readme[start : readme.index("\n## ", start + 1)]
    return [r for r in section.splitlines() if r.startswith("|")][2:]


def speed_problems(readme: str) -> list[str]:
    """Rows without a command, and measured figures not found in the results file named."""
    from test_results_on_file import numbers, on_file

    problems = []
    for row in speed_rows(readme):
        cells = [c.strip() for c in row.strip("|").split("|")]
        files = re.findall(r"docs/results/[\w./-]+", row)
        if "benchmarks/" not in row or not files:
            problems.append(f"no command or results file: {row}")
        elif "to be measured" not in cells[1]:
            paths = [ROOT / f for f in files]
            if not all(p.is_file() for p in paths):
                problems.append(f"a figure from a file that does not exist: {row}")
                continue
            text = "\n".join(p.read_text() for p in paths)
            problems += [f"{row}: {n}" for n in numbers(cells[1]) if not on_file(n, text)]
    return problems


def test_readme_speed_figures_name_their_results_file_and_command() -> None:
    """README's speed-budget table: each row names its benchmark command and the
    docs/results/ file its figure comes from; a figure must be in that file as written
    (until then the row says "to be measured")."""
    readme = (ROOT / "README.md").read_text()
    assert speed_rows(readme)
    assert speed_problems(readme) == []


def test_a_speed_figure_not_on_file_is_caught() -> None:
    head = "\n## Speed budgets\n\n| budget | measured | command |\n|---|---|---|\n"
    made_up = (
        head
        + "| x < 2 s | 1.14 s | `benchmarks/bench_open.py` (`docs/results/planted_bias/tables.md`) |\n## End\n"
    )
    assert speed_problems(made_up) != []
    unnamed = head + "| x < 2 s | 1.14 s | measured earlier |\n## End\n"
    assert speed_problems(unnamed) != []
    pending = head + "| x | to be measured | `benchmarks/x.py` (`docs/results/x/x.md`) |\n## End\n"
    assert speed_problems(pending) == []
