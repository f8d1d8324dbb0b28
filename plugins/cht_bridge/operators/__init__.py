"""Airflow operators."""

from cht_bridge.operators.sync import ChtReplayOperator, ChtSyncOperator

__all__ = ["ChtReplayOperator", "ChtSyncOperator"]
