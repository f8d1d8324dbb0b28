"""Airflow hooks: Connections turned into CHT clients, destinations and the state store."""

from cht_bridge.hooks.cht import ChtHook
from cht_bridge.hooks.destination import open_destination_from_connection
from cht_bridge.hooks.state import bridge_home, default_state_url, open_state_store

__all__ = ["ChtHook", "bridge_home", "default_state_url", "open_state_store", "open_destination_from_connection"]
