"""The one exception type the training library raises for problems a user can cause."""


class ArcFaceError(Exception):
    """Bad data, a bad flag or config, a corrupt checkpoint: the message names the file, record,
    line or flag. Command-line tools print it alone and exit non-zero."""
