"""Every default a command's option states is its settings dataclass's default: the CLI and the library
give the same result for the same (absent) choices. Options without a default of their own pass nothing,
so the dataclass's applies."""
import dataclasses
import importlib
import inspect

import click
import pytest

from skdeploy.bench import BenchSettings
from skdeploy.calib.sensitivity import PrecisionSettings
from skdeploy.commands.bench import parse_batches
from skdeploy.deployment import DeploySettings
from skdeploy.stages.build import BuildSettings
from skdeploy.stages.calibrate import CalibrationSettings
from skdeploy.stages.export import ExportSettings
from skdeploy.stages.optimize import optimize_onnx
from skdeploy.stages.validate import ValidateSettings

SETTINGS = {"export": ExportSettings, "calibrate": CalibrationSettings, "build_engine": BuildSettings,
            "validate": ValidateSettings, "bench": BenchSettings, "deploy": DeploySettings, "optimize": optimize_onnx,
            "debug_precision": PrecisionSettings}


def library_defaults(settings) -> dict:
    if not dataclasses.is_dataclass(settings):
        return {name: parameter.default for name, parameter in inspect.signature(settings).parameters.items()
                if parameter.default is not inspect.Parameter.empty}
    fields = dataclasses.fields(settings)
    return {f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory() for f in fields
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}


UNSET = getattr(click.core, "UNSET", None)  # click 8.3's "no default"; older versions use None
PARSED = {("bench", "batches"): parse_batches}  # options the command parses itself from text


def stated_defaults(module: str) -> dict:
    """{option name: its default as the command passes it on} for options that state one."""
    command = importlib.import_module(f"skdeploy.commands.{module}").command
    context = click.Context(command)
    stated = {}
    for param in command.params:
        if isinstance(param, click.Option) and not param.is_flag and param.default not in (None, UNSET):
            stated[param.name] = PARSED.get((module, param.name), lambda value: value)(param.get_default(context))
    return stated


def same(cli, library) -> bool:
    if isinstance(cli, str) and isinstance(library, str):
        return cli.casefold() == library.casefold()  # choices are typed lower case (nchw), settings name NCHW
    if isinstance(cli, (list, tuple)) and isinstance(library, (list, tuple)):
        return tuple(cli) == tuple(library)
    return cli == library


@pytest.mark.parametrize("module", sorted(SETTINGS))
def test_stated_cli_defaults_are_the_settings_defaults(module):
    library = library_defaults(SETTINGS[module])
    compared = {name: (value, library[name]) for name, value in stated_defaults(module).items() if name in library}
    assert {name: pair for name, pair in compared.items() if not same(*pair)} == {}


def test_the_comparison_covers_the_restated_defaults():
    """Some two dozen options restate a settings default; a rename on either side must not drop them silently."""
    compared = [name for module in SETTINGS for name in stated_defaults(module)
                if name in library_defaults(SETTINGS[module])]
    assert len(compared) >= 25
