"""The Containerfile's healthcheck: liveness on the port the process listens on ($PORT), run here as the image would."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import httpx

from tests.conftest import ROOT, free_port, server_process

CONTAINERFILE = (ROOT / "Containerfile").read_text()


def healthcheck_argv() -> list[str]:
    """The HEALTHCHECK's command as the container runtime runs it (exec form as is, shell form through sh -c),
    with this interpreter standing in for the image's ``python``."""
    m = re.search(r"^HEALTHCHECK\b(.*?)\bCMD\s+(.*?)$", CONTAINERFILE.replace("\\\n", " "), re.M)
    assert m, "the Containerfile has no HEALTHCHECK ... CMD"
    cmd = m.group(2).strip()
    if cmd.startswith("["):
        argv = json.loads(cmd)
        return [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    return ["sh", "-c", re.sub(r"^python\b", shlex.quote(sys.executable), cmd)]


def health(port: int) -> int:
    return subprocess.run(healthcheck_argv(), env={"PORT": str(port), "PATH": "/usr/bin:/bin"}, capture_output=True,
                          timeout=10).returncode


def test_the_healthcheck_asks_liveness_on_port_so_a_database_outage_keeps_the_container_healthy(tmp_path):
    """On a server at $PORT whose database is down (readiness 503), the healthcheck passes; with nothing
    listening on $PORT it fails."""
    env = {"DATABASE_URL": f"postgresql://127.0.0.1:{free_port()}/candlewick"}
    with server_process(tmp_path, "--no-feeder", env=env) as sp:
        port = int(sp.base_url.rsplit(":", 1)[1])
        assert httpx.get(sp.base_url + "/health/readiness").status_code == 503
        assert health(port) == 0
    assert health(port) != 0


def test_the_readme_says_what_the_image_runs_by_default():
    """The README's container section says the image feeds synthetic prices unless FEEDER or DATABASE_URL says
    otherwise, and that its healthcheck is liveness on $PORT."""
    section = (ROOT / "README.md").read_text().split("## Container", 1)[1]
    for needed in ("synthetic prices", "FEEDER=0", "DATABASE_URL", "/health/liveness", "$PORT"):
        assert needed in section, needed
