"""Pipeline files: load and check them, or import them from a CHT ``app_settings.json``."""

from cht_bridge.config.app_settings import ImportedPush, pipelines_from_app_settings
from cht_bridge.config.loader import load_pipeline, parse_pipeline
from cht_bridge.config.model import Auth, Destination, Pipeline

__all__ = [
    "Auth",
    "Destination",
    "ImportedPush",
    "Pipeline",
    "load_pipeline",
    "parse_pipeline",
    "pipelines_from_app_settings",
]
