"""Airflow operators."""

from cht_bridge.operators.sync import ChtSyncOperator

__all__ = ["ChtSyncOperator"]
