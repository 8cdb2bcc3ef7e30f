import click

from .. import ui
from . import json_option


@click.command("models")
@json_option
def command(as_json) -> None:
    """List every model name with parameters, input shape and whether weights ship.

    \b
    Examples:
      skdeploy models
      skdeploy models --json
    """
    from ..models import list_models

    rows = list_models()
    if as_json:
        ui.emit_json(rows)
        return
    ui.table("skdeploy models", ["name", "params", "input", "classes", "weights", "description"], [
        (r["name"], f"{r['params'] / 1e6:.2f}M" if r["params"] else "n/a", "x".join(map(str, r["input_shape"])),
         r["num_classes"], "shipped" if r["weights"] else "-", r["description"]) for r in rows])
