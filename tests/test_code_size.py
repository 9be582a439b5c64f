"""The house rule on size, enforced: no code file over MAX_FILE_LINES lines and no function over MAX_FUNCTION_LINES
(from its ``def`` line to the end of its body), at any depth of package; tests/ is excluded."""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 350
MAX_FUNCTION_LINES = 60
CODE = ("tools", "modes", "engine", "config", "models", "dataset", "utils")


def code_files() -> list[Path]:
    return [REPO / "main.py"] + [p for folder in CODE for p in sorted((REPO / folder).rglob("*.py"))]


def long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines) of every function or method, nested ones too, longer than MAX_FUNCTION_LINES."""
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def test_function_length_is_counted_from_def_to_the_end_of_the_body():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 1))
    assert long_functions(f"def ok():\n{body}") == []                       # def + 59 lines: exactly the limit
    method = textwrap.indent(f"def m(self):\n{body}    y = 0\n", "    ")   # one line more, inside a class
    assert long_functions(f"class A:\n{method}") == [("m", MAX_FUNCTION_LINES + 1)]


def test_no_code_file_is_too_long():
    assert len(code_files()) > 100  # the walk found the project, sub-packages included
    too_long = [f"{p.relative_to(REPO)}: {n} lines" for p in code_files()
                if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    assert too_long == []


def test_no_function_is_too_long():
    found = [f"{p.relative_to(REPO)}: {name} {n} lines" for p in code_files()
             for name, n in long_functions(p.read_text())]
    assert found == []
