"""The tasks of a reverse pipeline: receive, match, write, and a person's review in between.

Each task reads the pipeline file again when it runs and keeps its work in the inbound ledger;
XCom carries counts, the (source id, version) keys of the rows waiting for review and a replay's
list of ids and reasons, never the rows themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import BaseOperator

from cht_bridge.reverse.choices import LATER, Choice, option_labels

STEPS = ("receive", "match", "write", "reviews")


@contextmanager
def ledger_for(pipeline: Any) -> Iterator[Any]:
    from cht_bridge.hooks import open_state_store
    from cht_bridge.state.inbound import InboundLedger

    store = open_state_store(pipeline.state_conn_id)
    try:
        yield InboundLedger(store)
    finally:
        store.close()


def cht_api(pipeline: Any) -> Any:
    from cht_bridge.hooks import ChtHook

    return ChtHook(pipeline.target.conn_id).get_api_client(pipeline.target.timeout)


def places_for(pipeline: Any, api: Any = None) -> Any:
    """The place table, with ``phone:`` codes resolved where CHT has the phone registered."""
    from cht_bridge.reverse.phone_places import RegisteredPlaces
    from cht_bridge.reverse.places import load_place_table

    return RegisteredPlaces(load_place_table(pipeline.places.table), api or cht_api(pipeline), pipeline.match.region)


class ReverseStepOperator(BaseOperator):
    """One step of a reverse pipeline: ``receive`` (and a replay of the rows the run's Params
    choose), ``match``, ``write``, or ``reviews`` (the ``[source id, version]`` keys of the rows
    waiting for a person, which the review task maps over). In a replay's dry run ``receive`` only
    lists what the replay would put back, and the other steps are skipped.

    :param pipeline_file: path of the reverse pipeline's YAML file.
    :param step: which step this task runs.
    """

    ui_color = "#d9edf7"

    def __init__(self, *, pipeline_file: str, step: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if step not in STEPS:
            raise ValueError(f"step must be one of {STEPS}")
        self.pipeline_file = pipeline_file
        self.step = step

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowSkipException

        from cht_bridge.operators.params import replay_choice
        from cht_bridge.operators.resources import failing_plainly
        from cht_bridge.reverse.loader import load_reverse_pipeline

        with failing_plainly():
            pipeline = load_reverse_pipeline(self.pipeline_file)
            choice = replay_choice(context.get("params") or {})
            dry_run = choice is not None and choice.dry_run
            if dry_run and self.step != "receive":
                raise AirflowSkipException("dry run of a replay: nothing is read, matched or written")
            with ledger_for(pipeline) as ledger:
                if self.step == "reviews":  # what the review task is mapped over: ids only
                    from cht_bridge.reverse.review import review_order
                    from cht_bridge.state.inbound import REVIEW

                    return review_order(ledger.rows(pipeline.name, [REVIEW]))
                counts = (
                    {} if dry_run else getattr(self, f"_{self.step}")(pipeline, ledger, context["run_id"]).as_xcom()
                )
                if self.step == "receive" and choice is not None:  # after the read: a newer version wins
                    counts["replay"] = self._replay(pipeline, ledger, context["run_id"], choice).as_xcom()
                self.log.info("%s %s: %s; ledger %s", pipeline.name, self.step, counts, ledger.counts(pipeline.name))
                if not dry_run:
                    self._metrics(pipeline.name, ledger, counts)
                return counts

    def _metrics(self, name: str, ledger: Any, counts: dict[str, Any]) -> None:
        from cht_bridge.operators import metrics
        from cht_bridge.ui.queries import reverse_lag_seconds

        lag = reverse_lag_seconds(ledger.store, name) if self.step == "write" else None
        metrics.reverse_step(name, self.step, counts, lag)

    def _replay(self, pipeline: Any, ledger: Any, run_id: str, choice: Any) -> Any:
        from cht_bridge.reverse.run import replay

        return replay(pipeline, ledger, places_for(pipeline), choice, run_id)

    def _receive(self, pipeline: Any, ledger: Any, run_id: str) -> Any:
        from cht_bridge.hooks.source import open_source
        from cht_bridge.mapping import Mapper
        from cht_bridge.reverse.run import receive

        mapper = Mapper(
            pipeline.name, pipeline.relevant_to, pipeline.mapping, source=pipeline.file,
            timeout_ms=pipeline.script_timeout_ms,
        )  # fmt: skip
        try:
            return receive(pipeline, open_source(pipeline.source), mapper, ledger, run_id)
        finally:
            mapper.close()

    def _match(self, pipeline: Any, ledger: Any, run_id: str) -> Any:
        from cht_bridge.reverse.run import match_received

        api = cht_api(pipeline)
        return match_received(pipeline, ledger, api, places_for(pipeline, api), run_id)

    def _write(self, pipeline: Any, ledger: Any, run_id: str) -> Any:
        from contextlib import nullcontext

        from cht_bridge.reverse.run import write_ready
        from cht_bridge.sync.gate import send_slots

        # It only writes CHT, so it holds one of the CHT API Connection's send slots for the whole step
        # (when limits are on): nothing else of the task waits meanwhile.
        slots = send_slots(ledger.store, pipeline.target.conn_id)
        with slots.held() if slots is not None else nullcontext():
            return write_ready(pipeline, ledger, cht_api(pipeline), run_id)


class MatchReviewOperator(HITLOperator):
    """Ask a person who a list row is: one of the candidates, a new person, skip, or later.

    The question shows the row and its candidates side by side with their probability (the
    reviewer needs names and dates to decide, so they are in the Airflow UI's question, never in
    logs or XCom). The answer goes into the ledger at once and the next ``write`` task of the same
    run writes it to CHT. Without an answer before ``review.timeout_hours`` the row stays in review
    and is asked again by the next run.

    :param review_key: ``[source_id, source_version]`` of the row.
    """

    ui_color = "#fcf8e3"

    def __init__(self, *, pipeline_file: str, review_key: list[str], max_candidates: int = 3, **kwargs: Any) -> None:
        kwargs.setdefault("subject", "Who is this person?")
        super().__init__(options=option_labels(range(max_candidates)), defaults=[LATER.label], **kwargs)
        self.pipeline_file = pipeline_file
        self.review_key = review_key

    def execute(self, context: Any) -> Any:
        from cht_bridge.operators.resources import failing_plainly
        from cht_bridge.reverse.loader import load_reverse_pipeline
        from cht_bridge.reverse.review import review_question
        from cht_bridge.state.inbound import REVIEW

        with failing_plainly():
            pipeline = load_reverse_pipeline(self.pipeline_file)
            with ledger_for(pipeline) as ledger:
                row = ledger.get(pipeline.name, *self.review_key)
                if row is None or row.status != REVIEW:
                    self.log.info("record %s is no longer waiting for review", self.review_key[0])
                    return {"source_id": self.review_key[0], "status": None if row is None else row.status}
                question = review_question(pipeline, row, cht_api(pipeline))
        self.subject, self.body = question.subject, question.body
        self.options = question.options
        self.log.info("record %s waits for a reviewer (%d candidates)", row.source_id, len(row.candidates))
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        from cht_bridge.operators.resources import failing_plainly
        from cht_bridge.reverse.loader import load_reverse_pipeline
        from cht_bridge.reverse.run import apply_choice

        answer = super().execute_complete(context, event)
        label = answer["chosen_options"][0]  # one of self.options: Airflow checked it
        who = (answer.get("responded_by_user") or {}).get("name") or "reviewer"
        with failing_plainly():
            choice = Choice.parse(label)
            pipeline = load_reverse_pipeline(self.pipeline_file)
            with ledger_for(pipeline) as ledger:
                row = apply_choice(pipeline, ledger, tuple(self.review_key), choice, who)
        self.log.info("record %s: %s chose %r → %s", self.review_key[0], who, label, row and row.status)
        return {"source_id": self.review_key[0], "choice": label, "status": row and row.status}
