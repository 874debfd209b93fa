"""The package layout: every package can be imported first."""

from __future__ import annotations


def test_every_package_imports_on_its_own():
    """Each package can be the first one imported (no import cycle between engine and actors)."""
    import subprocess
    import sys

    for module in ("candlewick.actors", "candlewick.http", "candlewick.engine", "candlewick.schema"):
        proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        assert proc.returncode == 0, f"{module}: {proc.stderr[-500:]}"
