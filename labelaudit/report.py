"""report.html: one self-contained page for a person to read an audit.

Written by ``labelaudit scan`` and rebuilt from an audit folder by ``labelaudit report``. Everything
is inline (figures as PNG data URIs drawn with matplotlib's Agg backend, thumbnails as JPEG data
URIs, CSS in a <style> block; no script, no network). Only the top ``top`` suspects are embedded as
images, so the page stays small for a 100k-sample audit.

Sections: the summary numbers; the histogram of the noise model's variable with the fitted mixture
(AUM for the default margin mixture, AUL for aul-gmm); per-class noise rates; the transition matrix
as a heatmap (when transition.parquet exists); a grid of the top suspects with given label,
predicted label and p(mislabeled).
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from .atomic import write_text_atomic
from .audit.read import Audit
from .audit.record import Summary
from .data.decode import decode_image
from .errors import DecodeError
from .noise.mixture import no_class_count, no_class_note
from .scores import unlearned_note

DEFAULT_TOP = 48
THUMB_PX = 128
MAX_HEATMAP_CLASSES = 60
MAX_BAR_CLASSES = 40


def _figure_uri(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display, no GUI toolkit
    import matplotlib.pyplot as plt

    return plt


def _normal_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    std = max(float(std), 1e-9)
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))


def histogram_figure(audit: Audit) -> str:
    """Histogram of the noise model's score with the fitted Gaussian components drawn over it."""
    plt = _pyplot()
    noise_model = audit.run.noise_model.extra  # the fitted mixture: means, stds, weights, mislabeled
    on_aul = audit.run.config.get("noise_model") == "aul-gmm"
    column, label = ("aul", "AUL (area under the loss curve; higher = more suspicious)") if on_aul else \
        ("aum", "AUM (mean logit margin; below 0 = the network preferred another class)")
    x = audit.samples[column].to_numpy(dtype=np.float64)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.hist(x, bins=min(80, max(10, len(x) // 20)), density=True, color="#c9d3e0", edgecolor="#9aa8ba",
            linewidth=0.4, label="samples")
    means, stds, weights, mislabeled = (noise_model.get(k) for k in ("means", "stds", "weights", "mislabeled"))
    if means and stds and weights and mislabeled and len(x):
        grid = np.linspace(x.min(), x.max(), 400)
        total = np.zeros_like(grid)
        for m, s, w, noisy in zip(means, stds, weights, mislabeled):  # noisy: as the noise model read it
            density = w * _normal_pdf(grid, m, s)
            total += density
            ax.plot(grid, density, color="#c0392b" if noisy else "#2e86c1", lw=1.4,
                    label=f"{'mislabeled' if noisy else 'clean'} component (mean {m:.2f}, weight {w:.0%})")
        ax.plot(grid, total, color="#333333", lw=1.0, ls="--", label="mixture")
    if not on_aul:
        ax.axvline(0.0, color="#777777", lw=0.8, ls=":")
    ax.set_xlabel(label)
    ax.set_ylabel("density")
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _figure_uri(fig)


def class_rates_figure(audit: Audit) -> str:
    """Horizontal bars: the noise rate within each given label, worst first."""
    plt = _pyplot()
    rates = audit.class_rates.sort_values("noise_rate", ascending=False, kind="stable").head(MAX_BAR_CLASSES)
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rates) + 1.0))
    y = np.arange(len(rates))[::-1]
    ax.barh(y, rates["noise_rate"], color="#d98880", height=0.7)
    ax.set_yticks(y, [str(v) for v in rates["label"]], fontsize=8)
    for yi, rate, n in zip(y, rates["noise_rate"], rates["n_samples"]):
        ax.text(rate, yi, f" {rate:.1%} of {n:,}", va="center", fontsize=7)
    ax.set_xlim(0, max(0.05, float(rates["noise_rate"].max()) * 1.3 if len(rates) else 1.0))
    ax.set_xlabel("estimated share of the samples given this label that are mislabeled")
    ax.spines[["top", "right"]].set_visible(False)
    return _figure_uri(fig)


