"""Every number in README's results tables is on file under ``docs/results/``.

README's "Results" section holds benchmark tables; each one is preceded by a marker
``<!-- on file: docs/results/<benchmark>/<file> -->`` naming the committed file(s) the
benchmark wrote (``benchmarks/_results_io.py``). Every number in a table's body must
appear, as written, in one of its files: a figure edited by hand, rounded differently or
left over from an older run fails here. Text checks only; nothing is run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
MARKER = re.compile(r"<!--\s*on file:\s*(.+?)\s*-->")
# a number: optional sign, digits, optional decimals; not part of a longer token
NUMBER = re.compile(r"(?<![\w.])[-+−]?\d+(?:\.\d+)?(?![\w.]*\d)")


def results_section(readme: str) -> str:
    """README's text from the ``## Results`` heading to the next ``## `` heading."""
    start = readme.index("\n## Results")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end >= 0 else len(readme)]


def marked_tables(section: str) -> list[tuple[list[str], list[str]]]:
    """``(files, body rows)`` per Markdown table; ``files`` from the marker above it.

    A table without a marker gets ``[]`` (the test then fails: every results table must
    name its file).
    """
    tables, files, rows = [], [], []
    for line in section.splitlines() + [""]:
        if line.startswith("|"):
            rows.append(line)
            continue
        if rows:
            tables.append((files, rows[2:]))  # the header and the |---| line left out
            files, rows = [], []
        found = MARKER.search(line)
        if found:
            files = [f.strip() for f in found.group(1).split(",")]
    return tables


def numbers(row: str) -> list[str]:
    """The numbers of a table row, as written (a leading '+' kept, '−' read as '-')."""
    return [n.replace("−", "-") for n in NUMBER.findall(row)]


def on_file(number: str, text: str) -> bool:
    """Whether ``number`` appears in ``text`` as a whole number (not inside another)."""
    bare = number.lstrip("+")
    return re.search(rf"(?<![\w.]){re.escape(bare)}(?![\w]|\.\d)", text) is not None


def missing_numbers(section: str) -> list[str]:
    """Each table number not found in its files, as ``file(s): row: number``."""
    problems = []
    for files, rows in marked_tables(section):
        if not files:
            problems.append(f"a results table without '<!-- on file: ... -->': {rows[:1]}")
            continue
        paths = [ROOT / f for f in files]
        absent = [str(p) for p in paths if not p.is_file() or RESULTS not in p.parents]
        if absent:
            problems.append(f"not a file under docs/results/: {absent}")
            continue
        text = "\n".join(p.read_text() for p in paths)
        for row in rows:
            problems += [f"{files}: {row}: {n}" for n in numbers(row) if not on_file(n, text)]
    return problems


def readme_section() -> str:
    return results_section((ROOT / "README.md").read_text())


def test_readme_results_tables_name_their_files() -> None:
    tables = marked_tables(readme_section())
    assert tables, "README's Results section has no tables"
    assert all(files for files, _ in tables), [rows[:1] for files, rows in tables if not files]


def test_every_readme_results_number_is_on_file() -> None:
    assert missing_numbers(readme_section()) == []


def test_a_number_edited_by_hand_is_caught() -> None:
    """The check must fail when one figure of a table is changed (by the smallest step
    that gives a number found nowhere in its files)."""
    section = readme_section()
    files, rows = next((f, r) for f, r in marked_tables(section) if f and r)
    text = "\n".join((ROOT / f).read_text() for f in files)
    row = next(r for r in rows if numbers(r))
    first = numbers(row)[0]
    decimals = max(len(first.split(".")[1]) if "." in first else 0, 2)
    step = 1
    while on_file(edited := f"{float(first.lstrip('+')) + step / 100:.{decimals}f}", text):
        step += 1
    changed = section.replace(row, row.replace(first.lstrip("+"), edited, 1), 1)
    assert missing_numbers(changed) != []


