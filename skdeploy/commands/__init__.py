"""One module per CLI command; each exposes `command`, a click command over the library API."""
import functools

import click

from .. import ui


def json_option(func):
    """--json: machine-readable result on stdout, no progress output."""

    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (no progress).")
    @functools.wraps(func)
    def wrapper(*args, as_json=False, **kwargs):
        ui.quiet = as_json
        return func(*args, as_json=as_json, **kwargs)

    return wrapper


def force_option(func):
    return click.option("--force", is_flag=True, help="Overwrite existing outputs.")(func)
