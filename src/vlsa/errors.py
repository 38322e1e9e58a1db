"""User-facing errors.

Anything a user can cause (a missing file, a corrupt NIfTI, a config typo) is raised as a
`VlsaError` whose message is one line naming the file or key and the problem. The CLI prints it
as `vlsa: error: <message>` and exits with status 2; no traceback reaches the user.
"""

from __future__ import annotations

from pathlib import Path


class VlsaError(Exception):
    """A problem with the user's input, reported as one line (exit status 2)."""


class DataError(VlsaError):
    """A dataset file or folder is missing, corrupt or inconsistent."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class DataErrors(VlsaError):
    """Several DataErrors found in one pass (`vlsa verify` checks every domain and split before it
    stops); the CLI prints one `vlsa: error:` line per problem, then exits with status 2."""

    def __init__(self, errors: list[DataError], note: str = ""):
        self.errors, self.note = list(errors), note
        super().__init__(f"{len(self.errors)} problem(s){': ' + note if note else ''}")

    @property
    def lines(self) -> list[str]:
        return [str(e) for e in self.errors] + [str(self)]


class ConfigError(VlsaError):
    """A config key is unknown, mistyped or out of range."""


class CheckpointError(VlsaError):
    """A checkpoint is missing, unsafe or belongs to another model."""


class Interrupted(VlsaError):
    """Training stopped by a signal after saving its last checkpoint; exit status 128 + the signal's
    number (130 for SIGINT / Ctrl-C, 143 for SIGTERM), as a shell reports a process a signal ended."""

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.exit_status = 128 + int(signum)
