"""The CHT Bridge page in the Airflow UI: pipelines, dead letters and replays, reverse rows waiting.

``app.py`` is a FastAPI app that Airflow's api-server mounts (``plugins/cht_bridge_plugin.py``);
``service.py`` and ``queries.py`` answer from the pipeline files, the state stores and Airflow's
runs; ``pages.py`` renders the HTML; ``airflow_api.py`` triggers replays through Airflow's REST API
as the user. Nothing here is imported by DAG files or tasks.
"""
