"""Every name is untrusted: DOT, the HTML fallback and the MIME bundle."""

from __future__ import annotations

import html.parser
import re

from ckptlab.core import printable
from ckptlab.inspect import dot_string, view_dot, view_html, view_mimebundle

HOSTILE = '<img src=x onerror="window.__pwned=1">'


class Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs.update(name for name, _ in attrs)


def test_dot_string_escapes_quotes_backslashes_controls_and_entities():
    assert dot_string('a"b') == '"a\\"b"'
    assert dot_string("a\\nb") == '"a\\\\nb"'
    assert dot_string("a\nb\x00") == '"a b "'
    assert dot_string("&lt;") == '"&amp;lt;"'
    assert len(dot_string("x" * 500)) == 82
    # Bidi controls would draw a name reversed; the TypeScript dotString drops the same ones.
    assert dot_string("\u202eevil\u202c gnp.exe") == '" evil  gnp.exe"'
    assert dot_string("a\u200eb\u200fc\u202ad\u2066e\u2069f\u2028g") == '"a b c d e f g"'
    assert dot_string("café 模型 a\u00a0b") == '"café 模型 a b"'
    assert printable("\u202eevil\u202c gnp.exe") == "\\u202eevil\\u202c gnp.exe"


def test_dot_has_index_ids_and_only_quoted_names(mismatch):
    dot = view_dot(mismatch)
    for line in dot.splitlines():
        if "label=" in line:
            assert re.match(r'^  n\d+ \[label="', line), line
    assert HOSTILE not in dot  # quotes inside are escaped
    assert '<img src=x onerror=\\"window.__pwned=1\\">' in dot
    assert "</script>" in dot  # harmless inside a quoted DOT string


def test_html_fallback_has_no_markup_from_names(mismatch):
    page = view_html(mismatch)
    parser = Tags()
    parser.feed(page)
    assert not parser.tags & {"img", "script", "iframe"}
    assert not any(a.startswith("on") for a in parser.attrs)
    assert "&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;" in page
    assert "&lt;/script&gt;" in page


def test_fallback_lists_problems_legend_and_suggestions(mismatch):
    page = view_html(mismatch)
    assert "shape_conflict" in page and "program_only (3)" in page
    assert "model/hidden_renamed" in page and "Likely matches" in page
    assert "model/encoder/kernel" not in page.split("<table>")[1].split("Likely")[0]


def test_fallback_caps_rows(mismatch):
    assert "... and 7 more" in view_html(mismatch, max_rows=2)


def test_mimebundle_carries_graph_html_and_text(mismatch):
    bundle = view_mimebundle(mismatch)
    assert bundle["application/vnd.ckptlab.graph+json"]["format"] == "ckptlab.graph"
    assert bundle["text/html"].startswith('<div class="ckptlab-explorer-static">')
    assert "shape_conflict: model/head/kernel" in bundle["text/plain"]
