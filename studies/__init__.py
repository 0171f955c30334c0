"""Research scripts that write docs/ (not installed): `python -m studies.study`, `python -m studies.pformer_study`."""
