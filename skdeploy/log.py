"""Messages and progress on stderr, shown by severity against a verbosity that callers set per block.

    from skdeploy.log import QUIET, log
    log.debug("range conv1: amax 2.31")        # shown only under VERBOSE: how a stage decided
    log.info("collected 12 histograms")        # shown at the default verbosity, hidden under QUIET
    log.warning("skipped 2 unreadable files")  # shown under QUIET too
    with log.verbosity(QUIET):                 # the previous verbosity comes back when the block ends,
        calibrate_model(...)                   # whether it ends normally or by an exception

Messages quote API argument names in backticks (`calib_images`); a front end with other names for
them (the CLI's flags) rewrites each message for a block with `log.rewriting(...)`.
"""
import contextlib
import warnings
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

DEBUG = 10  # how a stage decided: the builder's configuration, the ranges chosen, the passes applied
INFO = 20  # what a stage is doing: steps, spinners, progress bars, figures on the way
WARNING = 30  # something the user should know even when the result is all they asked for
QUIET = WARNING  # the verbosity that shows warnings only (the CLI's -q and --json)
VERBOSE = DEBUG  # the verbosity that shows everything (the CLI's -v)


def _unchanged(message: str) -> str:
    return message


class Logger:
    """One stderr console, a verbosity and a message rewrite, each changed only for the length of a block."""

    def __init__(self) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.level = INFO
        self.rewrite = _unchanged

    def verbosity(self, level: int) -> contextlib.AbstractContextManager:
        """Show messages of severity `level` and above until the block ends."""
        return self._setting("level", level)

    def rewriting(self, rewrite: Callable[[str], str]) -> contextlib.AbstractContextManager:
        """Pass every message through `rewrite` (str -> str) until the block ends."""
        return self._setting("rewrite", rewrite)

    @contextlib.contextmanager
    def _setting(self, name: str, value: object) -> Iterator["Logger"]:
        previous = getattr(self, name)
        setattr(self, name, value)
        try:
            yield self
        finally:
            setattr(self, name, previous)

    @contextlib.contextmanager
    def python_warnings(self) -> Iterator["Logger"]:
        """Python warnings raised in the block (numpy's RuntimeWarning, Pillow's DecompressionBombWarning) as
        one warning line each, said once, instead of Python's two lines that quote the library's source."""
        from rich.markup import escape

        previous, said = warnings.showwarning, set()

        def show(message, category, filename, lineno, file=None, line=None):
            text = f"{category.__name__}: {(str(message).strip().splitlines() or [''])[0]}"
            if text not in said:
                said.add(text)
                self.warning(escape(text))

        warnings.showwarning = show
        try:
            yield self
        finally:
            warnings.showwarning = previous

    def shows(self, severity: int) -> bool:
        return severity >= self.level

    def debug(self, message: str) -> None:
        """A detail for -v: one unwrapped line each (for grep), as plain text (`[1, 3, 224, 224]` is not markup)."""
        if self.shows(DEBUG):
            self.console.print(f"[dim]debug: {escape(self.rewrite(message))}[/dim]", soft_wrap=True)

    def info(self, message: str) -> None:
        if self.shows(INFO):
            self.console.print(self.rewrite(message))

    def warning(self, message: str) -> None:
        if self.shows(WARNING):
            self.console.print(f"[yellow]warning:[/yellow] {self.rewrite(message)}", soft_wrap=True)  # one line

    @contextlib.contextmanager
    def status(self, message: str) -> Iterator[None]:
        """A spinner for one long step on a terminal; elsewhere the message as an info line."""
        if not self.shows(INFO) or not self.console.is_terminal:
            self.info(message)
            yield
            return
        with self.console.status(self.rewrite(message)):
            yield

    @contextlib.contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[..., None]]:
        """A progress bar at INFO: `with log.progress(n, "calibrating") as advance: advance()` per item."""
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TimeRemainingColumn(), console=self.console, disable=not self.shows(INFO), transient=False)
        with bar:
            task = bar.add_task(self.rewrite(description), total=total)
            yield lambda n=1: bar.advance(task, n)


log = Logger()
