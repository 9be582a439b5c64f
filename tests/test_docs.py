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
        files += sorted((REPO / folder).rglob("*.py"))
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


def test_readme_flags_exist_in_the_parser():
    """Every --flag the README shows for main.py is one `python main.py --help` lists."""
    from config.config import build_parser
    known = {s for a in build_parser()._actions for s in a.option_strings}
    text = (REPO / "README.md").read_text()
    lines = [line for line in text.splitlines() if "main.py" in line and "python -m" not in line]
    shown = {m for line in lines for m in re.findall(r"(?<![\w-])--[a-zA-Z][\w-]*", line)}
    others = {"--nproc_per_node", "--nproc-per-node", "--nnodes", "--node_rank", "--node-rank", "--master_addr",
              "--master_port", "--rdzv_backend", "--rdzv-backend", "--rdzv_endpoint", "--rdzv-endpoint", "--rdzv_id",
              "--rdzv-id", "--help"}  # torchrun's own flags
    assert sorted(shown - known - others) == []


def package_files() -> list[str]:
    """Every module of the code folders at any depth, e.g. ``engine/streaming/predictor.py``."""
    return sorted(str(p.relative_to(REPO)) for folder in ("config", "dataset", "engine", "models", "modes", "tools",
                                                          "utils")
                  for p in (REPO / folder).rglob("*.py") if p.name != "__init__.py")


def sub_packages() -> list[str]:
    """Folders below the top ones that hold code, e.g. ``engine/streaming/``."""
    return sorted({str(Path(f).parent) + "/" for f in package_files() if len(Path(f).parts) > 2})


def test_architecture_doc_names_every_module():
    text = (REPO / "docs" / "architecture.md").read_text()
    assert [f for f in package_files() if Path(f).name not in text] == []
    assert [d for d in sub_packages() if d not in text] == []


def test_readme_layout_matches_the_tree():
    text = (REPO / "README.md").read_text()
    layout = text[text.index("## Layout"):text.index("## Using it")]
    assert [f for f in package_files() if Path(f).stem not in layout] == []
    assert [d for d in sub_packages() if d.split("/", 1)[1] not in layout] == []
