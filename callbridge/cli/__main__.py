"""`python -m callbridge.cli`: the console script, as the tests and benchmarks start it."""

from callbridge.cli import main

main()
