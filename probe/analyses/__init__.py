"""Analyses: pure calculations over tensors and arrays (memorization, copying, comparison of attractor sets,
the dictionary test, OOD scores and metrics, field geometry). No file I/O, no progress bars, no probing and
no figures; a model passed in is used as a function (encode, decode, f), never iterated to attractors."""
