"""What a pipeline task opens and closes, and how its errors reach the Airflow UI.

Both the sync and the replay task need the same four things (CHT client, destination, state
store, compiled mapping: ``sync.resources.opened``), the same error translation (a broken file or refused credentials fail
at once without retries; an outage fails and is retried by Airflow) and the same ledger summary
at the end of the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException


@contextmanager
def failing_plainly() -> Iterator[None]:
    """Translate CHT Bridge errors into the Airflow exception that does the right thing next."""
    from cht_bridge.errors import (
        AuthError,
        CircuitOpenError,
        ConfigError,
        DestinationBusyError,
        ParamError,
        PreflightError,
        ScriptError,
    )
    from cht_bridge.mapping.engine import ScriptStalled

    try:
        yield
    except (AuthError, ConfigError, ParamError, PreflightError, ScriptError) as exc:
        raise AirflowFailException(str(exc)) from None  # retrying cannot help; a person must act
    except (CircuitOpenError, DestinationBusyError, ScriptStalled) as exc:
        # An outage, a busy destination or a starved worker: Airflow's retries are the "next run",
        # without a traceback.
        raise AirflowException(str(exc)) from None


def dry_run_for(params: Any, pipeline: str, run_id: str) -> Any:
    """The run's dry-run collector when its ``dry_run`` Param is set, else ``None``."""
    from cht_bridge.hooks import bridge_home
    from cht_bridge.operators.params import DRY_RUN_SAMPLES
    from cht_bridge.storage import artifacts_root
    from cht_bridge.sync import DryRun

    if not params.get("dry_run"):
        return None
    samples = params.get("dry_run_payloads")  # null in the form: the default
    return DryRun.under(
        artifacts_root(bridge_home()), pipeline, run_id, DRY_RUN_SAMPLES if samples is None else int(samples)
    )


def finish(logger: logging.Logger, store: Any, pipeline: str, summary: Any, dry_run: Any, selection: dict) -> dict:
    """The task's XCom: the summary, plus the artifact's path after a dry run (else the ledger's state is logged)."""
    result = summary.as_dict()
    if dry_run is None:
        log_ledger(logger, store, pipeline)
        return result
    result["artifact"] = str(dry_run.write(pipeline, selection, result))
    logger.info(
        "pipeline %s dry run: %d payloads would be sent; see %s", pipeline, dry_run.would_send, result["artifact"]
    )
    return result


def log_ledger(logger: logging.Logger, store: Any, pipeline: str) -> dict[str, int]:
    """End a run's log with the ledger's state: counts per status and the latest failures."""
    counts = store.counts(pipeline)
    logger.info("pipeline %s ledger: %s", pipeline, ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "empty")
    failures = store.failures(pipeline, limit=10)
    if failures:
        logger.warning(
            "pipeline %s: %d dead letters (replay them with the cht_bridge_replay DAG) and %d pending; latest:",
            pipeline, counts.get("dead", 0), counts.get("failed", 0),
        )  # fmt: skip
        for row in failures:
            logger.warning(
                "  %s [%s] (HTTP %s): %s", row["doc_id"], row["status"], row["response_status"], row["last_error"]
            )
    return counts
