"""Helpers for the test suite and the benchmarks; not part of the installed package (the wheel excludes
`clinreason.testing*`, see [tool.setuptools.packages.find] in pyproject.toml), importable from a
development install (`pip install -e .`).

    fake_server.py  a fake OpenAI-compatible server on real sockets, with faults on demand
                    (`python -m clinreason.testing.fake_server --help`)
    helpers.py      synthetic question banks, the fake server in a subprocess, the CLI and `serve` as
                    real processes
"""
