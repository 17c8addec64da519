"""The self-contained HTML shell shared by the bench report and ``trace view --html``.

Everything is inline (CSS, JS, SVG): the page must open from a file with no network. The script
makes the page checkable by a headless browser: it writes ``data-rendered="ok"`` and the number
of timeline bars it found drawn (non-zero size) onto ``<body>``, and any JS error into
``data-error``. It also adds a strategy filter and click-to-highlight on the timelines.
"""

from __future__ import annotations

import html

from .timeline import LEGEND

__all__ = ["html_page"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#111827;
max-width:1100px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:28px 0 8px}
h3{font-size:15px;margin:18px 0 6px}
.honesty{border:1px solid #d1d5db;background:#f9fafb;padding:10px 14px;border-radius:6px}
.simulated{border-color:#dc2626;background:#fef2f2}
.simulated strong.flag{color:#b91c1c}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #e5e7eb;padding:4px 8px;text-align:right}
th{background:#f3f4f6}td{white-space:nowrap}td.l,th.l{text-align:left}
.legend{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 10px}
.key{display:inline-flex;gap:4px;align-items:center}
svg text{font-size:11px;fill:#374151}svg .grid{stroke:#e5e7eb}
text.mark{font-style:italic}
details{margin:4px 0}summary{cursor:pointer}
.hl rect.bar{stroke:#111827;stroke-width:1.5}
.filters label{margin-right:12px}
.dot{stroke:#fff;stroke-width:1}
.muted{color:#6b7280}
.wide{overflow-x:auto}
"""

# Segment colours come from LEGEND so the SVG, its legend and the text timeline agree.
_CSS += "".join(f".{cls}{{fill:{colour}}}" for cls, colour, _, _ in LEGEND.values())

_JS = """
(function(){
  var body = document.body;
  window.onerror = function(msg, src, line){
    body.setAttribute('data-error', String(msg) + ' @' + line);
  };
  try {
    var bars = document.querySelectorAll('svg.timeline rect.bar');
    var drawn = 0;
    for (var i = 0; i < bars.length; i++) {
      var b = bars[i].getBBox();
      if (b.width > 0 && b.height > 0) drawn++;
    }
    var dots = document.querySelectorAll('svg.scatter circle.dot').length;
    // Strategy filter: hide the runs of unchecked strategies.
    var boxes = document.querySelectorAll('.filters input[type=checkbox]');
    for (var j = 0; j < boxes.length; j++) {
      boxes[j].addEventListener('change', function(ev){
        var s = ev.target.value, on = ev.target.checked;
        var runs = document.querySelectorAll('[data-strategy="' + s + '"]');
        for (var k = 0; k < runs.length; k++) runs[k].style.display = on ? '' : 'none';
      });
    }
    // Click a timeline to highlight its bars.
    var tls = document.querySelectorAll('svg.timeline');
    for (var t = 0; t < tls.length; t++) {
      tls[t].addEventListener('click', function(ev){ ev.currentTarget.classList.toggle('hl'); });
    }
    body.setAttribute('data-bars', String(drawn));
    body.setAttribute('data-dots', String(dots));
    body.setAttribute('data-rendered', 'ok');
  } catch (e) {
    body.setAttribute('data-error', String(e));
  }
})();
"""


def html_page(title: str, body_html: str) -> str:
    """A complete HTML document with the shared CSS and script inlined."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, '
        f'initial-scale=1"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head>\n<body>\n{body_html}\n<script>{_JS}</script>\n</body></html>\n"
    )
