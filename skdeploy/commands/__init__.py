"""One module per CLI command; each exposes `command`, a click command over the library API."""
import functools

import click

from ..log import QUIET, VERBOSE, log


def verbosity_options(command: click.Command) -> click.Command:
    """-v/--verbose (debug lines too: the builder's configuration, the ranges chosen, the passes applied) and
    -q/--quiet (warnings only) on `command`, for that command alone. The CLI adds them to every command."""
    if getattr(command, "has_verbosity_options", False):
        return command
    command.params += [
        click.Option(["-v", "--verbose"], is_flag=True, help="Also show how each stage decided (debug lines)."),
        click.Option(["-q", "--quiet"], is_flag=True, help="Show warnings and errors only."),
    ]
    run = command.callback

    @functools.wraps(run)
    def with_verbosity(*args, verbose: bool = False, quiet: bool = False, **kwargs):
        if verbose and quiet:
            raise click.UsageError("-v/--verbose and -q/--quiet exclude each other; choose one")
        with log.verbosity(VERBOSE if verbose else QUIET if quiet else log.level):
            return run(*args, **kwargs)

    command.callback = with_verbosity
    command.has_verbosity_options = True
    return command


def json_option(func):
    """--json: machine-readable result on stdout; stderr keeps only warnings (debug lines too under -v), for
    this command alone."""

    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (no progress).")
    @functools.wraps(func)
    def wrapper(*args, as_json: bool = False, **kwargs):
        with log.verbosity(QUIET if as_json and log.level > VERBOSE else log.level):
            return func(*args, as_json=as_json, **kwargs)

    return wrapper


def verify_option(func):
    """--no-verify: read artifacts without checking them against their manifests' sha256."""

    @click.option("--no-verify", is_flag=True, help="Skip checking each artifact's sha256 against its manifest.")
    @functools.wraps(func)
    def wrapper(*args, no_verify: bool = False, **kwargs):
        from ..manifest import hash_checks

        with hash_checks(not no_verify):
            return func(*args, **kwargs)

    return wrapper


def precision_options(int8: str, fp16: str):
    """--int8 and --fp16 (their help texts), given to the command as one `precision` argument: "int8",
    "fp16" or None. Both at once contradict each other and are refused."""

    def decorate(func):
        @click.option("--int8", is_flag=True, help=int8)
        @click.option("--fp16", is_flag=True, help=fp16)
        @functools.wraps(func)
        def wrapper(*args, int8: bool = False, fp16: bool = False, **kwargs):
            if int8 and fp16:
                raise click.UsageError("--int8 and --fp16 exclude each other; choose one")
            return func(*args, precision="int8" if int8 else "fp16" if fp16 else None, **kwargs)

        return wrapper

    return decorate


def force_option(func):
    return click.option("--force", is_flag=True, help="Overwrite existing outputs.")(func)


def raw_input_options(func):
    """--raw-input, --layout, --raw-dtype: preprocessing inside the graph, which then takes raw pixels."""
    func = click.option("--raw-dtype", type=click.Choice(["uint8", "float32"]), default="uint8", show_default=True,
                        help="Raw pixels as uint8, or float32 0-255 (DeepStream feeds float).")(func)
    func = click.option("--layout", type=click.Choice(["nchw", "nhwc"]), default="nchw", show_default=True,
                        help="Layout of the raw input.")(func)
    return click.option("--raw-input", is_flag=True,
                        help="Put scale, mean and std into the graph: the model takes raw pixels 0-255.")(func)


def raw_input_settings(raw_input, layout, raw_dtype) -> dict:
    """The flags as the library's settings; a layout or dtype without --raw-input is a usage error."""
    if not raw_input and (layout != "nchw" or raw_dtype != "uint8"):
        from ..errors import UsageError

        raise UsageError("--layout and --raw-dtype apply to a raw input: add --raw-input")
    return {"raw_input": raw_input, "layout": layout.upper(), "raw_dtype": raw_dtype}


def preprocessing_options(func):
    """--mean, --std, --resize, --crop, --channel-order: the preprocessing of an ONNX whose manifest records none."""
    from .flags import FINITE_FLOATS

    for decorator in reversed((
            click.option("--mean", type=FINITE_FLOATS,
                         help="ONNX without recorded preprocessing: per-channel mean, e.g. 0.485,0.456,0.406."),
            click.option("--std", type=FINITE_FLOATS,
                         help="ONNX without recorded preprocessing: per-channel std, e.g. 0.229,0.224,0.225."),
            click.option("--resize", type=int,
                         help="ONNX without recorded preprocessing: shorter side before the crop."),
            click.option("--crop",
                         help="ONNX without recorded preprocessing: crop N or HxW (default: the input size)."),
            click.option("--channel-order", type=click.Choice(["RGB", "BGR", "GRAY"]),
                         help="ONNX without recorded preprocessing: channel order of the input."))):
        func = decorator(func)
    return func


def preprocessing_settings(mean, std, resize, crop, channel_order) -> dict:
    """The flags as the library's `preprocessing` option (calib.convert.PREPROCESSING_OPTIONS)."""
    from ..errors import UsageError

    size = None
    if crop:
        parts = crop.lower().split("x")
        if not all(p.isdigit() and int(p) > 0 for p in parts) or len(parts) not in (1, 2):
            raise UsageError(f"--crop takes N or HxW, e.g. 224 or 224x224; got {crop!r}")
        size = (int(parts[0]), int(parts[-1]))
    return {"mean": mean, "std": std, "resize": resize, "crop": size, "channel_order": channel_order}
