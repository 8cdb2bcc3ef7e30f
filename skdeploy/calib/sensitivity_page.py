"""The debug-precision report as one self-contained HTML page: SNR along the network's depth (inline SVG),
the minimal set highlighted, the search's steps and the ranked table. No scripts, no network."""
import html

from ..fileio import PathLike, write_text_atomic

STYLE = """
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:24px;color:#1d232a}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:24px 0 8px;border-bottom:1px solid #d8dee4}
.meta{color:#57606a;font-size:13px;margin:2px 0} code{background:#f6f8fa;padding:2px 4px}
table{border-collapse:collapse;font-size:13px} th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right}
th{background:#f6f8fa} td.name,th.name{text-align:left} tr.wide td{background:#fff1e5;font-weight:600}
svg text{font-size:10px;fill:#333}
"""
ACCUMULATED, ISOLATED, WIDE = "#0969da", "#8250df", "#cf222e"


def _escape(value) -> str:
    return html.escape(str(value))


def _snr(value) -> str:
    return "exact" if value is None else f"{value:.1f}"


def depth_plot(layers: list, wide: set, width: int = 860, height: int = 300) -> str:
    """Accumulated and isolated SNR (dB) per layer in graph order, as an SVG; layers in `wide` get a red ring."""
    left, right, top, bottom = 48, 12, 28, 36
    rows = sorted(layers, key=lambda row: row["depth"])
    values = [row[kind]["snr_db"] for row in rows for kind in ("accumulated", "isolated")
              if row[kind]["snr_db"] is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    low, high = 10 * (low // 10), 10 * (high // 10 + 1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(depth):
        return left + plot_w * (depth + 0.5) / max(len(rows), 1)

    def y(value):
        return top + plot_h * (1 - (min(value, high) - low) / (high - low))

    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
              'aria-label="SNR along the depth">'),
             (f'<text x="{left}" y="14" style="font-size:12px;font-weight:600">SNR vs FP32 (dB) along the depth: '
              f'<tspan fill="{ACCUMULATED}">accumulated</tspan>, <tspan fill="{ISOLATED}">isolated</tspan>, '
              f'<tspan fill="{WIDE}">kept wide</tspan></text>')]
    for tick in range(int(low), int(high) + 1, 10):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 3:.1f}" text-anchor="end">{tick}</text>')
    for kind, color in (("accumulated", ACCUMULATED), ("isolated", ISOLATED)):
        points = [(x(row["depth"]), y(row[kind]["snr_db"])) for row in rows if row[kind]["snr_db"] is not None]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="'
                     + " ".join(f"{px:.1f},{py:.1f}" for px, py in points) + '"/>')
        for row in rows:
            if row[kind]["snr_db"] is None:
                continue
            ring = f' stroke="{WIDE}" stroke-width="2.5"' if row["name"] in wide else ""
            parts.append(f'<circle cx="{x(row["depth"]):.1f}" cy="{y(row[kind]["snr_db"]):.1f}" r="3.5" '
                         f'fill="{color}"{ring} data-wide="{int(row["name"] in wide)}">'
                         f'<title>{_escape(row["name"])} ({kind}: {row[kind]["snr_db"]:.1f} dB)</title></circle>')
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 8}" text-anchor="middle">quantized layers in graph '
                 f'order (0 = nearest the input, {len(rows) - 1} = nearest the output)</text></svg>')
    return "".join(parts)


def render_page(record: dict) -> str:
    search = record["search"]
    wide = set(search["minimal"] or ())
    steps = "".join(f'<tr><td class="name">{_escape(step["action"])}</td><td class="name">'
                    f'{_escape(step["layer"] or "(every layer INT8)")}</td><td>{step["agreement"]:.2%}</td></tr>'
                    for step in search["steps"])
    table = "".join(
        f'<tr class="{"wide" if row["name"] in wide else ""}"><td>{row["rank"]}</td><td class="name">'
        f'{_escape(row["name"])}</td><td class="name">{row["op"]}</td><td>{row["depth"]}</td>'
        f'<td>{_snr(row["accumulated"]["snr_db"])}</td><td>{row["accumulated"]["cosine"]:.5f}</td>'
        f'<td>{_snr(row["isolated"]["snr_db"])}</td><td>{row["isolated"]["cosine"]:.5f}</td>'
        f'<td>{row["agreement_gain"]:+.2%}</td></tr>' for row in record["layers"])
    if search["minimal"] is None:
        outcome = (f"no set reaches {record['min_agreement']:.2%}: with every layer in {record['fallback']} the "
                   f"agreement is {search['agreement']:.2%}")
    elif not search["minimal"]:
        outcome = f"every layer can stay INT8: agreement {record['agreement']:.2%} meets {record['min_agreement']:.2%}"
    else:
        outcome = (f"keep {len(search['minimal'])} layer(s) in {record['fallback']} for agreement "
                   f"{search['agreement']:.2%}: <code>{_escape(record['command'])}</code>")
    data = record["data"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>debug-precision: {_escape(record['candidate'])}</title>
<style>{STYLE}</style></head><body>
<h1>Which layers cost accuracy: {_escape(record['candidate'])}</h1>
<p class="meta">against {_escape(record['fp32'])} on {data['samples']} samples of {_escape(data['path'])}
({_escape(data['split'])}, seed {data['seed']}); top-1 agreement {record['agreement']:.2%}, target
{record['min_agreement']:.2%}</p>
<p>{outcome}</p>
<h2>SNR along the depth</h2>
{depth_plot(record['layers'], wide)}
<h2>Search for the fewest layers to keep wide</h2>
<table><tr><th class="name">step</th><th class="name">layer</th><th>agreement</th></tr>{steps}</table>
<h2>Layers, ranked</h2>
<p class="meta">accumulated: the INT8 model's output of the layer vs FP32; isolated: the layer alone quantized, fed
FP32 inputs; gain: top-1 agreement won by keeping only that layer in {record['fallback']}.</p>
<table><tr><th>rank</th><th class="name">ONNX node</th><th class="name">op</th><th>depth</th>
<th>accumulated SNR dB</th><th>accumulated cosine</th><th>isolated SNR dB</th><th>isolated cosine</th>
<th>agreement gain</th></tr>{table}</table>
</body></html>
"""


def write_page(path: PathLike, record: dict) -> None:
    write_text_atomic(path, render_page(record))
