"""Near-duplicate accuracy benchmark: DeepLens end to end vs imagededup (PHash, CNN).

    .venv/bin/python -m bench.neardup [--quick]

See run.py for what it does and bench/RESULTS.md for results.
"""
