"""The Airflow plugin of CHT Bridge: its page and API in the Airflow UI (``cht_bridge.ui``).

Airflow's plugin manager finds this module in the plugins folder. The api-server mounts the
FastAPI app at ``/cht-bridge`` and the UI shows it under "CHT Bridge" in the navigation. The app
is built lazily by the api-server only: other components that load plugins (scheduler, workers)
import just this file.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin


class _LazyApp:
    """An ASGI app that imports the real one on first use (FastAPI and the queries only in the api-server)."""

    _app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from cht_bridge.ui.app import app

            type(self)._app = app
        await self._app(scope, receive, send)


class ChtBridgePlugin(AirflowPlugin):
    name = "cht_bridge"
    fastapi_apps = [{"name": "CHT Bridge", "app": _LazyApp(), "url_prefix": "/cht-bridge"}]
    external_views = [
        {
            "name": "CHT Bridge",
            "href": "/cht-bridge/",
            "destination": "nav",
            "url_route": "cht-bridge",
            "category": "browse",
        }
    ]
