"""The shape issue 20 left the code in, kept: no function over 60 lines, and no tunesmith import inside a
function (an import there dodges a cycle the layering should not have) except where it buys start-up time or
follows a subclass, each listed here with why."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tunesmith"
LONGEST = 60

INNER_IMPORTS = {
    "cli.py": "each command imports what it uses: --help, --version and a mistyped flag answer at once",
    "tasks/qa.py": "qa_extractive subclasses GenerativeQA, so it imports qa.py, not the other way round",
}


def functions():
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path.relative_to(SRC).as_posix(), node


def test_no_function_is_over_sixty_lines():
    long = [
        f"{where}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)"
        for where, f in functions()
        if f.end_lineno - f.lineno + 1 > LONGEST
    ]
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_tunesmith_is_imported_at_module_level():
    inner = sorted(
        {
            f"{where}:{node.lineno} {f.name} imports {node.module}"
            for where, f in functions()
            if where not in INNER_IMPORTS
            for node in ast.walk(f)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tunesmith")
        }
    )
    assert not inner, (
        "import these at the top of the module (or say why not in INNER_IMPORTS):\n" + "\n".join(inner)
    )
