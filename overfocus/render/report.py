"""The audit report as ONE self-contained HTML file.

Images are embedded as base64 PNG data URIs, the CSS is inline, there is no JavaScript, and a
Content-Security-Policy forbids every network fetch, so the file renders the same offline, attached
to a CI job or mailed. Every piece of text goes through `html.escape`.

Example:
    >>> from overfocus.audit import AuditOptions, audit
    >>> result = audit(AuditOptions("runs/demo"))                              # doctest: +SKIP
    >>> write_report_html(result, Path("runs/demo/audit/report.html")).name   # doctest: +SKIP
    'report.html'
"""
from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import OverfocusError
from ..fileio import atomic_write_text
from .io import accuracy_counts, load_analysis
from .meta import method_title, metric_info, order_metrics
from .overlay import NORMALISATION_NOTE, colorbar_legend, draw_boxes, overlay_map
from .plots import plot_confusion, plot_gap

TILE = 256  # display width of an example image, pixels (large enough to see where a map sits)
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
:root { --ok: #1b7f3b; --warning: #b26a00; --problem: #c0262d; --ink: #1d2127; --muted: #5c6570;
        --line: #dfe3e8; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); background: var(--bg); }
main { max-width: 1100px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
.sub { color: var(--muted); margin: 2px 0; overflow-wrap: anywhere; }
.verdict { display: inline-block; margin-top: 12px; padding: 6px 12px; border-radius: 6px; font-weight: 600;
           color: #fff; }
.verdict.pass { background: var(--ok); color: #fff; } .verdict.fail { background: var(--problem); color: #fff; }
.verdict.none { background: var(--muted); }
ul.findings { list-style: none; padding: 0; margin: 0; }
.finding { background: #fff; margin: 6px 0; padding: 8px 12px; border-left: 6px solid; border-radius: 4px; }
.finding.ok { border-color: var(--ok); } .finding.warning { border-color: var(--warning); }
.finding.problem { border-color: var(--problem); }
.badge { display: inline-block; width: 84px; margin-right: 10px; padding: 1px 8px; border-radius: 10px;
         font-size: 12px; font-weight: 700; text-transform: uppercase; color: #fff; text-align: center; }
.badge.ok { background: var(--ok); } .badge.warning { background: var(--warning); }
.badge.problem { background: var(--problem); }
table { border-collapse: collapse; background: #fff; width: 100%; margin: 6px 0; }
table + table { margin-top: 18px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #eef1f4; font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.ci { color: var(--muted); font-size: 12px; }
.pass { color: var(--ok); font-weight: 600; } .fail { color: var(--problem); font-weight: 600; }
.examples { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; background: #fff; padding: 8px; border-radius: 6px; border: 1px solid var(--line); }
figure .row { display: flex; gap: 4px; }
figure .cell { text-align: center; font-size: 11px; color: var(--muted); }
figure img { display: block; width: 256px; height: auto; image-rendering: auto; }
img.colorbar { display: block; width: 256px; height: auto; margin: 4px 0 10px; }
figcaption { font-size: 12px; margin-top: 6px; max-width: 500px; }
.wrong { color: var(--problem); font-weight: 600; }
.curves img { max-width: 100%; height: auto; background: #fff; border: 1px solid var(--line); margin: 6px 0; }
details { margin: 8px 0; } summary { cursor: pointer; font-weight: 600; }
code { font-size: 13px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def esc(value: Any) -> str:
    """html.escape of anything (None -> empty)."""
    return html.escape("" if value is None else str(value), quote=True)


def png_data_uri(rgb: np.ndarray) -> str:
    """An RGB uint8 image as a `data:image/png;base64,...` URI.

    Example:
        >>> png_data_uri(np.zeros((2, 2, 3), np.uint8))[:22]
        'data:image/png;base64,'
    """
    import cv2

    # RLE strategy: as small as level-9 deflate for these pixel-block images, at a tenth of the time
    params = [cv2.IMWRITE_PNG_COMPRESSION, 6, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), params)  # OpenCV writes BGR
    if not ok:
        raise OverfocusError("could not encode an image as PNG for the report")
    return "data:image/png;base64," + base64.b64encode(buffer.tobytes()).decode("ascii")


def bytes_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def img_tag(uri: str, alt: str, cls: str = "") -> str:
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<img{klass} src="{uri}" alt="{esc(alt)}">'


# ---- examples -----------------------------------------------------------------------------------------
def scaled(image: np.ndarray, width: int = TILE) -> Tuple[np.ndarray, float]:
    """The image at display size and the scale factor.

    Small images are enlarged by an integer factor with nearest-neighbour pixels (what the model
    saw, crisp, and PNG compresses the repeated pixels well); large ones are reduced (area).
    """
    import cv2

    h, w = image.shape[:2]
    if w < width:
        factor = float(-(-width // w))
        return cv2.resize(image, (int(w * factor), int(h * factor)), interpolation=cv2.INTER_NEAREST), factor
    if w == width:
        return image, 1.0
    height = max(1, int(round(h * width / w)))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), width / w


def example_panels(example, methods: Sequence[str], meta: Optional[Dict[str, Any]] = None
                   ) -> List[Tuple[str, np.ndarray]]:
    """(caption, RGB) panels of one example: the image with its boxes, then one overlay per method."""
    big, factor = scaled(example.image)
    boxes = np.asarray(example.boxes, np.float64).reshape(-1, 4) * factor  # box lines drawn at display size
    thickness = max(1, TILE // 80)
    panels = [("image", draw_boxes(big, boxes, color=(0, 255, 0), thickness=thickness))]
    for method in methods:
        overlay = overlay_map(big, example.maps[method], alpha=0.5, cmap=CMAP)
        panels.append((method_title(meta or {}, method), draw_boxes(overlay, boxes, color=(0, 255, 0),
                                                                    thickness=thickness)))
    return panels


CMAP = "inferno"


def colorbar_tag() -> str:
    """The colour bar of the example maps, with the normalisation note, as an <img>."""
    return img_tag(png_data_uri(colorbar_legend(TILE, CMAP, 12)), f"colour bar: {NORMALISATION_NOTE}", "colorbar")


def class_name(classes: Sequence[str], index: int) -> str:
    return str(classes[index]) if 0 <= index < len(classes) else f"class {index}"


def example_figure(example, methods: Sequence[str], classes: Sequence[str], score_name: str,
                   meta: Optional[Dict[str, Any]] = None) -> str:
    cells = "".join(f'<div class="cell">{img_tag(png_data_uri(rgb), f"{cap} of {example.image_id}")}{esc(cap)}'
                    f"</div>" for cap, rgb in example_panels(example, methods, meta))
    truth, pred = class_name(classes, example.label), class_name(classes, example.pred)
    verdict = (f"predicted {esc(pred)} ({example.conf:.0%})" if example.pred == example.label else
               f'<span class="wrong">predicted {esc(pred)} ({example.conf:.0%})</span>')
    caption = (f"<b>{esc(example.image_id)}</b> &middot; true {esc(truth)} &middot; {verdict} &middot; "
               f"{esc(score_name)} {example.score:.3f}")
    return f'<figure><div class="row">{cells}</div><figcaption>{caption}</figcaption></figure>'


def examples_section(result, title: str, examples: list, blurb: str) -> str:
    report = result.report
    methods = report["inputs"]["methods"]
    if not examples or not methods:
        return ""
    score = metric_info(report, score_metric(report)).title
    figures = "".join(example_figure(e, methods, result.classes, score, report) for e in examples)
    primary = method_title(report, methods[0])
    if score_metric(report) == "confidence":  # data without boxes: ranked by the model, not by the map
        text = CONFIDENCE_BLURBS[blurb].format(method=primary)
    else:
        text = blurb.format(score=score, method=primary) + (BOXES_NOTE if report["inputs"].get("has_boxes") else "")
    unranked = report["examples"].get("unranked_all_zero", 0)
    if unranked:
        text += f" {unranked} images whose {primary} map is all zero are not ranked."
    return (f"<section><h2>{esc(title)}</h2><p class=\"sub\">{esc(text)} {esc(NORMALISATION_NOTE)}.</p>"
            f'{colorbar_tag()}<div class="examples">{figures}</div></section>')


def score_metric(report: Dict[str, Any]) -> str:
    """The metric audit ranked the examples by: report["examples"]["score_metric"] when audit wrote it,
    else audit's rule (energy pointing game with boxes, area ratio without)."""
    return report["examples"].get("score_metric") or ("energy_pg" if report["inputs"]["has_boxes"] else "confidence")


# ---- tables -------------------------------------------------------------------------------------------
def fmt_entry(entry: Optional[Dict[str, Any]]) -> str:
    """`0.123` with its 95% interval and count underneath, or an em dash when not computed."""
    if not entry or entry.get("value") is None:
        return "&mdash;"
    text = f"{entry['value']:.3f}"
    if entry.get("ci_low") is not None:
        text += f'<br><span class="ci">[{entry["ci_low"]:.3f}, {entry["ci_high"]:.3f}] n={entry["n"]}</span>'
    elif entry.get("n"):
        text += f'<br><span class="ci">n={entry["n"]}</span>'
    return text


def metric_label(name: str, meta: Optional[Dict[str, Any]] = None, key: Optional[str] = None) -> str:
    """Title (from the report's metric_info under `key`, default `name`) above the metric's name."""
    return f"{esc(metric_info(meta or {}, key or name).title)}<br><code>{esc(name)}</code>"


def model_table(metrics: Dict[str, Any], meta: Optional[Dict[str, Any]] = None) -> str:
    """Numbers of the model itself (accuracy, confidence, coverage): the keys without a `method.` prefix."""
    names = order_metrics(meta or {}, (n for n in metrics if "." not in n))
    rows = "".join(f'<tr><td>{metric_label(n, meta)}</td><td class="num">{fmt_entry(metrics.get(n))}</td></tr>'
                   for n in names)
    return f"<table><thead><tr><th>model</th><th>value</th></tr></thead><tbody>{rows}</tbody></table>"


def maps_table(metrics: Dict[str, Any], methods: Sequence[str], meta: Optional[Dict[str, Any]] = None) -> str:
    """Map metrics, one column per attribution method."""
    names = list(dict.fromkeys(k.split(".", 1)[1] for k in metrics if "." in k))
    if not names or not methods:
        return ""
    # report.json describes map metrics under their `method.metric` keys (audit's metric names)
    rows = "".join(f"<tr><td>{metric_label(name, meta, f'{methods[0]}.{name}')}</td>" + "".join(
        f'<td class="num">{fmt_entry(metrics.get(f"{m}.{name}"))}</td>' for m in methods) + "</tr>" for name in names)
    heads = "".join(f"<th>{esc(method_title(meta or {}, m))}</th>" for m in methods)
    return f"<table><thead><tr><th>attention maps</th>{heads}</tr></thead><tbody>{rows}</tbody></table>"


def metrics_table(report: Dict[str, Any]) -> str:
    return model_table(report["metrics"], report) + maps_table(report["metrics"], report["inputs"]["methods"], report)


def findings_list(findings: Sequence[Dict[str, Any]]) -> str:
    items = "".join(f'<li class="finding {esc(f["level"])}"><span class="badge {esc(f["level"])}">'
                    f'{esc(f["level"])}</span>{esc(f["message"])}</li>' for f in findings)
    return f'<ul class="findings">{items}</ul>' if items else "<p>No findings.</p>"


def gates_table(gates: Sequence[Dict[str, Any]]) -> str:
    if not gates:
        return "<p class=\"sub\">No gates were set (use <code>--fail-under metric=value</code>).</p>"
    rows = "".join(f"<tr><td><code>{esc(g['metric'])}</code></td><td class=\"num\">&ge; {g['min']:g}</td>"
                   f"<td class=\"num\">{g['value']:.4f}</td><td class=\"{'pass' if g['passed'] else 'fail'}\">"
                   f"{'passed' if g['passed'] else 'FAILED'}</td></tr>" for g in gates)
    return ("<table><thead><tr><th>metric</th><th>required</th><th>value</th><th>result</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def verdict(report: Dict[str, Any]) -> str:
    gates = report["gates"]
    if not gates:
        return '<div class="verdict none">no gates set</div>'
    failed = [g["metric"] for g in gates if not g["passed"]]
    if not failed:
        text = "the gate passed" if len(gates) == 1 else f"all {len(gates)} gates passed"
        return f'<div class="verdict pass">{text}</div>'
    return f'<div class="verdict fail">{len(failed)} of {len(gates)} gates failed: {esc(", ".join(failed))}</div>'


def plain(value: Any) -> str:
    """Lists as comma-separated text, None as a dash."""
    if value is None:
        return "\u2014"
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def key_value_table(pairs: Sequence[Tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(plain(v))}</td></tr>" for k, v in pairs)
    return f"<table><tbody>{rows}</tbody></table>"


def details_section(report: Dict[str, Any]) -> str:
    inputs, prep = report["inputs"], report["preprocessing"]
    pairs = list(inputs.items())
    prep_pairs = [("image size", prep["image_size"]), ("mean", prep["mean"]), ("std", prep["std"]),
                  ("from", prep["source"])]
    return ("<section><h2>Inputs</h2>" + key_value_table(pairs)
            + "<h2>Preprocessing</h2>" + key_value_table(prep_pairs)
            + "<details><summary>Thresholds of the findings</summary>"
            + key_value_table(sorted(report["thresholds"].items())) + "</details>"
            + "<details><summary>Software versions</summary>"
            + key_value_table(sorted(report["versions"].items())) + "</details></section>")


# ---- classes ---------------------------------------------------------------------------------------------
def classes_section(report: Dict[str, Any]) -> str:
    """Per-class accuracy (a table, the weakest classes first) and the confusion matrix (a figure)
    of report.json's `classes` entry; '' for a report without it."""
    table = report.get("classes")
    if not table or not table.get("per_class"):
        return ""
    rows = sorted(table["per_class"], key=lambda r: (r["accuracy"] is None, r["accuracy"] if r["accuracy"]
                                                      is not None else 0.0, r["class"]))
    body = "".join(f"<tr><td>{esc(r['class'])}</td><td class=\"num\">{r['images']}</td><td class=\"num\">"
                   + ("&mdash;" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%") + "</td></tr>"
                   for r in rows)
    names = [r["class"] for r in table["per_class"]]
    with tempfile.TemporaryDirectory(prefix="overfocus-audit-") as tmp:
        figure = plot_confusion(table["confusion"], names, Path(tmp) / "confusion.png",
                                f"confusion matrix of the {report['inputs']['images']} audited images")
        uri = bytes_data_uri(figure.read_bytes())
    listing = f"<table><thead><tr><th>class</th><th>images</th><th>accuracy</th></tr></thead><tbody>{body}</tbody></table>"
    if len(rows) > MAX_OPEN_CLASSES:  # a long list stays folded: the figure gives the overview
        listing = f"<details><summary>accuracy of all {len(rows)} classes</summary>{listing}</details>"
    return ('<section class="curves"><h2>Classes</h2>'
            '<p class="sub">Accuracy per true class, the weakest first; the confusion matrix below counts each '
            "audited image once (rows: true class, columns: the model's prediction).</p>"
            f"{listing}{img_tag(uri, 'confusion matrix')}</section>")


MAX_OPEN_CLASSES = 20


# ---- run history -------------------------------------------------------------------------------------------
HISTORY_TITLES = {"gap": "train and test accuracy per epoch",
                  "leak": "accuracy with and without the training mask (label leak)",
                  "metrics": "attention metrics per epoch (overfocus analyze)"}


def curve_images(result) -> Tuple[List[Tuple[str, str]], List[str]]:
    """(title, data URI) of the run's gap plot and metric curves, plus notes on what was skipped.

    The figures are render's own (`render.figures.run_plots`: the same panels, titles, units,
    ranges and colours as `overfocus render`); a run not analysed yet gets its gap plot alone."""
    from .figures import run_plots  # here, not at the top: figures imports explore, which imports report (a cycle)

    run_dir = Path(result.report["inputs"]["run_dir"])
    images, notes = [], []
    with tempfile.TemporaryDirectory(prefix="overfocus-audit-") as tmp:
        try:
            analysis = load_analysis(run_dir)
        except OverfocusError as exc:
            analysis = None
            if (run_dir / "analysis").exists():  # there but unusable: say why, not "not analysed"
                notes.append(f"attention curves not drawn: {exc}")
        try:
            if analysis is not None:
                drawn = run_plots(analysis, analysis.methods, Path(tmp))
                written, notes = drawn.written, list(drawn.skipped)
            else:
                if not notes:
                    notes.append("no analysis of this run yet: run `overfocus analyze` to add attention curves")
                classes = result.report["inputs"].get("classes") or []
                written = [plot_gap(result.metrics_rows, Path(tmp) / "gap.png",
                                    f"{run_dir.name}: train vs test accuracy per epoch",
                                    chance=1.0 / len(classes) if classes else None,
                                    counts=accuracy_counts(result.metrics_rows))] \
                    if any("train_acc" in r and "test_acc" in r for r in result.metrics_rows) else []
        except OverfocusError as exc:
            written, notes = [], notes + [f"run history: not drawn ({exc})"]
        for path in written:
            images.append((HISTORY_TITLES.get(path.stem, path.stem), bytes_data_uri(path.read_bytes())))
    return images, notes


def history_section(result) -> str:
    if not result.report["inputs"]["run_dir"]:
        return ""
    images, notes = curve_images(result)
    body = "".join(f"<h3>{esc(t)}</h3>{img_tag(uri, t)}" for t, uri in images)
    body += "".join(f'<p class="sub">{esc(n)}</p>' for n in notes)
    return f'<section class="curves"><h2>Run history</h2>{body}</section>'


# ---- the page --------------------------------------------------------------------------------------------
WORST_BLURB = "The audited images with the lowest {score} of the {method} map."
BEST_BLURB = "The audited images with the highest {score} of the {method} map."
BOXES_NOTE = " Green boxes are the annotated objects."  # only where the data has boxes
CONFIDENCE_BLURBS = {WORST_BLURB: "The audited images the model is least confident about, with their {method} maps "
                                  "(the data has no object boxes, so no map is ranked as better placed).",
                     BEST_BLURB: "The correctly classified audited images the model is most confident about, with "
                                 "their {method} maps."}


def header(report: Dict[str, Any]) -> str:
    inputs = report["inputs"]
    lines = [f"{inputs['checkpoint']}", f"sha256 {inputs['sha256']}", f"{inputs['model']} ({inputs['kind']})",
             f"{inputs['images']} audited images of {inputs['data']}"
             + (" (its test split)" if inputs.get("split") == "test" else " (the whole folder)" if inputs.get("split")
                == "all" else "")]
    if inputs["layer"]:
        reshape = f" ({inputs['layer_reshape']})" if inputs.get("layer_reshape") else ""
        lines.append(f"attention layer {inputs['layer']}{reshape}, latent layer {inputs['latent_layer']}, "
                     f"target class: {'ground truth' if inputs['target'] == 'gt' else 'predicted'}")
    subs = "".join(f'<p class="sub">{esc(line)}</p>' for line in lines)
    return f"<header><h1>overfocus audit</h1>{subs}{verdict(report)}</header>"


def render_report_html(result) -> str:
    """The whole report page as a string (see the module docstring for what it guarantees)."""
    report = result.report
    title = f"overfocus audit: {Path(report['inputs']['checkpoint']).name}"
    body = (header(report)
            + f"<section><h2>Findings</h2>{findings_list(report['findings'])}</section>"
            + f"<section><h2>Gates</h2>{gates_table(report['gates'])}</section>"
            + f"<section><h2>Metrics</h2>{metrics_table(report)}"
            + '<p class="sub">Means over the audited images with 95% bootstrap intervals; '
              "&mdash; = not computed for this input.</p></section>"
            + examples_section(result, "Worst examples", result.worst, WORST_BLURB)
            + examples_section(result, "Best examples", result.best, BEST_BLURB)
            + classes_section(report) + history_section(result) + details_section(report)
            + f"<footer>written by overfocus {esc(report['versions'].get('overfocus'))} on "
              f"{esc(report['created'])}</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body><main>{body}</main></body></html>\n")


def write_report_html(result, out_html: Path) -> Path:
    """Write the self-contained report atomically; return its path."""
    out_html = Path(out_html)
    atomic_write_text(out_html, render_report_html(result))
    return out_html
