"""Errors that the CLI turns into one line on stderr and an exit code (2 usage, 1 failure).

Messages speak the API: they quote argument names in backticks (`calib_images`, `precision=int8`,
`force=True`), which the CLI shows as its flags (--calib-images, --int8, --force)."""


class SkdeployError(Exception):
    """A failure the user can act on; its message is the whole story."""

    exit_code = 1


class UsageError(SkdeployError):
    """The command line or its inputs are wrong."""

    exit_code = 2


class MissingDependency(SkdeployError):
    """An optional module is not installed; the message names the extra that brings it."""


def require_finite(**values) -> None:
    """Refuse NaN and infinite numbers among `values` (None means unset and passes): a NaN slips through
    every `<` and `>` check, so settings call this before their range checks."""
    import math

    for name, value in values.items():
        if value is not None and not math.isfinite(value):
            raise UsageError(f"`{name}` must be a finite number, got {value}")
