"""Analyses: pure functions over tensors and arrays. The CLI and the report only compose them."""
