"""The validation report as one self-contained HTML page: summary table, verdicts, and per candidate
an error histogram, per-class agreement and the images where it disagrees with FP32.

Plots are inline SVG drawn here; images are inline PNG made with Pillow. No network, no scripts
beyond one line that records how many images the browser decoded (tests read it).
"""
from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .fileio import write_text_atomic

if TYPE_CHECKING:
    from PIL import Image

    from .fileio import PathLike

_STYLE = """
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:24px;color:#1d232a;background:#fff}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d8dee4;padding-bottom:4px}
h3{font-size:14px;margin:12px 0 4px;color:#444}
.meta{color:#57606a;font-size:13px;margin:2px 0}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;font-size:13px;color:#fff}
.pass{background:#1a7f37} .fail{background:#cf222e}
table{border-collapse:collapse;font-size:13px;margin-top:8px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right;white-space:nowrap} th{background:#f6f8fa}
td:first-child,th:first-child{text-align:left}
td.bad{color:#cf222e;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:24px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;text-align:center;font-size:11px;width:104px}
figure img{width:96px;height:96px;image-rendering:pixelated;border:1px solid #d0d7de}
svg text{font-family:system-ui,'DejaVu Sans',sans-serif;font-size:10px;fill:#333}
"""


def _escape(value) -> str:
    return html.escape(str(value))


def _percent(value) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _number(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.3g}"


def bar_chart(values: Sequence[float | None], labels: Sequence[str], title: str, y_max: float | None = None,
              threshold: float | None = None, width: int = 460, height: int = 220, color: str = "#0969da",
              y_label: Callable[[float], str] = lambda v: f"{v:g}") -> str:
    """A vertical bar chart as an SVG string; None values are drawn as gaps."""
    left, right, top, bottom = 46, 10, 24, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    present = [v for v in values if v is not None]
    y_max = y_max or (max(present) if present and max(present) > 0 else 1.0)
    slot = plot_w / max(len(values), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{_escape(title)}">',
             f'<text x="{left}" y="14" style="font-size:12px;font-weight:600">{_escape(title)}</text>']
    for tick in range(5):
        value = y_max * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaeef2"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{_escape(y_label(value))}</text>')
    for index, (value, label) in enumerate(zip(values, labels, strict=True)):
        x = left + index * slot
        if value is not None:
            bar = plot_h * min(value, y_max) / y_max
            parts.append(f'<rect x="{x + slot * 0.12:.1f}" y="{top + plot_h - bar:.1f}" width="{slot * 0.76:.1f}" '
                         f'height="{bar:.1f}" fill="{color}"><title>{_escape(label)}: {value:g}</title></rect>')
        if len(labels) <= 12 or index % max(1, len(labels) // 8) == 0:
            cx, cy = x + slot / 2, top + plot_h + 10
            parts.append(f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" '
                         f'transform="rotate(-35 {cx:.1f} {cy:.1f})">{_escape(label)}</text>')
    if threshold is not None:
        y = top + plot_h - plot_h * min(threshold, y_max) / y_max
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#cf222e" '
                     f'stroke-dasharray="4 3"/>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#57606a"/>')
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#57606a"/>')
    parts.append("</svg>")
    return "".join(parts)


