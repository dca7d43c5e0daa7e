"""``patchwise sweep``: train a grid of settings x seeds and select on the validation split.

``patchwise sweep cohort.csv --method gerne --grid beta=0.5,1,2,3 --grid c=0.5,1
--seeds 0 1 2 --out SWEEP_DIR`` trains one run per grid point and seed, skips GERNE betas
at or above their bound, and selects the grid point with the best mean validation metric
(``--select``, val WGA by default). Every ``patchwise train`` flag is accepted and passed
to each run unchanged: the flags are ``train``'s own parser's (copied, not listed here),
and each run's settings come from that parser, so a flag means the same in both commands.
Layout of the folder and the selection rule: :mod:`napari_patchwise.training.sweep`,
``docs/methods.md`` ("Sweeps").
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .._compute import dask_client
from .._progress import tqdm_progress
from ..errors import PatchwiseError
from ..training.config import TrainConfig, check_used
from ..training.loop import check_inputs, passive_openmp_waits
from ._args import positive_int, scheduler_address, seed
from .train import add_parser as add_train_parser
from .train import config_from_args

#: train's arguments the sweep handles itself (each run's --out and --seed) or has no use
#: for (--resume: a rerun of a sweep always resumes; --overwrite: it never replaces a run).
OWN = frozenset({"out", "seed", "resume", "overwrite", "quiet", "help", "manifest"})
#: Options that name files: made absolute, so that runs on other machines' workers
#: (--scheduler) and the runs' config.json find them whatever the working directory.
PATH_OPTIONS = ("cache_dir", "weights")


class _RaisingParser(argparse.ArgumentParser):
    """train's parser as the sweep uses it: a bad value is a one-line PatchwiseError."""

    def error(self, message: str):  # type: ignore[override]
        raise PatchwiseError(message, hint="see 'patchwise train --help'")


def train_parser() -> argparse.ArgumentParser:
    """A fresh ``patchwise train`` parser (its flags, types, choices and defaults)."""

    return add_train_parser(_RaisingParser(prog="patchwise sweep").add_subparsers())


def passed_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The train flags a sweep passes to every run (all but :data:`OWN`)."""
    # argparse has no public list of a parser's actions; _actions is stable since 3.2
    return [a for a in parser._actions if a.option_strings and a.dest not in OWN]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep",
        help="train a grid of settings x seeds, select by validation WGA (or BCA)",
        description="Train one run per grid point and seed (every `patchwise train` flag "
        "is passed to each run), skip GERNE betas at or above beta_max, select the grid "
        "point with the best mean validation metric (--select) and write sweep.csv and "
        "selected.json. Rerun the same command to resume: finished runs are reused, "
        "interrupted ones resumed (see docs/methods.md, Sweeps).",
    )
    p.add_argument("manifest", metavar="MANIFEST", help="cohort CSV: image, mask, split[, slide]")
    for action in passed_actions(train_parser()):
        # Given flags only: a flag left out keeps train's meaning of "left out" (e.g. a
        # preset's value), so the copied flags default to "not given"; help keeps the default.
        if action.help and "%(default)s" in action.help:
            action.help = action.help.replace("%(default)s", str(action.default))
        action.default = argparse.SUPPRESS
        if action.dest == "num_threads":
            action.help = "torch intra-op threads of each run (default in a sweep: 1)"
        p._add_action(action)  # argparse's own way of adding a built action (as parents= does)
    p.add_argument("--out", required=True, metavar="SWEEP_DIR", help="sweep folder")
    p.add_argument(
        "--grid",
        action="append",
        type=grid_axis,
        default=[],
        metavar="NAME=V1,V2",
        help="a numeric train option and its values, e.g. beta=0.5,1,2 (repeat for more axes)",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="add this grid to the sweep of another grid already in --out (same manifest, "
        "method and train flags): sweep.json, sweep.csv and the selection then cover both "
        "(without it such a folder is refused)",
    )
    p.add_argument("--seeds", nargs="+", type=seed, default=None, metavar="S", help="seeds")
    p.add_argument("--seed", type=seed, default=None, metavar="SEED", help="one seed (default: 0)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=positive_int, default=1, metavar="N", help="parallel runs (default: 1)"
    )
    where.add_argument(
        "--scheduler",
        type=scheduler_address,
        default=None,
        metavar="ADDRESS",
        help="run on a dask.distributed cluster (paths must be visible to its workers)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def grid_axis(text: str):
    """``--grid`` type: a :class:`~napari_patchwise.training.sweep.Axis` or a one-line usage error."""
    from ..training.sweep import parse_axis

    try:
        return parse_axis(text)
    except PatchwiseError as exc:
        raise argparse.ArgumentTypeError(str(exc).rstrip(".")) from None


def train_tokens(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The train flags given to the sweep, as command-line words for each run."""
    words = []
    for action in passed_actions(parser):
        if not hasattr(args, action.dest):
            continue  # not given: each run gets train's own default
        value = getattr(args, action.dest)
        if action.dest in PATH_OPTIONS and value is not None:
            value = os.path.abspath(value)
        words += _words(action, value)
    if not hasattr(args, "num_threads"):
        words.append("--num-threads=1")  # runs share the cores: one torch thread each
    return words


