"""`python -m clinreason.cli ...`, the same as the `clinreason` console script."""

from clinreason.cli import main

main()
