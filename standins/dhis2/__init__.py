"""A DHIS2 (2.38–2.42) stand-in for the tests and the demo, following destinations.md §1.

There is no DHIS2 that runs here (a Java WAR on PostgreSQL, §7.2), so this encodes the contract:

* **Auth** (§1.1): HTTP Basic, or ``Authorization: ApiToken d2pat_...``. Otherwise 401 with a
  ``WebMessage``: ``"Unauthorized"``, or ``"The API token does not exists."`` for an unknown token
  (dhis2-core's text).
* **Versions**: ``/api/...`` and ``/api/NN/...`` (NN = 37..42). The server version (``version``,
  default ``2.40.3``, ``GET /api/system/info``) is the API version of unversioned paths.
  ``POST /api/dataValueSets`` answers API < 38 with the bare ``ImportSummary`` and 38+ with it
  wrapped in a ``WebMessage`` (``response``). Tracker reads answer ≤ 2.40 with
  ``{"instances", "page", "pageSize"[, "total", "pageCount"]}`` and 2.41+ with
  ``{"pager": {...}, "<collection>": [...]}``. 2.41+ counts an unchanged data value as ignored
  (before: updated); ``rejectedIndexes`` exists from 2.39.
* **Aggregate** (§1.3, ``aggregate.py``): ``POST /api/dataValueSets`` (JSON only: 415 otherwise,
  400 when unparseable; 403 without ``F_DATAVALUE_ADD``) with the id scheme options (query or
  payload, payload wins; ``uid|code|name|attribute:<uid>``), ``dryRun``, ``importStrategy``,
  ``completeDate`` (registers completeness: ``dataSetComplete``) and ``skipExistingCheck`` (an
  existing value then breaks the import: ``ERROR``, nothing saved);
  upsert by natural key; ``async=true`` answers "Initiated DATAVALUE_IMPORT" with the job's
  ``relativeNotifierEndpoint`` (``/api/system/tasks/DATAVALUE_IMPORT/{id}``; the summary at
  ``/api/system/taskSummaries/DATAVALUE_IMPORT/{id}``); conflicts E7610/E7611/E7612/E7613/E7615/E7617/E7618/E7633 per value,
  E7600/E7601/E7603/E7604 for the whole set; 200 ``OK``, 409 ``WARNING`` (partial) or 409
  ``ERROR``. ``GET /api/dataValueSets?dataSet=&period=&orgUnit=[&children=true]`` (or
  ``startDate``/``endDate``; E2001/E2002/E2006 as 409 when a part is missing).
* **Tracker** (§1.4, ``tracker.py``): ``POST /api/tracker`` with ``async`` (default true: 200
  "Tracker job added", then ``GET /api/tracker/jobs/{id}`` and ``/jobs/{id}/report``),
  ``importStrategy``, ``atomicMode`` (``ALL`` default, ``OBJECT``), ``importMode`` (``VALIDATE``
  commits nothing), ``idScheme`` and ``orgUnit``/``program``/``programStage``/``dataElementIdScheme``; sync answers are the bare report, 409 when ``status`` is ``ERROR``.
  ``GET /api/tracker/{trackedEntities,enrollments,events,relationships}`` (§1.6) with
  ``program``, ``orgUnits``/``orgUnit``, ``orgUnitMode``/``ouMode``, ``updatedAfter``/``Before``,
  ``occurredAfter``/``Before``, ``page``/``pageSize``/``totalPages``, ``paging=false``/``skipPaging``;
  each version knows only its parameter names (``orgUnits``, ``orgUnitMode``, ``paging`` from 2.41;
  ``ouMode``, ``skipPaging`` up to 2.40; ``orgUnit`` up to 2.41) and ignores the others, and up to
  2.41 ``trackedEntities`` needs an org unit or an ``orgUnitMode`` that implies them (400 otherwise).
* **Metadata** (for the pre-flight): ``GET /api/{organisationUnits,dataElements,
  categoryOptionCombos,dataSets,programs,programStages,trackedEntityTypes,trackedEntityAttributes}``
  with ``filter=<field>:eq:<v>`` / ``:in:[a,b]``, ``fields``, ``paging=false`` (else a ``pager``),
  and ``/<collection>/<uid>`` (404 WebMessage when absent); ``GET /api/me`` (``authorities``,
  ``organisationUnits``: the capture scope); ``GET /api/system/id?limit=N``. Metadata is a
  ``Metadata`` given at start (``demo_metadata`` builds the demo's) and may change while serving.
* **Test hooks**: ``stats()`` (requests, ``data_requests`` = data writes, per path, and what is
  stored), ``set_value(...)`` (a value changed at DHIS2 behind the pipeline's back),
  ``configure(version=..., delay=...)``, ``tracker.count(kind, program=...)``.

Payloads are never logged (patient data): a log line holds the method, the path and the status.
"""

from standins.dhis2.metadata import DEFAULT_COC, Metadata, demo_metadata, is_uid
from standins.dhis2.server import Dhis2

__all__ = ["DEFAULT_COC", "Dhis2", "Metadata", "demo_metadata", "is_uid"]
