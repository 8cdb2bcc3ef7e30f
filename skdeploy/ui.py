"""Results on stdout: lines, tables or --json. Messages and progress go to stderr through skdeploy.log."""
import json
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)


def table(title: str, columns, rows) -> None:
    """Cells are text, never Rich markup: `skdeploy[timm]` prints as written."""
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column, justify="right" if column not in (columns[0],) else "left")
    for row in rows:
        grid.add_row(*[escape(str(cell)) for cell in row])
    if not out.is_terminal:  # piped or captured: size the table to its content, not to 80 columns
        out.width = max(out.width, 240)
    out.print(grid)


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
