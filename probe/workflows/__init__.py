"""Workflows: what the commands do, as library functions. They probe (through ``rundir``), cache, call the
analyses and assemble results and files: audit, OOD benchmark, compare, extract, checkpoint dynamics and
the demo training."""
