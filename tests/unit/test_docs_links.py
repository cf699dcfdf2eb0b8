"""Every relative link and #anchor in the documentation leads somewhere.

Anchors are GitHub's: the heading's text, lowercased, punctuation dropped,
each space turned into '-', and '-1', '-2', ... added to repeated headings.
Links inside code (fenced blocks, `inline`) are text, not links.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]

HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
INLINE_CODE = re.compile(r"(`+).+?\1", re.DOTALL)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[str]:
    """The lines, with those of fenced code blocks left blank."""
    lines, fence = [], ""
    for line in text.splitlines():
        marker = re.match(r"\s{0,3}(`{3,}|~{3,})", line)
        if fence:
            if marker and marker.group(1).startswith(fence):
                fence = ""
        elif marker:
            fence = marker.group(1)
        lines.append("" if fence or marker else line)
    return lines


def anchor(heading: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(document: Path) -> set[str]:
    seen: Counter[str] = Counter()
    found = set()
    for line in prose_lines(document.read_text()):
        if heading := HEADING.match(line):
            slug = anchor(heading.group(1))
            found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
            seen[slug] += 1
    return found


def targets(document: Path) -> list[str]:
    """Link targets, paragraph by paragraph: a link's text may wrap onto the next line."""
    found = []
    for paragraph in re.split(r"\n\s*\n", "\n".join(prose_lines(document.read_text()))):
        text = INLINE_CODE.sub("", paragraph)
        found += LINK.findall(text)
        found += (match.group(1) for match in DEFINITION.finditer(text))
    return found


def broken_links(document: Path) -> list[str]:
    """Each relative link of `document` whose file or anchor does not exist."""
    broken = []
    for target in targets(document):
        if SCHEME.match(target):
            continue
        path, _, fragment = target.partition("#")
        linked = (document.parent / unquote(path)).resolve() if path else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix != ".md":
            broken.append(f"{target}: an anchor in a file that is not markdown")
        elif fragment and fragment not in anchors(linked):
            broken.append(f"{target}: no such heading in {linked.name}")
    return broken


def test_every_relative_link_and_anchor_in_the_documentation_resolves() -> None:
    # The pages link to each other dozens of times: far fewer means the pattern broke.
    assert sum(len(targets(document)) for document in DOCUMENTS) > 30
    for document in DOCUMENTS:
        assert broken_links(document) == [], document.relative_to(ROOT)


def test_anchors_are_githubs() -> None:
    assert anchor("Protocol (v1)") == "protocol-v1"
    assert anchor("`node_server` (`NODE_SERVER_*`)") == "node_server-node_server_"
    assert anchor("Issue #12: closing figures") == "issue-12-closing-figures"
    assert anchor("The operator's dashboard") == "the-operators-dashboard"
    assert anchor("WspoolNoNewJob") == "wspoolnonewjob"


def test_the_check_finds_broken_files_and_anchors_and_passes_good_ones(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other `page`\n\n## Runbooks\n")
    (tmp_path / "image.png").write_bytes(b"")
    document = tmp_path / "doc.md"
    document.write_text(
        "# Two commands\n\n## Two commands\n\n"
        "[a](#two-commands) [b](#two-commands-1) [c](other.md#other-page)\n"
        "[d](other.md#runbooks) ![e](image.png) [f](https://example.org/x#y)\n"
        "[g](#nowhere) [h](other.md#missing) [i](gone.md) [j](image.png#top) [wrapped\n"
        "text](#wrapped)\n"
        "`[k](inline.md)`\n\n```\n[l](fenced.md)\n```\n\n[m]: gone-too.md\n"
    )
    assert broken_links(document) == [
        "#nowhere: no such heading in doc.md",
        "other.md#missing: no such heading in other.md",
        "gone.md: no such file",
        "image.png#top: an anchor in a file that is not markdown",
        "#wrapped: no such heading in doc.md",
        "gone-too.md: no such file",
    ]
