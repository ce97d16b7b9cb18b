"""Stage entry points: one module per DAG stage, on file paths.

Each function reads its inputs, calls the pure modules of :mod:`animote`, and
writes its outputs atomically. ``workflow/scripts/X.py`` calls exactly one
function here. Nothing else lives in this package.
"""
