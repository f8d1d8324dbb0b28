"""Local stand-ins for the systems CHT Bridge talks to, for the tests, the demo and `make airflow`:
a real pouchdb-server behind a local CHT API, synthetic CHT data and lists, a demo receiving
endpoint, a FHIR server and a JSON list server, and a scripted reviewer.

They live outside ``include/`` on purpose: ``include/`` is mounted into every Airflow container
(docker-compose.yaml), and none of this belongs in a deployment. Their working files go to
``.sandbox/`` (ignored by git).
"""
