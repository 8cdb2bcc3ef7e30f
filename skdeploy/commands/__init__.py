"""One module per CLI command; each exposes `command`, a click command over the library API."""
import functools

import click

from ..log import QUIET, log


def json_option(func):
    """--json: machine-readable result on stdout; stderr keeps only warnings, for this command alone."""

    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (no progress).")
    @functools.wraps(func)
    def wrapper(*args, as_json=False, **kwargs):
        with log.verbosity(QUIET if as_json else log.level):
            return func(*args, as_json=as_json, **kwargs)

    return wrapper


def verify_option(func):
    """--no-verify: read artifacts without checking them against their manifests' sha256."""

    @click.option("--no-verify", is_flag=True, help="Skip checking each artifact's sha256 against its manifest.")
    @functools.wraps(func)
    def wrapper(*args, no_verify=False, **kwargs):
        from ..manifest import hash_checks

        with hash_checks(not no_verify):
            return func(*args, **kwargs)

    return wrapper


def force_option(func):
    return click.option("--force", is_flag=True, help="Overwrite existing outputs.")(func)
