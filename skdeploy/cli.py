"""The `skdeploy` command: a thin layer over the library. Subcommands load on first use, so
`skdeploy --help` starts fast and works on a target without PyTorch."""
import contextlib
import importlib
import importlib.util
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from types import FrameType
from typing import IO, Any

import click

from . import __version__
from .errors import SkdeployError, Terminated

OUT_OF_MEMORY = ("out of memory: the command needs more memory than this process may use (see 'ulimit -v'); "
                 "use smaller batches or inputs")
TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))

# name -> module under skdeploy.commands exposing `command`
COMMANDS = {
    "models": "models",
    "export": "export",
    "optimize": "optimize",
    "calibrate": "calibrate",
    "debug-precision": "debug_precision",
    "build-engine": "build_engine",
    "validate": "validate",
    "bench": "bench",
    "inspect": "inspect",
    "doctor": "doctor",
    "deploy": "deploy",
}


class CommandFailed(click.ClickException):
    """Prints one line, exits with the SkdeployError's code (2 usage, 1 failure)."""

    def __init__(self, message, exit_code) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)


@contextlib.contextmanager
def one_line_usage_errors() -> Iterator[None]:
    """Click's own usage errors (a bad option value, a missing -o, an unknown option or command, a folder
    given as a file) in the one-line form every other error takes, with where the help is; exit code 2.
    `skdeploy` alone still prints the help."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise
    except click.UsageError as exc:
        message = exc.format_message().rstrip(".")
        if message[1:2].islower():
            message = message[0].lower() + message[1:]
        where = exc.ctx.command_path if exc.ctx else "skdeploy"
        raise CommandFailed(f"{message} (see '{where} --help')", exc.exit_code) from None


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM or SIGHUP handler: the command unwinds as on Ctrl-C (a second signal waits for that)."""
    for number in TERMINATING:
        signal.signal(number, signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def terminating_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Terminated while a command runs, so its outputs' transaction removes every
    temporary file and the lock, as KeyboardInterrupt does (by default these signals kill at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, raise_terminated) for number in TERMINATING
                if signal.getsignal(number) is signal.SIG_DFL}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, module in COMMANDS.items() if importlib.util.find_spec(
            f"skdeploy.commands.{module}") is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        try:
            module = importlib.import_module(f"skdeploy.commands.{COMMANDS[name]}")
        except ModuleNotFoundError as exc:
            if exc.name == f"skdeploy.commands.{COMMANDS[name]}":
                return None
            raise
        from .commands import verbosity_options

        return verbosity_options(module.command)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        with one_line_usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command with the library's messages and errors in the CLI's words (flags)."""
        from .commands.flags import in_flags
        from .log import log

        try:
            with log.rewriting(in_flags), log.python_warnings(), one_line_usage_errors(), terminating_signals():
                return super().invoke(ctx)
        except SkdeployError as exc:
            raise CommandFailed(in_flags(str(exc)), exc.exit_code) from None
        except KeyboardInterrupt:  # the outputs' transaction has already removed its temporary files
            raise CommandFailed("interrupted", 130) from None
        except Terminated as exc:  # as KeyboardInterrupt
            raise CommandFailed(f"terminated by {signal.Signals(exc.signum).name}", 128 + exc.signum) from None
        except MemoryError:
            raise CommandFailed(OUT_OF_MEMORY, 1) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # a bug: one line unless debugging
            if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):  # no memory for its stack
                raise CommandFailed(OUT_OF_MEMORY, 1) from None
            if os.environ.get("SKDEPLOY_DEBUG"):
                traceback.print_exc()
            raise CommandFailed(f"internal error: {type(exc).__name__}: {exc} "
                                "(set SKDEPLOY_DEBUG=1 for the traceback)", 1) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="skdeploy")
def cli() -> None:
    """skdeploy: SKNet models from PyTorch to TensorRT engines for Jetson, desktop and RTX GPUs.

    \b
    Pipeline:  export -> (optimize) -> calibrate -> build-engine -> validate -> bench
    \b
    Examples:
      skdeploy models
      skdeploy export -o out/demo.onnx                 # the shipped demo model
      skdeploy build-engine out/demo.onnx --int8 --backend tensorrt-rtx --compute-capability 8.6
      skdeploy validate --candidate engines/demo.engine
    """


def main() -> None:
    for stream in (sys.stdout, sys.stderr):  # a console that cannot show a character shows '?' instead
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    cli(prog_name="skdeploy")
