"""The exceptions every module may raise (UserError, its subclass DataError, StageFinished), and nothing else.

Imports nothing: any module of sql-rlvr can use it without an import cycle. The entry scripts turn
a UserError into one line on stderr (run_folders.run_main).
"""


class UserError(Exception):
    """A problem the user can fix (missing file, bad data, wrong flag): printed as one line."""


class StageFinished(Exception):
    """`--resume` on a stage that is already finished: the message says so and the script exits 0."""


class DataError(UserError):
    """A dataset or database that cannot be read (missing, malformed, empty): says what and how to get it."""
