"""Results on stdout: lines, tables or --json. Messages and progress go to stderr through skdeploy.log.

Results are printed once the command's work is done and its files are written, so a stdout that cannot
take them (a full device, a closed pipe) is one line saying so, and a closed stdout takes nothing."""
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import SkdeployError


class StdoutLost(SkdeployError):
    """stdout refused the result after the work was done."""


class _Stdout:
    """Whatever sys.stdout is now (a test's capture included), written and flushed at once, with a write
    that fails raised as StdoutLost; later writes go nowhere, so the interpreter's last flush cannot fail."""

    def write(self, text: str) -> int:
        stream = sys.stdout
        if stream is None:  # started with stdout closed: no one reads the result
            return len(text)
        try:
            written = stream.write(text)
            stream.flush()
            return written
        except (OSError, ValueError) as exc:
            _silence(stream)
            reason = getattr(exc, "strerror", None) or str(exc)
            raise StdoutLost(f"cannot print the result to stdout ({reason}); the work is done and its files "
                             "are written") from None

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return bool(sys.stdout is not None and sys.stdout.isatty())

    def fileno(self) -> int:
        if sys.stdout is None:
            raise io.UnsupportedOperation("stdout is closed")
        return sys.stdout.fileno()

    @property
    def encoding(self) -> str:
        return getattr(sys.stdout, "encoding", None) or "utf-8"


def _silence(stream) -> None:
    """Point a failed stdout at /dev/null and drop what its buffer holds."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    try:
        stream.flush()
    except (OSError, ValueError):
        pass


out = Console(file=_Stdout(), highlight=False, soft_wrap=True)


def table(title: str, columns: Sequence[str], rows: Iterable[Iterable]) -> None:
    """Cells are text, never Rich markup: `skdeploy[timm]` prints as written."""
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column, justify="right" if column not in (columns[0],) else "left")
    for row in rows:
        grid.add_row(*[escape(str(cell)) for cell in row])
    if not out.is_terminal:  # piped or captured: size the table to its content, not to 80 columns
        out.width = max(out.width, 240)
    out.print(grid)


def emit_json(data: object) -> None:
    out.file.write(json.dumps(data, indent=2, default=str) + "\n")
