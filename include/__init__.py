"""Non-DAG helpers shipped next to the DAGs (sandbox, pipeline examples)."""