def test_table_parsing_on_a_hand_built_section(tmp_path: Path) -> None:
    """Markers, table bodies and numbers as the checks read them."""
    section = (
        "\n## Results\n\ntext 1.5\n<!-- on file: docs/results/x/a.md, docs/results/x/b.csv -->\n"
        "| m | WGA |\n|---|---|\n| GERNE | 82.22 [80.10, 84.34] |\n| ERM | +1.50 |\n\n"
        "| unmarked | 3 |\n|---|---|\n| a | 4.25 |\n"
    )
    tables = marked_tables(section)
    assert tables[0][0] == ["docs/results/x/a.md", "docs/results/x/b.csv"]
    assert [numbers(r) for r in tables[0][1]] == [["82.22", "80.10", "84.34"], ["+1.50"]]
    assert tables[1] == ([], ["| a | 4.25 |"])
    assert on_file("82.22", "x,82.22,y") and not on_file("82.2", "x,82.22,y")
    assert not on_file("2.22", "x,82.22,y") and on_file("+1.50", "| +1.50 |")


@pytest.mark.parametrize("name", ["planted_bias"])
def test_published_results_record_how_they_were_made(name: str) -> None:
    """Each published folder has its tables and a meta.json with command, date, commit."""
    folder = RESULTS / name
    meta = json.loads((folder / "meta.json").read_text())
    assert {"command", "date_utc", "git_commit", "load_average"} <= set(meta)
    assert name in meta["command"] and "--quick" not in meta["command"]
    for file in meta["files"]:
        assert (folder / file).is_file(), file


# -- the planted-bias benchmark's statistics (benchmarks/planted_bias.py) ---------------------
def _planted_bias():
    import importlib
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module("planted_bias")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_holm_adjusted_p_values_by_hand() -> None:
    """Holm: sorted p times (m - i), running maximum, capped at 1; NaN left out."""
    import math

    holm = _planted_bias().holm
    got = holm([0.01, 0.04, 0.03, float("nan"), 0.5])
    # m = 4 finite: 0.01*4 = 0.04; 0.03*3 = 0.09; 0.04*2 = 0.08 -> max 0.09; 0.5*1 = 0.5
    assert [round(x, 10) for x in got[[0, 2, 1, 4]]] == [0.04, 0.09, 0.09, 0.5]
    assert math.isnan(got[3])


def test_paired_tests_pair_by_seed_and_pick_the_best_control() -> None:
    """Differences are paired by seed (scipy's ttest_rel), against the control with the
    highest mean test WGA, and the paper's ERM figure is labelled by its selection."""
    import pandas as pd
    from scipy import stats

    pb = _planted_bias()
    assert pb.PAPER_ERM_BCA_SELECTED_WGA == 63.75 and pb.PAPER_ERM_WGA_SELECTED_WGA == 73.54
    wga = {"ERM": [30, 35, 40], "ReSample": [80, 85, 83], "GroupDRO": [79, 86, 81],
           "GERNE": [82, 84, 90]}  # fmt: skip
    rows = pd.DataFrame(
        [dict(tau=0.1, method=m, seed=s, test_wga=v, **{"selected by": "val WGA"})
         for m, vs in wga.items() for s, v in zip([2, 0, 1], vs, strict=True)]
    )  # fmt: skip
    tests = pb.paired_tests(rows, [0.1]).set_index("method")
    assert set(tests["against"]) == {"ReSample"}  # mean 82.67 > GroupDRO's 82.0
    assert tests.loc["GERNE", "diff"] == pytest.approx((2 - 1 + 7) / 3)
    assert tests.loc["GERNE", "p"] == pytest.approx(
        stats.ttest_rel([82, 84, 90], [80, 85, 83]).pvalue
    )
    assert tests.loc["GERNE", "p_holm"] >= tests.loc["GERNE", "p"]
    mean, low, high = pb.ci95([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / 3**0.5
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))


def test_quick_runs_never_write_into_docs_results(tmp_path: Path) -> None:
    """``make bench`` (--quick) writes into benchmarks/_results/, and is refused
    docs/results/ even when asked; a full run publishes into docs/results/<name>/."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import _results_io as io
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert io.results_dir("x", quick=True) == ROOT / "benchmarks" / "_results" / "x_quick"
    assert io.results_dir("x", quick=False) == RESULTS / "x"
    with pytest.raises(SystemExit):
        io.results_dir("x", quick=True, given=str(RESULTS / "x"))
    folder = io.write_results(tmp_path / "out", {"t.md": "| a | 1.5 |\n"}, {"status": "ok"})
    meta = json.loads((folder / "meta.json").read_text())
    assert (folder / "t.md").read_text() == "| a | 1.5 |\n"
    assert meta["files"] == ["t.md"] and meta["status"] == "ok" and "git_commit" in meta
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "t.md"]  # no temporaries