def png_data_uri(image: Image.Image, size: int = 96) -> str:
    """A PIL image scaled (nearest) to `size` pixels square, as a data: URI."""
    from PIL import Image

    image = image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode)
    image = image.resize((size, size), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _class_name(names, index):
    if index is None:
        return "?"
    return names[index] if names and index < len(names) else str(index)


def _summary_rows(result) -> list:
    reference = result.reference
    kind = "pytorch" if reference["kind"] == "pytorch" else "saved"
    rows = [[_escape(f"FP32 reference: {reference['source']}"), kind,
             "fp32", _percent(reference.get("top1")), _percent(reference.get("top5")), "", "100.00%", "100.00%",
             "0", "0", "1", "inf", "reference"]]
    for candidate in result.candidates:
        m = candidate.metrics
        failed = {check["name"] for check in candidate.failed_checks()}
        verdict = f'<span class="badge {"pass" if candidate.passed else "fail"}">' \
                  f'{"PASS" if candidate.passed else "FAIL"}</span>'
        drop = f"{m['top1_drop']:+.2f}" if "top1_drop" in m else "n/a"
        rows.append([_escape(candidate.name), _escape(candidate.runner), _escape(candidate.precision),
                     _percent(m.get("top1")), _percent(m.get("top5")),
                     (drop, "top-1 drop (points)" in failed), (_percent(m["agreement"]), "top-1 agreement" in failed),
                     _percent(m["top5_overlap"]), _number(m["max_abs"]), _number(m["mean_abs"]),
                     f"{m['cosine_mean']:.6f}", _number(m["snr_db"]), verdict])
    return rows


def _table(columns, rows) -> str:
    head = "".join(f"<th>{_escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            text, bad = cell if isinstance(cell, tuple) else (cell, False)
            cells.append(f'<td class="bad">{text}</td>' if bad else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _candidate_section(candidate, names, data, thresholds) -> str:
    histogram = candidate.error_histogram
    edges = histogram["edges"]
    labels = [f"{edges[i + 1]:.0e}" for i in range(len(histogram["counts"]))]
    per_class = candidate.per_class_agreement
    parts = [f'<h2 id="{_escape(candidate.name)}">{_escape(candidate.name)} '
             f'<span class="badge {"pass" if candidate.passed else "fail"}">'
             f'{"PASS" if candidate.passed else "FAIL"}</span></h2>',
             f'<p class="meta">{_escape(candidate.runner)}, {_escape(candidate.precision)}, '
             f'{candidate.seconds} s; {candidate.disagreements} of {len(data)} samples disagree with '
             "FP32 on top-1</p>",
             _layers_note(candidate),
             "<ul class=\"meta\">" + "".join(
                 f"<li>{_escape(text)} — {'pass' if passed else '<b>fail</b>'}</li>"
                 for text, passed in candidate.described_checks()) + "</ul>",
             '<div class="plots">',
             bar_chart(histogram["counts"], labels, "|logit error| histogram (logits per bin, upper edge)",
                       y_label=lambda v: f"{v:.0f}"),
             bar_chart([None if v is None else v for v in per_class], [_class_name(names, i) for i in
                       range(len(per_class))], "top-1 agreement with FP32 per FP32-predicted class", y_max=1.0,
                       threshold=thresholds.min_agreement, color="#8250df", y_label=lambda v: f"{v:.2f}"),
             "</div>"]
    if candidate.examples:
        shown = len(candidate.examples)
        parts.append(f"<h3>Where it disagrees with FP32 (first {shown} of {candidate.disagreements})</h3>")
        figures = []
        for example in candidate.examples:
            caption = (f"#{example['index']}<br>FP32: {_escape(_class_name(names, example['reference']))}<br>"
                       f"this: {_escape(_class_name(names, example['candidate']))}")
            if example["label"] is not None:
                caption += f"<br>label: {_escape(_class_name(names, example['label']))}"
            image = png_data_uri(data.picture(example["index"]))
            figures.append(f'<figure><img alt="sample {example["index"]}" src="{image}">'
                           f"<figcaption>{caption}</figcaption></figure>")
        parts.append('<div class="gallery">' + "".join(figures) + "</div>")
    else:
        parts.append("<h3>No sample disagrees with FP32 on top-1.</h3>")
    return "".join(parts)


def _layers_note(candidate) -> str:
    """An engine candidate's layer summary from its sidecar (what TensorRT built: kernels, INT8 convolutions,
    memory); nothing for other candidates."""
    from .engine.layers import summary_line
    from .errors import SkdeployError
    from .manifest import load_manifest

    try:
        manifest = load_manifest(candidate.path, required=False, verify=False) if candidate.path else None
    except SkdeployError:
        return ""
    summary = ((manifest or {}).get("engine") or {}).get("layers")
    if not isinstance(summary, dict):
        return ""
    unrealized = ", ".join(entry["conv"] for entry in summary.get("unrealized_int8") or [])
    return (f'<p class="meta">engine layers: {_escape(summary_line(summary))}'
            + (f"; quantized in the ONNX but not INT8 in the engine: {_escape(unrealized)}" if unrealized else "")
            + "</p>")


def render_report(result: Any) -> str:
    """The HTML page for a validate() result (a ValidationResult, with the samples it ran on)."""
    names = result.data.get("class_names") or None
    thresholds = result.thresholds
    verdict = "pass" if result.passed else "fail"
    columns = ["model", "runner", "precision", "top-1", "top-5", "top-1 drop (pts)", "agreement", "top-5 overlap",
               "max |err|", "mean |err|", "cosine", "SNR dB", "verdict"]
    body = [f'<h1>skdeploy validation <span class="badge {verdict}">{verdict.upper()}</span></h1>',
            f'<p class="meta">reference: {_escape(result.reference["source"])}</p>',
            f'<p class="meta">data: {_escape(result.data["source"])}, {result.data["count"]} samples'
            f'{", labelled" if result.data["labels"] else ", no labels"}; inputs sha256 '
            f'{result.data["inputs_sha256"][:16]}…</p>',
            f'<p class="meta">thresholds: top-1 agreement ≥ {thresholds.min_agreement:g}, top-1 drop ≤ '
            f'{thresholds.max_top1_drop:g} points</p>',
            _table(columns, _summary_rows(result))]
    body += [_candidate_section(c, names, result.samples, thresholds) for c in result.candidates]
    script = ("<script>addEventListener('load',()=>{document.body.dataset.imagesDecoded="
              "[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length})</script>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>skdeploy validation</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}{script}</body></html>\n")


def write_report(path: PathLike, result: Any) -> None:
    write_text_atomic(path, render_report(result))
