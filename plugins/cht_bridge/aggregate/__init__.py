"""DHIS2 aggregates computed from CHT reports (``destination.dhis2.kind: aggregate``).

A run reads what changed in CHT (the ``_changes`` feed, as a sync run does), finds the DHIS2
periods those reports belong or belonged to, recomputes each of those periods from all of its
reports (``reports_by_date``), and posts whole periods as ``dataValueSets``, so an edited or
deleted report changes a value instead of adding to it. ``periods`` names and bounds DHIS2
periods, ``destinations.dhis2.org_units`` reads the place → org unit table, ``compute`` aggregates page by page,
``post`` sends and reads the import summaries, ``ledger`` keeps what was sent, ``run`` is one
run and ``reconcile`` compares CHT with what DHIS2 holds. pandas is imported inside functions.
"""
