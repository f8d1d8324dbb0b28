"""One error tree for CHT Bridge, so callers decide by type and never by message text.

The type says what the run should do next: a ``ConfigError`` or ``ScriptError`` stops the
pipeline before it reads anything, an ``AuthError`` stops the task at once without retrying (CHT
locks a login after 10 failures in 10 s), and a ``SourceError`` or ``TransportError`` means the
batch was not handled and its checkpoint must not move. A document that cannot be mapped is not
an exception at all: it is recorded as failed, with its reason, and the run goes on.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cht_bridge.destinations.base import Result


class ChtBridgeError(Exception):
    """Root of every error raised by CHT Bridge."""


class ConfigError(ChtBridgeError):
    """A pipeline file or CHT ``app_settings`` is invalid.

    The message names the file and every key at fault, so one read of the task log is enough
    to fix it.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n  - ".join(self.problems)
        super().__init__(f"{source}: invalid pipeline configuration:\n  - {lines}")


class SettingError(ConfigError, ValueError):
    """A deployment setting (an environment variable) cannot be read.

    A ``ConfigError``: the task fails at once with this message and without retries (a person must
    fix the deployment; a retry would read the same value). The message names the variable.
    """

    def __init__(self, variable: str, problem: str) -> None:
        self.source, self.problems = variable, [problem]
        Exception.__init__(self, f"setting {variable}: {problem}")


class UnusableConnection(ConfigError):
    """An Airflow Connection a deployment must provide is missing or incomplete (not a pipeline file's
    fault): a ``ConfigError``, so the task fails once, with a message naming the Connection."""

    def __init__(self, conn_id: str, problem: str) -> None:
        self.source, self.problems = f"connection '{conn_id}'", [problem]
        Exception.__init__(self, f"Airflow connection '{conn_id}' {problem}")


class ParamError(ChtBridgeError, ValueError):
    """A run's Params contradict each other or cannot be read (a backfill window, a replay selection)."""


class ScriptError(ChtBridgeError):
    """A ``relevant_to`` or ``expr`` JavaScript snippet does not compile."""


class SourceError(ChtBridgeError):
    """CHT or CouchDB answered in a way the extractor cannot use (not an auth problem).

    ``status`` is the HTTP status when there was an answer, ``None`` when the server could not
    be reached.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


#: Statuses with which a server says the credentials themselves were refused (400: a token endpoint's
#: ``invalid_client``/``invalid_grant``).
_CREDENTIAL_ANSWERS = (400, 401, 403)


class AuthError(ChtBridgeError):
    """A connection's credentials were refused (401/403). Retrying would only lock the account."""

    def __init__(self, conn_id: str, status: int, system: str) -> None:
        self.conn_id = conn_id
        self.status = status
        if status in _CREDENTIAL_ANSWERS:
            what = "Check the login and password of that connection"
            refused = "refused the credentials of"
        else:  # 404, 405, ...: the login went to the wrong place, the password may be right
            what = "That is not an answer about credentials: check the host, port and path of that connection"
            refused = "refused the login of"
        super().__init__(
            f"{system} {refused} Airflow connection '{conn_id}' (HTTP {status}). "
            f"{what}; the task was stopped without retrying so the account is not locked."
        )


class PreflightError(ChtBridgeError):
    """A destination's pre-flight check found the run cannot succeed (e.g. DHIS2 lacks a data element).

    Raised before anything is sent; a person must fix the destination or the pipeline file, so the
    task fails without retrying.
    """

    def __init__(self, conn_id: str, reason: str) -> None:
        self.conn_id = conn_id
        super().__init__(f"the destination of Airflow connection '{conn_id}' failed its pre-flight check: {reason}")


class TransportError(ChtBridgeError):
    """A destination could not be reached (connection refused, timeout).

    Safe to retry: nothing was recorded for the batch, so its checkpoint did not move.
    """


class DestinationBusyError(TransportError):
    """Every send slot of a destination Connection stayed taken by other tasks for the whole wait.

    A forward batch is sent in one slot: nothing of it was sent or recorded and the checkpoint did
    not move; Airflow's retry (or the next run) reads the batch again. A DHIS2 aggregate post takes
    a slot per chunk, so the chunks before the refused one (``chunks_sent``) may already be in
    DHIS2: nothing of the post is recorded, its periods stay pending, and the retry posts them whole
    again, which DHIS2 imports as the same values (``CREATE_AND_UPDATE``). No document's failures
    are counted.
    """

    def __init__(self, conn_id: str, slots: int, waited_s: float, chunks_sent: int = 0, chunks: int = 0) -> None:
        self.conn_id, self.slots, self.waited_s = conn_id, slots, waited_s
        self.chunks_sent = chunks_sent
        taken = (
            f"destination connection '{conn_id}': its {slots} send slots stayed taken by other tasks for "
            f"{waited_s:.0f} s"
        )
        if chunks_sent:
            super().__init__(
                f"{taken}; the first {chunks_sent} of {chunks} chunks had been sent, the rest were not. Nothing is "
                f"recorded as sent: the periods stay pending, and a retry or the next run posts them again whole "
                f"(DHIS2 imports the same values again without duplicates)"
            )
        else:
            super().__init__(f"{taken}; nothing of this batch was sent, and a retry or the next run sends it")


class CircuitOpenError(TransportError):
    """A destination failed too many tries in a row (down, overloaded, unreachable); sending stopped.

    ``results`` are the deliveries of the call that finished before it stopped (delivered or
    failed), so they can still be recorded; every other document stays pending for the next run.
    """

    def __init__(self, conn_id: str, failures: int, last_error: str | None, results: list[Result]) -> None:
        self.conn_id = conn_id
        self.failures = failures
        self.results = list(results)
        super().__init__(
            f"destination connection '{conn_id}' failed {failures} times in a row (last: {last_error}); "
            f"stopped sending. The documents not yet delivered stay pending and the next run resumes."
        )


class AnswerLimitError(ChtBridgeError):
    """An answer's body broke its read limits: larger than the cap, or not complete by the deadline.

    ``too_large`` says which. A too-large answer would be as large again, so it is not worth
    repeating; a slow one is handled like a timeout. Callers turn it into their own error (a
    ``SourceError``, a failed delivery); the connection it came on has been closed.
    """

    def __init__(self, message: str, *, too_large: bool) -> None:
        self.too_large = too_large
        self.status: int | None = None  # the answer's status, set by ``http.read.request_within``
        super().__init__(message)


# Line breaks, C0/C1 controls (ESC starts a terminal escape) and the bidi overrides that reorder
# what a reader sees; \s+ also folds tabs and the Unicode line and paragraph separators.
_NOT_ONE_LINE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+")


def one_line(text: str | None) -> str | None:
    """A reason as the ledgers store it and the logs show it: one line, no control characters.

    Reasons come from outside (a destination's answer, CHT's words, a source's cell); a reason
    with a newline could forge a log line, and an escape sequence could rewrite a terminal.
    """
    if text is None:
        return None
    return _NOT_ONE_LINE.sub(" ", text).strip()
