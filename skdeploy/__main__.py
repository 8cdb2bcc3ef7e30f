"""`python -m skdeploy`: the CLI, for environments without the console script on PATH."""
from .cli import main

main()
