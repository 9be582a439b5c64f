"""The repository stands alone: every ``docs/...`` file the code and README cite exists, and nothing cites
a design note or path outside the repository."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOREIGN = ("DESIGN.md", "official_gsvnet.md", "peers_and_protocols.md", "../shared", "shared/reference")


def repo_texts() -> dict[Path, str]:
    files = [REPO / "README.md", *sorted(REPO.glob("docs/*.md"))]
    for folder in ("config", "dataset", "engine", "models", "modes", "tools", "utils", "tests"):
        files += sorted((REPO / folder).glob("*.py"))
    return {p: p.read_text() for p in files + [REPO / "main.py"] if p.is_file()}


def test_cited_docs_exist():
    cited = {m for text in repo_texts().values() for m in re.findall(r"docs/[\w\-]+\.md", text)}
    assert cited, "the code cites its docs"
    assert sorted(c for c in cited if not (REPO / c).is_file()) == []


def test_nothing_cites_outside_the_repository():
    me = Path(__file__).resolve()
    hits = [f"{p.relative_to(REPO)}: {word}" for p, text in repo_texts().items() if p != me
            for word in FOREIGN if word in text]
    assert hits == []
