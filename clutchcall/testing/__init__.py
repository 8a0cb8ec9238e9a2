"""Test helpers: a pytest plugin whose fixtures run the dev engine.

Enable it with ``pytest -p clutchcall.testing.plugin`` (or ``addopts`` in your pytest
configuration). It provides ``clutchcall_engine`` (session-wide), ``clutchcall_dev``
(the same engine, faults and request log reset per test), ``clutchcall_voice`` and
``clutchcall_async_voice``.
"""
