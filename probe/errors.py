"""Errors that mean "the user asked for something invalid": the CLI prints them as one line."""
from latentfield.adapters.base import AdapterError


class UsageError(ValueError):
    """Bad input from the user (a path, a number, a data file); shown without a traceback."""


USER_ERRORS = (UsageError, AdapterError)
