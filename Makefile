# The two commands a fresh machine needs (see README): `make demo` and `make test`.
.PHONY: setup demo test

setup:
	sh scripts/setup.sh

demo: setup
	sh scripts/demo.sh

test: setup
	.venv/bin/python -m pytest -q -ra
