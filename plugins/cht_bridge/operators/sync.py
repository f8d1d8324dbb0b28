"""The operator that runs one pipeline: its whole sync is one task.

Streaming every batch through one task keeps payloads out of XCom and lets each batch commit
its checkpoint as it goes; the task returns only the run's counts.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException


class ChtSyncOperator(BaseOperator):
    """Sync a CHT database to a pipeline's destination.

    The pipeline file is read again when the task runs, so a task always uses the file as it is
    then; an invalid file fails the task with the file, key and reason, without retries.

    :param pipeline_file: path of the pipeline YAML file.
    """

    ui_color = "#dff0d8"

    def __init__(self, *, pipeline_file: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline_file = pipeline_file

    def execute(self, context: Any) -> dict[str, Any]:
        from cht_bridge.config import load_pipeline
        from cht_bridge.errors import AuthError, ConfigError, ScriptError
        from cht_bridge.hooks import ChtHook, open_state_store, rest_destination
        from cht_bridge.mapping import Mapper
        from cht_bridge.sync import run_pipeline

        try:
            pipeline = load_pipeline(self.pipeline_file)
            mapper = Mapper.for_pipeline(pipeline)
        except (ConfigError, ScriptError) as exc:
            raise AirflowFailException(str(exc)) from None
        store = destination = None
        try:
            client = ChtHook(pipeline.cht_conn_id).get_client(pipeline.cht_db)
            client.info()  # proves the credentials before anything is read or sent
            destination = rest_destination(pipeline.destination, source=pipeline.source)
            store = open_state_store(pipeline.state_conn_id)
            summary = run_pipeline(
                pipeline, client=client, destination=destination, store=store, mapper=mapper, logger=self.log
            )
            failures = store.failures(pipeline.name, limit=10)
        except (AuthError, ConfigError) as exc:
            raise AirflowFailException(str(exc)) from None
        finally:
            mapper.close()
            if destination is not None:
                destination.close()
            if store is not None:
                store.close()
        if failures:
            self.log.warning("pipeline %s: latest failed documents in the ledger:", pipeline.name)
            for row in failures:
                self.log.warning("  %s (HTTP %s): %s", row["doc_id"], row["response_status"], row["last_error"])
        return summary.as_dict()
