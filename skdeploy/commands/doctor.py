import click

from .. import ui
from . import json_option


@click.command("doctor")
@json_option
def command(as_json) -> None:
    """Show which TensorRT, CUDA memory backend and GPUs this machine offers, and what to fix.

    On a Jetson it says whether JetPack's TensorRT (a system package) is visible from this Python.

    \b
    Examples:
      skdeploy doctor
      skdeploy doctor --json
    """
    from ..runners.doctor import diagnose

    report = diagnose()
    if as_json:
        ui.emit_json(report)
        return
    python, where = report["python"], report["platform"]
    venv = python["venv"]
    rows = [("python", f"{python['version']} ({python['executable']})"),
            ("virtual environment", "no" if not venv["active"] else
             f"yes, system site-packages {'visible' if venv['system_site_packages'] else 'hidden'}"),
            ("platform", f"{where['system']} {where['machine']}"
             + (f", Jetson L4T {where['jetson_l4t']}" if where["jetson_l4t"] else ""))]
    for backend, info in report["backends"].items():
        if not info["installed"]:
            text = "not installed"
        elif info.get("error"):
            text = f"broken: {info['error']}"
        else:
            text = f"{info['version']} ({'system package' if info['system_package'] else 'pip'}, {info['path']})"
        rows.append((backend, text))
    for name, version in report["cuda"].items():
        rows.append((name, version or "not installed"))
    gpus = report["gpus"]
    rows += [(f"gpu {gpu['index']}", f"{gpu['name']} (compute capability {gpu['compute_capability']})")
             for gpu in gpus["devices"]]
    if gpus["error"]:
        rows.append(("gpu", gpus["error"]))
    ui.table("skdeploy doctor", ["item", "found"], rows)
    for hint in report["advice"]:
        ui.out.print(f"- {hint}", markup=False)
