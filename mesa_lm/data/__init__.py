"""Data: synthetic tasks of the papers, the embedded docstring corpus, and text blocks."""