def transition_figure(audit: Audit) -> str | None:
    """Heatmap of T (rows: true label, columns: given label), None without transition.parquet."""
    from .noise.transition import transition_matrix

    if audit.transition is None or len(audit.transition) == 0:
        return None
    t, classes = transition_matrix(audit.transition)
    k = len(classes)
    if k > MAX_HEATMAP_CLASSES:  # keep the classes with the largest flows readable
        off = t - np.diag(np.diag(t))
        keep = np.sort(np.argsort(-(off.sum(axis=0) + off.sum(axis=1)), kind="stable")[:MAX_HEATMAP_CLASSES])
        t, classes, k = t[np.ix_(keep, keep)], [classes[i] for i in keep], len(keep)
    plt = _pyplot()
    side = min(9.0, 2.0 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    im = ax.imshow(t, cmap="Reds", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), classes, rotation=90 if k > 6 else 0, fontsize=7)
    ax.set_yticks(range(k), classes, fontsize=7)
    ax.set_xlabel("given (noisy) label")
    ax.set_ylabel("true label")
    if k <= 15:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{t[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if t[i, j] > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.04, label="P(given label | true label)")
    return _figure_uri(fig)


def thumbnail_uri(file: Path) -> str | None:
    """A JPEG data URI of the image as the proxy saw it (square, EXIF-rotated); None when unreadable."""
    from PIL import Image

    try:
        arr = decode_image(str(file), THUMB_PX)
    except DecodeError:
        return None
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3a5f;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85;font-size:13px}main{padding:8px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:14px 18px;margin:16px 0}
h2{font-size:17px;margin:0 0 10px}.stats{display:flex;flex-wrap:wrap;gap:12px}
.stat{min-width:150px;padding:8px 12px;border-left:3px solid #1f3a5f;background:#f4f6f9}
.stat b{display:block;font-size:20px}.stat span{font-size:12px;color:#555}
.note{font-size:12px;color:#555}img.fig{max-width:100%}
.warn{background:#fff8e1;border-left:3px solid #e0a800;padding:8px 12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.card{border:1px solid #e3e6ea;border-radius:4px;padding:6px;font-size:12px;background:#fff}
.card img,.card .missing{width:128px;height:128px;display:block;margin:0 auto 4px;image-rendering:auto}
.card .missing{background:#eee;color:#888;text-align:center;line-height:128px}
.card .path{color:#666;word-break:break-all;font-size:11px}.given{color:#c0392b}.pred{color:#1e8449}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
"""


def _stat(value: str, what: str) -> str:
    return f'<div class="stat"><b>{html.escape(value)}</b><span>{html.escape(what)}</span></div>'


SURE_WIDTH = 0.04  # a stated interval at most this wide is called sure (± 2 points)


def sureness_note(summary: Summary) -> str | None:
    """How sure the unsupervised rate is, in one sentence, and what would make it sure (None once
    answers were applied: the rate is then verified)."""
    if summary.extra.get("verified") or not summary.noise_rate_interval:
        return None
    lo, hi = summary.noise_rate_interval
    n = summary.extra.get("answers_for_2_points")
    verify = f"verify about {n:,} samples with `labelaudit review` to know it within ±2 points" if n else \
        "verify a few hundred samples with `labelaudit review` to know it within ±2 points"
    if hi - lo <= SURE_WIDTH:
        check = f"about {n:,} answers to `labelaudit review` verify it" if n else "`labelaudit review` verifies it"
        return f"The scan is sure of the rate within ±{50 * (hi - lo):.1f} points (95%); {check}."
    return (f"The scan alone cannot pin the rate down: it lies between {lo:.1%} and {hi:.1%} (95%); "
            f"{verify}.")


def _rate_caption(summary: Summary) -> str:
    """What the noise rate's number is, with its 95% interval and, when a mixture component is
    undecided, its model range (run.json summary)."""
    verified = summary.extra.get("verified")
    if verified:
        lo, hi = summary.noise_rate_interval
        return (f"verified noise rate (95% interval {lo:.1%}–{hi:.1%}, from {verified['answers']:,} answers checked "
                f"by hand; the scan alone estimated {verified['unsupervised_noise_rate']:.1%})")
    caption = "estimated noise rate"
    if summary.noise_rate_interval:
        lo, hi = summary.noise_rate_interval
        runs = summary.noise_rate_runs
        over = f" over {len(runs)} proxy runs, which estimated {', '.join(f'{r:.1%}' for r in runs)}" if runs else ""
        caption += f" (95% interval {lo:.1%}–{hi:.1%}{over})"
    if summary.noise_rate_model_range:
        lo, hi = summary.noise_rate_model_range
        caption += f"; could be {lo:.1%}–{hi:.1%}: a mixture component straddles a margin of 0"
    return caption


def render_report(audit: Audit, *, top: int = DEFAULT_TOP) -> str:
    """The HTML text of report.html for ``audit``."""
    e = html.escape
    run, s = audit.run, audit.summary
    cfg = run.config
    stats = "".join([
        _stat(f"{s.noise_rate:.1%}", _rate_caption(s)),
        _stat(f"{s.n_label_issues:,}", "label issues flagged"),
        _stat(f"{s.n_samples:,}", "samples audited"),
        _stat(f"{s.n_classes if s.n_classes is not None else audit.class_rates.shape[0]:,}", "classes"),
        _stat(f"{s.n_errors:,}", "unreadable files (errors.parquet)"),
    ])
    flows = s.top_flows or []
    sure = sureness_note(s)
    flows_html = (f'<p class="sure">{e(sure)}</p>' if sure else "") + ("<p>Largest label flows (share of a true class filed under another label): "
                  + ", ".join(f"<b>{e(str(f['true']))} → {e(str(f['noisy']))}</b> {f['p']:.0%}" for f in flows[:5])
                  + "</p>") if flows else ""
    method = e(run.noise_model.method)
    unlearned = unlearned_note(s.proxy_agreement, s.proxy_kappa)
    if unlearned:
        flows_html += f'<p class="warn"><b>Untrustworthy audit:</b> {e(unlearned)}.</p>'
    n_no_class = no_class_count(run.noise_model.extra, s.n_samples)
    if n_no_class:
        flows_html += f'<p class="no-class">{e(no_class_note(n_no_class, "of the issues"))}.</p>'
    sections = [f'<section id="summary"><h2>Summary</h2><div class="stats">{stats}</div>{flows_html}'
                f'<p class="note">Noise model: {method}. Proxy: {e(str(cfg.get("model", "")))}, '
                f'{e(str(run.epochs_run or cfg.get("epochs", "")))} epochs on {e(str(run.device or ""))}, seed '
                f'{e(str(run.seed))}; labelaudit {e(str(run.labelaudit_version or ""))}.</p></section>']
    sections.append(f'<section id="scores"><h2>Score distribution and fitted mixture</h2>'
                    f'<img class="fig" alt="score histogram" src="{histogram_figure(audit)}"></section>')
    sections.append('<section id="classes"><h2>Noise rate per class</h2>'
                    f'<img class="fig" alt="per-class noise rates" src="{class_rates_figure(audit)}">'
                    '<p class="note">Given-label view: the share of the samples carrying each label whose '
                    'label is estimated to be wrong.</p></section>')
    heatmap = transition_figure(audit)
    if heatmap:
        sections.append('<section id="transition"><h2>Noise-transition matrix</h2>'
                        f'<img class="fig" alt="transition matrix" src="{heatmap}">'
                        '<p class="note">Row i, column j: the share of samples that truly are i and are '
                        'labelled j.</p></section>')
    flagged = audit.suspects
    suspects = (flagged if len(flagged) else audit.ranked).head(top)  # none flagged: the top of the ranking
    cards = []
    for row in suspects.itertuples(index=False):
        uri = thumbnail_uri(audit.file_of(row.path))
        image = f'<img alt="{e(row.path)}" src="{uri}">' if uri else '<div class="missing">unreadable</div>'
        cards.append(f'<div class="card">{image}<div>#{row.rank} · p={row.p_mislabeled:.2f}</div>'
                     f'<div>given <b class="given">{e(str(row.given_label))}</b> → predicted '
                     f'<b class="pred">{e(str(row.predicted_label))}</b> ({row.predicted_confidence:.0%})</div>'
                     f'<div class="path">{e(str(row.path))}</div></div>')
    total = len(flagged)
    if total:
        heading = f"Suspects: the top {len(cards)} of {total:,}" if total > len(cards) else f"Suspects: all {total:,}"
        lead = ""
    else:
        heading = "Suspects: no label issues flagged"
        lead = (f"<p>The {len(cards)} highest-ranked samples, none of them flagged: worth a look if you expect "
                "errors (the noise model can count none where the ranking still puts a few on top).</p>"
                if cards else "")
    sections.append(f'<section id="suspects"><h2>{heading}</h2>{lead}'
                    + (f'<div class="grid">{"".join(cards)}</div>' if cards else "")
                    + '<p class="note">Thumbnails show each image as the proxy saw it (square). The full list '
                      'is in suspects.parquet; <code>labelaudit show</code> prints it.</p></section>')
    title = f"labelaudit report · {audit.path.resolve().name}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head>'
            f'<body><header><h1>labelaudit report</h1><p>{e(str(run.data.root or ""))} · '
            f'{s.n_samples:,} samples</p></header><main>{"".join(sections)}</main></body></html>\n')


def write_report(audit: Audit, out: str | Path | None = None, *, top: int = DEFAULT_TOP) -> Path:
    """Render and write report.html (default: into the audit folder), atomically."""
    out = Path(out) if out is not None else audit.path / "report.html"
    write_text_atomic(out, render_report(audit, top=top))
    return out
