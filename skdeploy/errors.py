"""Errors that the CLI turns into one line on stderr and an exit code (2 usage, 1 failure).

Messages speak the API: they quote argument names in backticks (`calib_images`, `precision=int8`,
`force=True`), which the CLI shows as its flags (--calib-images, --int8, --force)."""
import numbers


class SkdeployError(Exception):
    """A failure the user can act on; its message is the whole story."""

    exit_code = 1


class UsageError(SkdeployError):
    """The command line or its inputs are wrong."""

    exit_code = 2


class MissingDependency(SkdeployError):
    """An optional module is not installed; the message names the extra that brings it."""


def require_finite(**values: object) -> None:
    """Refuse NaN and infinite numbers among `values` (None means unset and passes): a NaN slips through
    every `<` and `>` check, so settings call this before their range checks."""
    import math

    for name, value in values.items():
        if value is not None and not math.isfinite(value):
            raise UsageError(f"`{name}` must be a finite number, got {value}")


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like KeyboardInterrupt, so every output transaction removes its
    temporary files on the way out (the CLI installs the handlers and exits 128 + the signal's number)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# what each annotated type accepts, and how a message names it (bool is no number, a string no list)
_FIELD_KINDS = {int: ((numbers.Integral,), "an integer"), float: ((numbers.Real,), "a number"),
                str: ((str,), "a string"),
                bool: ((bool,), "True or False"), tuple: ((tuple, list), "a list"), list: ((tuple, list), "a list"),
                dict: ((dict,), "a dict")}


def check_field_types(settings: object) -> None:
    """Each field of the settings dataclass `settings` holds its annotated type (None where its default is
    None): a string where a number belongs would fail later as a raw TypeError, and 3.7 or True as a
    count, or a bare string as a list, would be taken silently. Settings call this before their range checks."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(type(settings))
    for field in dataclasses.fields(settings):
        hint, optional = hints.get(field.name), field.default is None
        arguments = typing.get_args(hint)
        if type(None) in arguments:  # `int | None`: None allowed, else an int
            optional, hint = True, next((a for a in arguments if a is not type(None)), None)
        value, kind = getattr(settings, field.name), _FIELD_KINDS.get(hint)
        if kind is None or value is None and optional:
            continue
        accepted, described = kind
        if not isinstance(value, accepted) or isinstance(value, bool) and bool not in accepted:
            raise UsageError(f"`{field.name}` must be {described}, got {value!r} ({type(value).__name__})")


def memory_limit() -> int:
    """Bytes this process may use at most: the machine's memory, or less under `ulimit -v`."""
    import os
    import resource

    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return min(limit, soft) if soft != resource.RLIM_INFINITY else limit


def require_memory(nbytes: int, what: str) -> None:
    """Refuse, before allocating, what could not fit in memory even alone (checked where a size comes from
    the user or a file's header): one line instead of a MemoryError or the kernel's OOM killer."""
    limit = memory_limit()
    if nbytes > limit:
        raise UsageError(f"{what} needs {nbytes / 2 ** 30:.3g} GiB, more than the {limit / 2 ** 30:.3g} GiB of memory "
                         "this process may use")
