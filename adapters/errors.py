"""The error types of latentfield. They live at the bottom of the package (``adapters`` imports
nothing of ``probe``), so every layer can raise them; the CLI prints each as one line."""


class UsageError(ValueError):
    """Bad input from the user (a path, a number, a data file); shown without a traceback.

    Library messages name Python parameters (``max_steps``); the CLI shows them as flags (``--max-steps``).
    """


class AdapterError(ValueError):
    """A user-facing problem with a model spec or checkpoint (reported as one line by the CLI)."""


class WriteError(UsageError, OSError):
    """A file could not be written: a full disk (ENOSPC), a quota (EDQUOT), a read-only file system (EROFS),
    no permission (EACCES). One line naming the file and the cause, e.g. ``cannot write
    out/chunks/00003.safetensors: No space left on device``; the CLI prints it as a usage error (exit code 2).

    Also an ``OSError`` (``errno``, ``strerror`` and ``filename`` set), so code that handles a failed write as
    an ``OSError`` still does. ``path``: the file that was being written; ``cause``: the system's words.
    """

    def __init__(self, path: object, cause: str, errno: int | None = None) -> None:
        super().__init__(f"cannot write {path}: {cause}")
        self.path, self.cause = str(path), cause
        self.errno, self.strerror, self.filename = errno, cause, str(path)

    def __str__(self) -> str:  # the one line, not OSError's "[Errno 28] ..." form
        return str(self.args[0])


class ModelError(RuntimeError):
    """The model itself failed: its encode or decode raised, or returned something that is not a batch of
    the expected shape. The message names the model, the call and the shapes; the original exception,
    if any, is the ``__cause__``. The CLI prints it as one line and exits with code 3.

    ``note``: what the caller adds on the way up (e.g. the run layer: how many seeds are safe on disk);
    printed after the message.
    """

    def __init__(self, message: str, note: str = "") -> None:
        super().__init__(message)
        self.note = note

    def add_note_text(self, text: str) -> None:
        """Append ``text`` to :attr:`note` (joined by "; ")."""
        self.note = f"{self.note}; {text}" if self.note else text


def first_line(e: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters), for one-line reports of an exception."""
    text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


USER_ERRORS = (UsageError, AdapterError)
EXIT_USAGE, EXIT_MODEL = 2, 3  # the CLI's exit codes for USER_ERRORS and ModelError
