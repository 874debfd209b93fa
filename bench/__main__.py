"""``python -m bench SCENARIO [args]``: run one benchmark scenario.

Scenarios: ``engine`` (in-process pipeline vs bare loop, bench/engine.py), ``decode`` (ingest decoders) and ``postgres``
(durable ingest vs raw COPY, bench/postgres.py; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import runpy
import sys

SCENARIOS = {"engine": "bench.engine", "postgres": "bench.postgres", "decode": "bench.decode"}


def main() -> int:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help") or args[0] not in SCENARIOS:
        print(__doc__.strip())
        return 0 if not args or args[0] in ("-h", "--help") else 2
    module = SCENARIOS[args[0]]
    sys.argv = [module, *args[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
