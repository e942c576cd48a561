"""transformers' own common model and config tests (`ModelTesterMixin`, `ConfigTester`) run on the mesa family.

The tests come from the sdist of the installed transformers, fetched with pip at test time (see `fetch.py`).
"""
