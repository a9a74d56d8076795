"""Typed errors for users. Each message names the offending value and the fix."""


class AutoplanError(Exception):
    """Base of every error a user can meet; the CLI prints it as one line and exits 2."""


class ConfigError(AutoplanError):
    """Bad input: an unknown preset, an unreadable file, a malformed plan or config."""


class InfeasiblePlanError(AutoplanError):
    """The plan (or every plan the search tried) cannot run: it does not fit or does not divide."""
