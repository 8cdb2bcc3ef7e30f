"""The library's words for the CLI's: messages quote API arguments in backticks (`calib_images`,
`precision=int8`, `force=True`), and the CLI shows its flags in their place (--calib-images, --int8,
--force). A flag is the argument's name with dashes, unless FLAGS names it otherwise."""
import re

FLAGS = {  # API argument (or argument=value) -> its flag, where the default spelling is not the flag
    "spec": "--model",
    "candidates": "--candidate",
    "save_reference_to": "--save-reference",
    "batches": "--batch",
    "compute_capabilities": "--compute-capability",
    "formats": "--format",
    "precision=int8": "--int8",
    "precision=fp16": "--fp16",
}
ARGUMENT = re.compile(r"`(\w+)(?:=([^`]*))?`")


def flag_for(argument: str, value: str = None) -> str:
    """`argument` as typed on the command line: its flag, then the value unless it is a switch's True."""
    whole = argument if value is None else f"{argument}={value}"
    if whole in FLAGS:
        return FLAGS[whole]
    flag = FLAGS.get(argument, "--" + argument.replace("_", "-"))
    return flag if value in (None, "True") else f"{flag} {value}"


def in_flags(message: str) -> str:
    """`message` with every quoted API argument replaced by its flag."""
    return ARGUMENT.sub(lambda match: flag_for(match.group(1), match.group(2)), message)
