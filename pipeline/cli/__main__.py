"""`python -m pipeline.cli`: the same as the `dmp` console script."""

from pipeline.cli import main

main()
