"""Terminal output: progress and messages on stderr, results (tables or --json) on stdout."""
import contextlib
import json
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)
quiet = False


def info(message: str) -> None:
    if not quiet:
        err.print(message)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}")


@contextlib.contextmanager
def status(message: str):
    """A spinner for one long step; silent under --json/--quiet."""
    if quiet or not err.is_terminal:
        info(message)
        yield
        return
    with err.status(message):
        yield


def progress(total: int, description: str):
    """A progress bar on stderr (a rich Progress task); use as `with progress(n, 'x') as advance:`."""
    return _Bar(total, description)


class _Bar:
    def __init__(self, total, description):
        self.total, self.description = total, description
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=err, disable=quiet,
                            transient=False)

    def __enter__(self):
        self.bar.__enter__()
        self.task = self.bar.add_task(self.description, total=self.total)
        return lambda n=1: self.bar.advance(self.task, n)

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)


def table(title: str, columns, rows) -> None:
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column, justify="right" if column not in (columns[0],) else "left")
    for row in rows:
        grid.add_row(*[str(cell) for cell in row])
    if not out.is_terminal:  # piped or captured: size the table to its content, not to 80 columns
        out.width = max(out.width, 240)
    out.print(grid)


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
