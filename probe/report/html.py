"""Self-contained HTML reports (images embedded) for people: the page and its building blocks (tables,
embedded images and figures, figure files). Files are written through ``rundir.output`` (atomic, the main
process only); the numbers a report shows come from a workflow's result, which writes its own JSON.
"""
from __future__ import annotations

import base64
import html
import io as _io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from PIL import Image

from ..display import cell
from ..image_files import png_bytes, to_pil
from ..rundir import output

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
.gallery{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #ddd;padding:4px;font-size:.75em;text-align:center;max-width:236px}
.card img{image-rendering:pixelated;display:block}.muted{color:#777;font-size:.9em}code{background:#f3f3f3;padding:0 .2em}
img{max-width:100%;height:auto}table{display:block;width:max-content;max-width:100%;overflow-x:auto}
.verdict{border-left:4px solid #4c72b0;background:#f6f8fb;padding:.4em 1em;margin:.5em 0 1em}
.verdict p{margin:.45em 0}.caveat{color:#8a4b00}.pair{display:flex;gap:3px;flex-wrap:wrap}
@media (max-width:600px){body{margin:1em auto;padding:0 .5em}td,th{padding:.2em .35em}}
"""


@dataclass
class Report:
    """A page: a title and (title, HTML body) sections in reading order."""

    title: str
    sections: list[tuple[str, str]] = field(default_factory=list)

    def add(self, title: str, body_html: str) -> None:
        """Append a section."""
        self.sections.append((title, body_html))

    def html(self) -> str:
        body = "\n".join(f"<h2>{html.escape(t)}</h2>\n{b}" for t, b in self.sections)
        return ("<!doctype html><html><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width,initial-scale=1'>"  # phones: no 980 px layout
                f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>"
                f"<body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n")

    def write(self, path: str | Path) -> Path:
        """The page as ``path`` (atomic; under torchrun every rank builds it and the main process writes it)."""
        return output.write_text(path, self.html())


def table(rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


fmt = cell  # a table cell (``display.cell``): None and NaN read "-", floats with 4 significant digits


def figure_bytes(fig: Any, fmt: str = "png", dpi: int = 110) -> bytes:
    """Matplotlib figure -> file bytes in ``fmt`` (png, pdf, svg, ...); the figure is closed."""
    import matplotlib.pyplot as plt
    buf = _io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """Matplotlib figure -> PNG bytes (the figure is closed)."""
    return figure_bytes(fig, "png", dpi)


def png_uri(img: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode()


def figure_uri(fig: Any) -> str:
    """Matplotlib figure -> embedded PNG (the figure is closed)."""
    return "data:image/png;base64," + base64.b64encode(figure_png(fig)).decode()


def img_tag(x: torch.Tensor, size: int = 64, title: str = "") -> str:
    return f"<img src='{png_uri(to_pil(x, size))}' title='{html.escape(title)}'>"


