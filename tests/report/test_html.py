"""The HTML helpers as exact strings: escaping, images, tables, sections, the page, and the atomic write."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from visionlab.report import html
from visionlab.report.html import CSS, Cell, Raw, code, esc, figure, img, missing, page, section, table, write_page


def test_esc_escapes_text_and_keeps_raw() -> None:
    assert esc("<a href=\"x\">'&'</a>") == "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
    assert isinstance(esc(3), Raw) and esc(3) == "3"
    raw = Raw("<b>")
    assert esc(raw) is raw


def test_images_code_and_missing() -> None:
    uri = "data:image/png;base64," + base64.b64encode(b"\x89PNG").decode("ascii")
    assert img(b"\x89PNG", 'a "b"') == f'<img src="{uri}" alt="a &quot;b&quot;">'
    assert img(b"\x89PNG", "a", cls="c<") == f'<img src="{uri}" alt="a" class="c&lt;">'
    with pytest.raises(ValueError, match=r"^every image needs alt text$"):
        img(b"", "")
    assert figure(b"\x89PNG", "a", "cap <1>", cls="grid") == (
        f'<figure class="grid"><img src="{uri}" alt="a"><figcaption>cap &lt;1&gt;</figcaption></figure>'
    )
    assert figure(b"\x89PNG", "a", Raw("<i>c</i>")) == (
        f'<figure><img src="{uri}" alt="a"><figcaption><i>c</i></figcaption></figure>'
    )
    assert code("a<b") == "<code>a&lt;b</code>"
    assert missing("x&y") == '<p class="missing"><strong>Not available:</strong> x&amp;y</p>'


def test_table_cells_headers_and_classes() -> None:
    rows = [["r<1", 2, Cell("<3>", cls="num", style="color: red")], [Cell("h", header=True), Raw("<i>4</i>"), 5]]
    assert table(["a<", Raw("<b>b</b>"), "c"], rows, caption="cap&", row_classes=["x", ""], cls="t") == (
        '<div class="table-wrap"><table class="t"><caption>cap&amp;</caption><thead><tr><th scope="col">a&lt;</th>'
        '<th scope="col"><b>b</b></th><th scope="col">c</th></tr></thead><tbody>'
        '<tr class="x"><th scope="row">r&lt;1</th><td>2</td><td class="num" style="color: red">&lt;3&gt;</td></tr>'
        '<tr><th scope="row">h</th><td><i>4</i></td><td>5</td></tr></tbody></table></div>'
    )
    assert table(["a", "b"], [[1, 2]], caption="c", row_headers=False) == (
        '<div class="table-wrap"><table><caption>c</caption><thead><tr><th scope="col">a</th><th scope="col">b</th>'
        "</tr></thead><tbody><tr><td>1</td><td>2</td></tr></tbody></table></div>"
    )
    assert Cell("x") == Cell("x", "", "", False)


def test_section_and_page() -> None:
    assert section("a&b", "T<", Raw("<p>x</p>")) == (
        '<section id="a&amp;b" aria-labelledby="a&amp;b-h"><h2 id="a&amp;b-h">T&lt;</h2><p>x</p></section>'
    )
    document = page("T&", Raw("<p>intro</p>"), [("one", "One", "<p>1</p>"), ("two", "Two<", Raw("<p>2</p>"))])
    assert document == (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>T&amp;</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        "<header><h1>T&amp;</h1><p>intro</p></header>\n"
        '<nav aria-label="Contents"><h2 class="toc-h">Contents</h2><ol><li><a href="#one">One</a></li>'
        '<li><a href="#two">Two&lt;</a></li></ol></nav>\n'
        '<main><section id="one" aria-labelledby="one-h"><h2 id="one-h">One</h2><p>1</p></section>'
        '<section id="two" aria-labelledby="two-h"><h2 id="two-h">Two&lt;</h2><p>2</p></section></main>\n'
        "</body>\n</html>\n"
    )
    assert page("t", "a<b", [])[:-1].endswith("<header><h1>t</h1>a&lt;b</header>\n"
                                              '<nav aria-label="Contents"><h2 class="toc-h">Contents</h2><ol></ol>'
                                              "</nav>\n<main></main>\n</body>\n</html>")  # fmt: skip


def test_write_page_is_atomic_utf8_and_world_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "a" / "b" / "r.html"
    assert write_page("é<>", out) == out
    assert out.read_bytes() == "é<>".encode()
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert write_page("second", str(out)) == out and out.read_text(encoding="utf-8") == "second"
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.html"]

    seen = []

    def replace(src: str, dst: Path) -> None:
        seen.extend([Path(src).name, Path(src).parent])
        raise OSError("disk full")

    monkeypatch.setattr(html.os, "replace", replace)
    with pytest.raises(OSError, match=r"^disk full$"):
        write_page("third", out)
    assert seen[0].startswith(".r.html.") and seen[0].endswith(".tmp")
    assert seen[1] == out.parent  # beside the page, so the rename stays on one file system
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.html"]  # the temporary file is gone
    assert out.read_text(encoding="utf-8") == "second" and os.path.isfile(out)
