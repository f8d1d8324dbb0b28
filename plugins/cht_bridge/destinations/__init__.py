"""Destinations: where payloads go. Each implements ``send(deliveries) -> results``."""

from cht_bridge.destinations.base import Delivery, Destination, Result
from cht_bridge.destinations.rest import RestDestination
from cht_bridge.destinations.retry import CircuitBreaker, RetryPolicy, classify

__all__ = ["CircuitBreaker", "Delivery", "Destination", "RestDestination", "Result", "RetryPolicy", "classify"]
