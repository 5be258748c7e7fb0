"""What a server process loads: the worker's memory budget (≤ 200 MB per worker, issue #5)."""

from __future__ import annotations

import subprocess
import sys


def test_the_app_does_not_import_scipy_stats() -> None:
    # scipy.stats alone adds ~50 MB to every process that imports it; the statistics core
    # uses scipy.special, which the app needs anyway
    code = (
        "import sys, croupier.app\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy.stats')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
