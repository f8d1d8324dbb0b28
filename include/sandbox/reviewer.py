"""A scripted reviewer for the demo and the tests: answers Airflow's human-in-the-loop questions.

A person answers a reverse pipeline's review questions in the Airflow UI (Browse → Required
Actions) or through the REST API. ``dag.test()`` has neither, so this thread polls the metadata
database for open questions and records an answer exactly as the API's
``PATCH .../hitlDetails`` handler does: it writes the response on the question and resumes the
parked task instance. What to answer is the caller's ``choose(question) -> option`` function.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    dag_id: str
    task_id: str
    map_index: int
    subject: str
    body: str
    options: list[str]


class ScriptedReviewer(threading.Thread):
    """Answer every open question of ``dag_id`` with ``choose``; ``stop()`` when the run is over."""

    def __init__(self, dag_id: str, choose: Callable[[Question], str], name: str = "demo-reviewer") -> None:
        super().__init__(daemon=True, name=f"reviewer-{dag_id}")
        self.dag_id = dag_id
        self.choose = choose
        self.reviewer = {"id": name, "name": name}
        self.answered: list[tuple[Question, str]] = []
        self.errors: list[BaseException] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def __enter__(self) -> ScriptedReviewer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._answer_open()
            except Exception as exc:  # noqa: BLE001 - reported to the caller, who fails the test
                self.errors.append(exc)
            self._halt.wait(0.5)

    def _answer_open(self) -> None:
        from airflow._shared.timezones import timezone
        from airflow.models.hitl import HITLDetail
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.trigger import handle_event_submit
        from airflow.triggers.base import TriggerEvent
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select

        with create_session() as session:
            open_questions = session.execute(
                select(HITLDetail, TaskInstance)
                .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
                .where(
                    TaskInstance.dag_id == self.dag_id,
                    TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                    HITLDetail.responded_at.is_(None),
                )
            ).all()
            for detail, ti in open_questions:
                question = Question(
                    ti.dag_id, ti.task_id, ti.map_index, detail.subject, detail.body or "", list(detail.options)
                )
                choice = self.choose(question)
                detail.responded_by = self.reviewer
                detail.responded_at = timezone.utcnow()
                detail.chosen_options = [choice]
                detail.params_input = {}
                session.add(detail)
                handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)
                session.commit()
                self.answered.append((question, choice))