def _words(action: argparse.Action, value: Any) -> list[str]:
    flag = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [flag if value else "--no-" + flag.removeprefix("--")]
    if action.nargs == 0:  # store_true / store_const: present only when given
        return [flag] if value == action.const else []
    if isinstance(value, list | tuple):
        return [flag, *map(_text, value)]
    return [f"{flag}={_text(value)}"]  # one word: a value may start with "-"


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def config_factory(args: argparse.Namespace):
    """``make_config(options)``: a run's TrainConfig from train's parser and the flags given."""

    parser = train_parser()
    base = [os.path.abspath(args.manifest), *train_tokens(args, parser)]
    given = {a.dest for a in passed_actions(parser) if hasattr(args, a.dest)}
    clash = sorted(given & {axis.name for axis in args.grid})
    if clash:
        raise PatchwiseError(
            f"{', '.join(clash)} given both as a flag and as a --grid axis",
            hint="give each option once",
        )

    def make_config(options: dict[str, Any]):
        words = list(base)
        for name, value in options.items():
            words.append(f"--{name.replace('_', '-')}={_text(value)}")
        return config_from_args(parser.parse_args(words))

    return make_config


def check_args(args: argparse.Namespace):
    """Every check ``patchwise sweep`` can make before cutting a patch; ``(seeds,
    make_config)``.

    Runs first: the seeds, the train flags as ``patchwise train`` checks them (values,
    flags with no effect, manifest, weights file; the device unless ``--scheduler`` sends
    the runs elsewhere) and, in :func:`~napari_patchwise.training.sweep.plan`, every grid point
    (an axis the method ignores is refused there).
    """

    if args.seeds is not None and args.seed is not None:
        raise PatchwiseError("give --seeds or --seed, not both")
    seeds = args.seeds or [0 if args.seed is None else args.seed]
    make_config = config_factory(args)  # refuses an option given as a flag and an axis
    actions = passed_actions(train_parser())
    given = {a.dest: getattr(args, a.dest) for a in actions if hasattr(args, a.dest)}
    check_used(TrainConfig.from_options(given, manifest=args.manifest, out=args.out), given)
    config = make_config({"seed": seeds[0], "out": os.path.join(args.out, "check")})
    config.validate()
    check_inputs(config, device=args.scheduler is None)
    return seeds, make_config


def run(args: argparse.Namespace) -> int:
    from ..training.sweep import TABLE, complete_sweep, prepare_sweep

    passive_openmp_waits()  # before the checks load torch (train.py, "CPU threads")
    seeds, make_config = check_args(args)
    try:
        with tqdm_progress("preparing patches", unit="", disable=args.quiet) as prepare:
            runs = prepare_sweep(
                args.grid, seeds, args.out, make_config, progress=prepare, merge=args.merge
            )
        with dask_client(args.scheduler, None) as client:
            table, selected = complete_sweep(
                runs,
                args.grid,
                args.out,
                workers=args.workers,
                client=client,
                on_result=_printer(len(runs)),
                seeds=seeds,
                merge=args.merge,
            )
    except KeyboardInterrupt:
        print(
            "patchwise sweep: stopped; finished runs are kept and interrupted ones wrote "
            "last.pt — rerun the same command to continue",
            file=sys.stderr,
        )
        raise
    print(_summary(selected), file=sys.stderr)
    print(os.path.join(args.out, TABLE))
    failed = int((table["status"] == "failed").sum())
    if failed:
        print(f"patchwise sweep: {failed} run(s) failed (see the note column)", file=sys.stderr)
    return 1 if failed else 0


def _printer(n_runs: int):
    """``on_result``: one line per run on stderr, ``[k/n] NAME: status — note``."""
    done = [0]

    def on_result(run, status: str, note: str) -> None:
        done[0] += 1
        note = f" — {note}" if note else ""
        print(f"[{done[0]}/{n_runs}] {run.name}: {status}{note}", file=sys.stderr)

    return on_result


def _summary(selected: dict) -> str:
    if selected.get("point") is None:
        return f"no grid point selected: {selected.get('reason', '')}"
    point = ", ".join(f"{k}={v:g}" for k, v in selected["point"].items()) or "(no grid)"
    return (
        f"selected {point}: mean {selected['select']} {selected['val_mean']:.4f} over "
        f"{len(selected['runs'])} seed(s)"
    )
