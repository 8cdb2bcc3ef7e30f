"""The HTML validation report, opened in a real headless Chromium (Debian's `chromium` package)."""
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.support.validation_helpers import perturbed_copy

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def report(demo_checkpoint_export, tmp_path_factory):
    from skdeploy.report import write_report
    from skdeploy.stages.validate import ValidateSettings, validate

    _, onnx_path = demo_checkpoint_export
    folder = tmp_path_factory.mktemp("report")
    noisy = perturbed_copy(onnx_path, folder / "noisy.onnx", scale=0.01)
    result = validate([onnx_path, noisy], settings=ValidateSettings(limit=64, max_examples=12))
    path = folder / "report.html"
    write_report(path, result)
    return path, result


def chromium(*args, profile):
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_report_is_self_contained(report):
    path, _ = report
    text = path.read_text()
    assert not re.search(r"""(src|href)=["'](https?:|//)""", text)
    assert text.count("<svg") == 4


def test_report_renders_in_chromium(report, tmp_path):
    path, result = report
    noisy = result.candidates[1]
    assert noisy.disagreements > 0 and not noisy.passed
    dom = chromium("--dump-dom", path.as_uri(), profile=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    images = len(noisy.examples) + len(result.candidates[0].examples)
    # the page's one script counts images the browser actually decoded
    assert f'data-images-decoded="{images}"' in html
    assert html.count("<svg") == 4 and html.count("<rect") > 20
    assert re.search(r"<td>demo\.onnx</td>.*?PASS", html) and re.search(r"<td>noisy\.onnx</td>.*?FAIL", html)
    assert "FP32: " in html and "this: " in html

    shot = tmp_path / "report.png"
    run = chromium(f"--screenshot={shot}", "--window-size=1400,1800", path.as_uri(), profile=tmp_path / "profile-png")
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (1800, 1400)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    assert np.sum((red > 180) & (green < 80) & (blue < 80)) > 50  # the FAIL badges
    assert np.sum((green > 100) & (red < 60) & (blue < 90)) > 50  # the PASS badge
    assert np.sum((blue > 180) & (red < 40)) > 500  # histogram bars
