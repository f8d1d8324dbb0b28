"""Pipeline files: load and check them, or import them from a CHT ``app_settings.json``."""

from cht_bridge.config.app_settings import ImportedPush, pipelines_from_app_settings
from cht_bridge.config.loader import find_pipeline, load_pipeline, parse_pipeline
from cht_bridge.config.model import Auth, Deletes, DeliverySettings, DestinationConfig, Pipeline

__all__ = [
    "Auth",
    "Deletes",
    "DeliverySettings",
    "DestinationConfig",
    "ImportedPush",
    "Pipeline",
    "find_pipeline",
    "load_pipeline",
    "parse_pipeline",
    "pipelines_from_app_settings",
]
