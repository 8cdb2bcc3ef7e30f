#!/bin/sh
# Mutation score of the unit tier over the core modules (not part of CI; about 20-40 min on 2 cores).
#   make mutation            # or: sh scripts/mutation.sh
# The modules are [tool.mutmut] only_mutate in pyproject.toml; the tests are tests/unit. mutmut copies
# the package into mutants/, applies one mutation at a time and runs the unit tests that cover it.
# scripts/mutation_report.py then prints the score per module and every survivor that docs/testing.md
# does not list as equivalent.
set -eu
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install -q -e '.[mutation]'
rm -rf mutants
# One thread per test process: mutmut forks workers from a parent that has loaded torch and onnxruntime,
# and a forked child whose thread pool was started in the parent can wait forever (it uses no CPU time,
# so mutmut's CPU-time limit never fires).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/mutmut run --max-children "${MUTATION_JOBS:-2}" >/dev/null || true
.venv/bin/mutmut results --all true >mutants/results.txt
.venv/bin/python scripts/mutation_report.py mutants/results.txt docs/testing.md
