"""The dock's one background-job helper and how the dock's parts depend on each other.

``BackgroundJob`` runs every background action (grid, train, predict, cohort check,
sample): its progress, result, errors (one notification line), Cancel and busy state
are tested here on a plain Qt event loop, without a viewer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.jobs.job import BackgroundJob
from napari_patchwise.errors import PatchwiseError

pytestmark = pytest.mark.gui

NAPARI_DIR = Path(__file__).parents[2] / "src" / "napari_patchwise" / "_napari"


@pytest.fixture
def notes(monkeypatch):
    shown: dict[str, list[str]] = {"error": [], "info": []}
    monkeypatch.setattr(notify, "show_error", shown["error"].append)
    monkeypatch.setattr(notify, "show_info", shown["info"].append)
    return shown


def run(qtbot, job: BackgroundJob, func, **kwargs) -> dict:
    """Start ``func`` as ``job`` and wait until it has finished; what it reported."""
    seen: dict = {"progress": [], "returned": [], "busy": []}
    job.busy_changed.connect(seen["busy"].append)
    job.start(
        func,
        returned=seen["returned"].append,
        progress=lambda done, total: seen["progress"].append((done, total)),
        **kwargs,
    )
    assert job.busy()
    qtbot.waitUntil(lambda: not job.busy(), timeout=10_000)
    return seen


def test_result_and_last_progress_reach_the_main_thread(qtbot, notes):
    main = threading.get_ident()
    threads = []

    def job(*, cancel, progress):
        threads.append(threading.get_ident())
        for done in range(1, 4):
            progress(done, 3)
        return "table"  # at once: the last report (3, 3) must not be lost

    background = BackgroundJob("cancelled")
    seen = run(qtbot, background, job, description="a test job")
    assert threads and threads[0] != main
    assert seen["returned"] == ["table"]
    assert seen["progress"][-1] == (3, 3)
    assert seen["busy"] == [True, False]
    assert notes == {"error": [], "info": []}


def test_errors_are_one_notification_line_and_reach_on_error(qtbot, notes):
    texts: list[str] = []
    background = BackgroundJob("cancelled", on_error=texts.append)

    def bad_file(*, cancel, progress):
        raise PatchwiseError("not a patch table", path="t.csv", hint="load another")

    def crash(*, cancel, progress):
        raise ValueError("bad\nthing  here")

    assert run(qtbot, background, bad_file)["returned"] == []
    run(qtbot, background, crash)
    expected = ["t.csv: not a patch table — load another.", "Patchwise: ValueError: bad thing here"]
    assert notes["error"] == expected and texts == expected
    assert notes["info"] == []


def test_cancel_stops_at_the_next_report_with_one_notice(qtbot, notes):
    started = threading.Event()

    def long(*, cancel, progress):
        for done in range(10_000):
            started.set()
            progress(done, 10_000)  # raises Cancelled once Cancel was pressed
            time.sleep(0.01)
        return "finished anyway"

    background = BackgroundJob("Patchwise: computation cancelled")
    seen: list = []
    background.start(long, returned=seen.append)
    assert started.wait(5)
    background.cancel()
    assert background.cancelled()
    qtbot.waitUntil(lambda: not background.busy(), timeout=10_000)
    assert seen == [] and notes == {"error": [], "info": ["Patchwise: computation cancelled"]}


def test_a_generator_job_only_sees_its_stop_event_and_still_returns(qtbot, notes):
    stop = threading.Event()

    def body(stop):
        steps = 0
        while not stop.is_set() and steps < 500:
            steps += 1
            yield [steps]
            time.sleep(0.01)
        return ("stopped at", steps)

    batches: list = []
    returned: list = []
    background = BackgroundJob("cancelled")
    background.start_generator(
        body, stop, stop=stop, yielded=batches.append, returned=returned.append
    )
    qtbot.waitUntil(lambda: len(batches) >= 3, timeout=5000)
    background.cancel()  # no quit: the body ends itself (training writes last.pt first)
    qtbot.waitUntil(lambda: not background.busy(), timeout=5000)
    assert returned and returned[0][0] == "stopped at" and returned[0][1] < 500
    assert notes == {"error": [], "info": []}


def test_wait_keeps_the_event_loop_turning(qtbot, notes):
    from qtpy.QtCore import QTimer

    ticks: list[int] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)

    def slow(*, cancel, progress):
        time.sleep(0.3)
        return 42

    returned: list = []
    background = BackgroundJob("cancelled")
    background.start(slow, returned=returned.append)
    background.wait()
    timer.stop()
    assert returned == [42] and not background.busy()
    assert len(ticks) >= 5, len(ticks)


def test_a_failed_sample_write_is_one_notification_and_no_layers(
    qtbot, notes, monkeypatch, tmp_path
):
    from napari_patchwise._napari.reader import sample
    from napari_patchwise._napari.reader.layers import NO_LAYERS

    def full_disk(**kwargs):
        raise PatchwiseError("no space left", path=tmp_path / "s.ome.tif")

    monkeypatch.setenv(sample.SAMPLE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(sample, "ensure_sample_slide", full_disk)
    assert sample.make_sample_slide() == NO_LAYERS
    assert notes["error"] == [f"{tmp_path / 's.ome.tif'}: no space left."]


def _dock_module(path: Path) -> str:
    """``path``'s dotted name inside ``_napari`` (``dock.widget``; a package: its folder)."""
    parts = path.relative_to(NAPARI_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The ``_napari`` modules ``path`` imports anywhere (functions included)."""
    package = _dock_module(path).split(".")[:-1] if path.name != "__init__.py" else []
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        if node.level - 1 > len(package):
            continue  # the core library, outside _napari
        base = package[: len(package) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
        for name in [f"{target}.{a.name}".strip(".") for a in node.names] + [target]:
            if name in modules:
                found.add(name)
                break
    return found


def test_the_dock_modules_import_each_other_without_cycles():
    paths = [p for p in NAPARI_DIR.rglob("*.py") if p.name != "__init__.py"]
    modules = {_dock_module(p) for p in paths}
    graph = {_dock_module(p): _imports(p, modules) - {_dock_module(p)} for p in paths}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for other in sorted(graph[module]):
            visit(other, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
    assert "dock.widget" in graph["dock.demo_view"]
    assert "model_tab.panel" in graph["dock.widget"]


def test_the_training_child_imports_neither_qt_nor_napari():
    # The training process (spawn) imports train_worker; Qt or napari there would bring
    # the GUI libraries into a process that must load triton first.
    code = (
        "import sys, napari_patchwise._napari.jobs.training_work;"
        "bad = [m for m in ('napari', 'qtpy', 'PyQt6', 'PyQt5', 'PySide6', 'torch') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
