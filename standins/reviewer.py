"""A scripted reviewer for the demo and the tests: answers Airflow's human-in-the-loop questions.

A person answers a reverse pipeline's review questions in the Airflow UI (Browse → Required
Actions) or through the REST API. ``dag.test()`` has neither, so this thread polls the metadata
database for open questions and records an answer exactly as the API's
``PATCH .../hitlDetails`` handler does: it writes the response on the question and resumes the
parked task instance. What to answer is the caller's ``choose(question) -> option`` function;
``question.offer`` is what the question offers (the row and its candidates' CHT ids), read from
the question as a program reads it (``cht_bridge.reverse.choices``), not from its table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cht_bridge.reverse.choices import Offer


@dataclass(frozen=True)
class Question:
    dag_id: str
    task_id: str
    map_index: int
    subject: str
    body: str
    options: list[str]

    @property
    def offer(self) -> Offer:
        """The list row asked about and the CHT ids of the candidates offered, by 0-based index."""
        from cht_bridge.reverse.choices import read_offer

        return read_offer(self.body)


#: seconds after which an answered question whose task is still parked is resumed again
RESUBMIT_AFTER_S = 3.0
#: seconds after which a task still parked is failed, so a stuck ``dag.test()`` ends instead of hanging
GIVE_UP_S = 90.0


class ScriptedReviewer(threading.Thread):
    """Answer every open question of ``dag_id`` with ``choose``; ``stop()`` when the run is over."""

    def __init__(self, dag_id: str, choose: Callable[[Question], str], name: str = "demo-reviewer") -> None:
        super().__init__(daemon=True, name=f"reviewer-{dag_id}")
        self.dag_id = dag_id
        self.choose = choose
        self.reviewer = {"id": name, "name": name}
        self.answered: list[tuple[Question, str]] = []
        self.errors: list[BaseException] = []
        self._first_seen: dict[str, float] = {}
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
            waiting = session.execute(
                select(HITLDetail, TaskInstance)
                .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
                .where(TaskInstance.dag_id == self.dag_id, TaskInstance.state == TaskInstanceState.AWAITING_INPUT)
            ).all()
            now = timezone.utcnow()
            for detail, ti in waiting:
                first = self._first_seen.setdefault(str(ti.id), time.monotonic())
                if time.monotonic() - first > GIVE_UP_S:
                    ti.state = TaskInstanceState.FAILED
                    session.commit()
                    self.errors.append(
                        TimeoutError(f"{ti.task_id}[{ti.map_index}] still awaiting input after {GIVE_UP_S} s")
                    )
                    continue
                if detail.responded_at is not None:
                    # Answered, yet still parked: the task's own "park" landed after the answer
                    # (SQLite has no row locks to order them). Resume it again with the same answer.
                    if now - detail.responded_at > timedelta(seconds=RESUBMIT_AFTER_S):
                        handle_event_submit(
                            TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session
                        )
                        session.commit()
                    continue
                question = Question(
                    ti.dag_id, ti.task_id, ti.map_index, detail.subject, detail.body or "", list(detail.options)
                )
                choice = self.choose(question)
                detail.responded_by = self.reviewer
                detail.responded_at = now
                detail.chosen_options = [choice]
                detail.params_input = {}
                session.add(detail)
                handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)
                session.commit()
                self.answered.append((question, choice))
