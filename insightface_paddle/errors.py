"""The one exception type the runtime raises for problems a user can cause."""


class InsightFaceError(Exception):
    """Bad input, a missing or corrupt model, a mismatched index: the message names the culprit.

    The CLI prints the message alone (no traceback) and exits non-zero.
    """


def describe_os_error(exc: OSError) -> str:
    """An error of the machine (permissions, a full disk, a missing file) as one line: the path
    it names, then the system's reason."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"
