"""Run every benchmark in this folder, one after another."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
for script in sorted(here.glob("bench_*.py")):
    print(f"\n=== {script.name}")
    subprocess.run([sys.executable, str(script)], check=True)
