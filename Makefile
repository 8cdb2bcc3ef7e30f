# The two commands a fresh machine needs (see README): `make demo` and `make test`.
# `make ci` (what .ci/run calls) is `make lint` (ruff, then mypy), `make test`, then the slow tier (paper-size
# models, a wheel installed into a fresh venv, plain timm exports). `make mutation` (not part of CI) measures the
# unit tier's mutation score.
.PHONY: setup demo lint test unit slow ci mutation

setup:
	sh scripts/setup.sh

demo: setup
	sh scripts/demo.sh

# ruff (rules, line length, complexity) over the repository, mypy over the modules pyproject.toml lists.
lint: setup
	.venv/bin/python -m ruff check .
	.venv/bin/python -m mypy

# The unit tier first (fast, fails fast), then everything else that is not slow-marked.
test: setup
	.venv/bin/python -m pytest -q -ra -x --durations=15 tests/unit
	.venv/bin/python -m pytest -q -ra -n 2 --durations=15 -m "not slow" --ignore=tests/unit

unit: setup
	.venv/bin/python -m pytest -q -ra tests/unit

slow: setup
	.venv/bin/python -m pytest -q -ra -n 2 -m slow --ignore=tests/unit

ci: lint test slow

mutation: setup
	sh scripts/mutation.sh
