"""Run every benchmark in this folder, one after another (`make bench`); `--json` is passed on to each."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
extra = [a for a in sys.argv[1:] if a == "--json"]
for script in sorted(here.glob("bench_*.py")):
    print(f"\n=== {script.name}", file=sys.stderr if extra else sys.stdout, flush=True)
    subprocess.run([sys.executable, str(script), *extra], check=True)
