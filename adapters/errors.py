"""The error types of latentfield. They live at the bottom of the package (``adapters`` imports
nothing of ``probe``), so every layer can raise them; the CLI prints each as one line."""


class UsageError(ValueError):
    """Bad input from the user (a path, a number, a data file); shown without a traceback.

    Library messages name Python parameters (``max_steps``); the CLI shows them as flags (``--max-steps``).
    """


class AdapterError(ValueError):
    """A user-facing problem with a model spec or checkpoint (reported as one line by the CLI)."""


USER_ERRORS = (UsageError, AdapterError)
