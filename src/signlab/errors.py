"""The one exception type users see: it says what went wrong, where, and what to do."""


class SignlabError(Exception):
    """A problem with the user's input or set-up; the CLI prints it without a traceback."""


class Interrupted(SignlabError):
    """The user stopped a long job (Ctrl-C); the message says how to continue it."""

    exit_code = 130  # the shell's convention for SIGINT
