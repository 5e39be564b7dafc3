"""The `lab` command as the tests run it: a subprocess of this interpreter (so it imports the
tree under test), output captured."""
from __future__ import annotations

import subprocess
import sys

LAB = [sys.executable, "-m", "lab.cli"]


def lab(*args, check: bool = True, timeout: float = 120, env: dict | None = None, module: str = "lab.cli") -> subprocess.CompletedProcess:
    """Run `lab ARGS`; with `check`, a non-zero exit is an AssertionError showing both streams."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"lab {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc
