"""A model's README on its page: Markdown rendered by markdown-it-py (CommonMark, with tables and strikethrough),
then sanitized by nh3 (the ammonia HTML sanitizer).

A README is the pusher's text, shown to everyone who opens the model: raw HTML in it is allowed through the
parser (READMEs use it for images and alignment) and everything that could run or restyle the page is removed
afterwards by an allowlist: no `<script>`, `<style>`, `<iframe>` or event attributes, and links only to http,
https and mailto (a `javascript:` link loses its href). The page's Content-Security-Policy stands behind both.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

_SCHEMES = {"http", "https", "mailto"}

_md = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)


def render_markdown(text: str) -> str:
    """Safe HTML for `text` (Markdown)."""
    raw = _md.render(text)
    return nh3.clean(raw, url_schemes=_SCHEMES, link_rel="noopener noreferrer nofollow")
