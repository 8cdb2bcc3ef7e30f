# The two commands a fresh machine needs (see README): `make demo` and `make test`.
# `make mutation` (not part of CI) measures the unit tier's mutation score on the core modules.
.PHONY: setup demo test unit mutation

setup:
	sh scripts/setup.sh

demo: setup
	sh scripts/demo.sh

# The unit tier first (fast, fails fast), then everything else.
test: setup
	.venv/bin/python -m pytest -q -ra -x tests/unit
	.venv/bin/python -m pytest -q -ra -n 2 --ignore=tests/unit

unit: setup
	.venv/bin/python -m pytest -q -ra tests/unit

mutation: setup
	sh scripts/mutation.sh
