"""The library's words for the CLI's: messages quote API arguments in backticks (`calib_images`,
`precision=int8`, `force=True`), and the CLI shows its flags in their place (--calib-images, --int8,
--force). A flag is the argument's name with dashes, unless FLAGS names it otherwise.

The parameter types every command's number options use live here too: a float option refuses NaN and
infinities as it is parsed, before any file is read, since a NaN passes every range check after it."""
import math
import re

import click

FLAGS = {  # API argument (or argument=value) -> its flag, where the default spelling is not the flag
    "spec": "--model",
    "candidates": "--candidate",
    "save_reference_to": "--save-reference",
    "batches": "--batch",
    "compute_capabilities": "--compute-capability",
    "formats": "--format",
    "precision=int8": "--int8",
    "precision=fp16": "--fp16",
    "verify=False": "--no-verify",
    "sizes": "--dim",
}
ARGUMENT = re.compile(r"`(\w+)(?:=([^`]*))?`")


def flag_for(argument: str, value: str | None = None) -> str:
    """`argument` as typed on the command line: its flag, then the value unless it is a switch's True."""
    whole = argument if value is None else f"{argument}={value}"
    if whole in FLAGS:
        return FLAGS[whole]
    flag = FLAGS.get(argument, "--" + argument.replace("_", "-"))
    return flag if value in (None, "True") else f"{flag} {value}"


def in_flags(message: str) -> str:
    """`message` with every quoted API argument replaced by its flag."""
    return ARGUMENT.sub(lambda match: flag_for(match.group(1), match.group(2)), message)


class FiniteFloat(click.ParamType):
    """A float; NaN and infinities are usage errors."""

    name = "float"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            raise click.UsageError(f"{flag_for(param.name)} must be a finite number, got {value}", ctx)
        return number


class FiniteFloats(click.ParamType):
    """Comma-separated finite floats, e.g. a per-channel mean: '0.485,0.456,0.406' -> [0.485, 0.456, 0.406]."""

    name = "floats"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            numbers = [float(part) for part in str(value).replace(" ", "").split(",")]
        except ValueError:
            raise click.UsageError(f"{flag_for(param.name)} takes comma-separated numbers, e.g. 0.485,0.456,0.406; "
                                   f"got {value!r}", ctx) from None
        if not all(math.isfinite(number) for number in numbers):
            raise click.UsageError(f"{flag_for(param.name)} must be finite numbers, got {value!r}", ctx)
        return numbers


FINITE_FLOAT = FiniteFloat()
FINITE_FLOATS = FiniteFloats()
