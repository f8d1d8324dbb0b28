"""Local sandbox: a real pouchdb-server, synthetic CHT data and a demo receiving endpoint."""
