"""``python -m bench.invoicing``: the bill-run benchmark (see ``billrun_bench``)."""

from bench.invoicing.billrun_bench import main

main()
