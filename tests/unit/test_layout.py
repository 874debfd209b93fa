"""Modules a reader can hold: short, each opening with its purpose, and nothing pointing outside the repository."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import candlewick

PACKAGE = Path(candlewick.__file__).parent
ROOT = PACKAGE.parent
MAX_LINES = 400


def package_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_over_400_lines():
    """Every module of the package fits in 400 lines."""
    long = {str(p.relative_to(ROOT)): n for p in package_modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_module_opens_with_a_one_line_purpose():
    """Every module has a docstring whose first line is a sentence of its own (a blank line or the end follows)."""
    bad = []
    for path in package_modules():
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=False)
        lines = (doc or "").split("\n")
        first = lines[0].strip()
        if not first or not first.endswith((".", ":")) or (len(lines) > 1 and lines[1].strip()):
            bad.append(f"{path.relative_to(ROOT)}: {first[:80]!r}")
    assert bad == []


def test_nothing_in_the_repository_points_outside_it():
    """No tracked file links to the design folder beside the repository, and every relative link in the
    Markdown documents resolves to a file in it."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    outside = re.compile(r"\.\./shared|STACK-NOTES|shared/(API|ARCHITECTURE|STYLE)\.md")
    pointing = [f for f in tracked if f != "tests/unit/test_layout.py" and (ROOT / f).is_file()
                and outside.search((ROOT / f).read_text(errors="replace"))]
    assert pointing == []
    broken = []
    for doc in (f for f in tracked if f.endswith(".md")):
        for target in re.findall(r"\]\(([^)#\s]+)", (ROOT / doc).read_text()):
            if "://" not in target and not target.startswith("mailto:") and not (ROOT / doc).parent.joinpath(target).exists():
                broken.append(f"{doc} -> {target}")
    assert broken == []
