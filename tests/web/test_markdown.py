"""A README is rendered as CommonMark (tables, strikethrough) and sanitized: nothing in it can run or restyle
the page."""

from __future__ import annotations

from pathlib import Path

from cocina.server.web.markdown import render_markdown

KITCHEN_README = Path(__file__).parent / "fixtures" / "projects" / "kitchen" / "README.md"


def test_markdown_renders_with_tables_and_safe_links() -> None:
    html = render_markdown(KITCHEN_README.read_text())
    assert "<h1>Kitchen sink</h1>" in html and "<table>" in html and "<strong>Bold</strong>" in html
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">link</a>' in html
    assert render_markdown("~~gone~~") == "<p><s>gone</s></p>\n"


def test_scripts_handlers_styles_and_javascript_urls_are_removed() -> None:
    attacks = [
        "<script>alert(1)</script>",
        '<img src="x" onerror="alert(1)">',
        "[x](javascript:alert(1))",
        '<a href="javascript:alert(1)">x</a>',
        '<a href="JaVaScRiPt:alert(1)">x</a>',
        "<style>body{display:none}</style>",
        '<iframe src="https://example.org"></iframe>',
        '<div style="position:fixed">x</div>',
        '<svg onload="alert(1)"></svg>',
        '<form action="https://example.org"><input name="key"></form>',
        "<object data=x></object>",
        '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    ]
    for attack in attacks:
        html = render_markdown(attack).lower()
        for bad in ("<script", "onerror", "onload", "<style", "<iframe", "style=", "<form", "<object", "<input"):
            assert bad not in html, (attack, html)
        assert 'href="javascript' not in html and 'href="data:' not in html, (attack, html)  # as text at most
