"""Destinations: where payloads go. Each implements ``send(deliveries) -> results``."""

from cht_bridge.destinations.base import Delivery, Destination, Result
from cht_bridge.destinations.rest import RestDestination

__all__ = ["Delivery", "Destination", "RestDestination", "Result"]
