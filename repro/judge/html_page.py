"""Self-contained HTML pages (``report/index.html``, ``repro compare``'s page): no network to view them.

A page is opened from a server's disk, a CI artifact or a mail, often offline: CSS inline, figures
as PNG data URIs, no script; every text from a log, manifest or path is escaped (a run named ``<b>``).
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from repro.core.files import write_text_atomic

# Verdict words of every command that judges (check-accuracy, band check, compare, compliance).
GOOD = ("PASS", "WITHIN", "EQUIVALENT", "COMPLIANT", "AGGREGATE PASS")
BAD = ("FAIL", "OUTSIDE", "NOT EQUIVALENT", "NONCOMPLIANT", "AGGREGATE FAIL")

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2127;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:18px 24px 48px}
h1{font-size:20px;margin:8px 0 12px;word-break:break-all}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d5d9df;padding-bottom:4px}
.verdict{border-radius:6px;padding:12px 16px;font-size:18px;font-weight:600;border-left:8px solid}
.verdict .word{font-size:24px;margin-right:10px}
.verdict .why{font-size:14px;font-weight:400;margin-top:6px}
.good{background:#e5f5e8;border-color:#1e8e3e;color:#0d5a24}
.bad{background:#fde8e7;border-color:#c5221f;color:#8a1512}
.neutral{background:#fff4d6;border-color:#c58a00;color:#6b4a00}
table{border-collapse:collapse;margin:6px 0;background:#fff;font-size:13.5px}
th,td{border:1px solid #d5d9df;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef0f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{width:190px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
figure{margin:8px 0}
figure img{max-width:100%;height:auto;border:1px solid #d5d9df;background:#fff}
figcaption{font-size:13px;color:#4a525c}
ul{margin:4px 0;padding-left:22px}
.muted{color:#5f6873}
footer{margin-top:36px;font-size:12px;color:#5f6873}
"""


def escape(value: Any) -> str:
    """Text for HTML: ``None`` is empty, floats keep 5 significant digits, everything escaped."""
    return html.escape(format_value(value), quote=True)


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.5g}"
    return str(value)


def tone_of(status: str) -> str:
    """``good``, ``bad`` or ``neutral`` (INCOMPLETE, UNREADABLE, NOT SHOWN) for a verdict word."""
    word = status.strip().upper()
    if any(word.startswith(bad) for bad in BAD):
        return "bad"
    if any(word.startswith(good) for good in GOOD):
        return "good"
    return "neutral"


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def pyplot():
    import matplotlib  # heavy: only a page with figures draws

    matplotlib.use("Agg")  # no display on training servers
    import matplotlib.pyplot as plt  # heavy: as above

    return plt


def figure_png(fig: Any) -> bytes:
    """A drawn matplotlib figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        pyplot().close(fig)
    return buffer.getvalue()


def figure_data_uri(fig: Any) -> str:
    """A drawn matplotlib figure as a ``data:image/png;base64,...`` URI for :func:`image`; the figure is closed."""
    return png_data_uri(figure_png(fig))


def image(uri: str, alt: str, caption: str | None = None) -> str:
    if not uri.startswith("data:image/"):
        raise ValueError("an image of a self-contained page must be a data: URI (no file or network)")
    text = f'<figure><img src="{uri}" alt="{escape(alt)}">'
    if caption:
        text += f"<figcaption>{escape(caption)}</figcaption>"
    return text + "</figure>"


def paragraph(text: str, muted: bool = False) -> str:
    return f'<p class="muted">{escape(text)}</p>' if muted else f"<p>{escape(text)}</p>"


def bullets(lines: Iterable[str]) -> str:
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return f"<ul>{items}</ul>" if items else ""


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(
        f'<td class="num">{escape(cell)}</td>' if isinstance(cell, (int, float)) and not isinstance(cell, bool)
        else f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_value_table(pairs: Iterable[tuple[str, Any]]) -> str:
    """Two columns, a name and its value (values in monospace: commits, digests, paths)."""
    rows = "".join(f'<tr><th>{escape(key)}</th><td class="mono">{escape(value)}</td></tr>' for key, value in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


@dataclass
class HtmlPage:
    """A page: title, verdict banner (``verdict(status, text)``), then sections in the order added."""

    title: str
    banner: str = ""
    sections: list[str] = field(default_factory=list)  # rendered, in the order added
    footer: str = ""

    def verdict(self, status: str, text: str, detail: str = "") -> "HtmlPage":
        """The banner: the verdict word, its number (``text``), then a smaller line (``detail``)."""
        small = f'<div class="why">{escape(detail)}</div>' if detail else ""
        self.banner = (f'<div class="verdict {tone_of(status)}" id="verdict"><span class="word">{escape(status)}</span>'
                       f"{escape(text)}{small}</div>")
        return self

    def add(self, heading: str, body: str) -> "HtmlPage":
        anchor = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-") or f"s{len(self.sections)}"
        self.sections.append(f'<section id="{anchor}"><h2>{escape(heading)}</h2>{body}</section>')
        return self

    def render(self) -> str:
        sections = "".join(self.sections)
        footer = f"<footer>{escape(self.footer)}</footer>" if self.footer else ""
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{escape(self.title)}</title><style>{CSS}</style></head>"
                f"<body><main><h1>{escape(self.title)}</h1>{self.banner}{sections}{footer}</main></body></html>\n")

    def write(self, path: Path) -> Path:
        """Atomically: a full disk leaves the previous page, never half of one."""
        return write_text_atomic(Path(path), self.render())
