"""The one adapter from ``progress(done, total)`` callbacks to napari's progress bars."""

from __future__ import annotations


class NapariProgress:
    """A napari progress bar (activity dock) driven as a ``progress(done, total)`` callback.

    Parameters
    ----------
    description : str
        The bar's text.
    show_now : bool
        Show an indeterminate bar at once (a job the user just started); otherwise the
        bar appears with the first report (work that may turn out to be instant, such as
        a display pyramid that is already cached).

    Use it as a context manager, or call :meth:`close` when the work ends.
    """

    def __init__(self, description: str, *, show_now: bool = False) -> None:
        self.description = description
        self._bar = None
        if show_now:
            self._open(0)

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._open(total)
        if self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def _open(self, total: int) -> None:
        from napari.utils import progress

        self._bar = progress(total=total, desc=self.description)

    def close(self) -> None:
        """Remove the bar (if it was shown)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> NapariProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
