"""FHIR R4 as the bridge writes it: deterministic ids, templates from CHT documents, validation.

Shared by the ``fhir`` (any R4 server, transaction bundles) and ``openmrs`` (OpenMRS FHIR2, one
resource a request) destination kinds. A FHIR pipeline's mapped payload is a list of resources
(one resource is a list of one), each with ``resourceType`` and a deterministic ``id``
(``ids.resource_id``), referring to each other as ``"Type/id"``; the destination turns those into
``urn:uuid`` entries of a bundle or into requests in order.

- ``ids.py``: the deterministic ids.
- ``templates.py``: a pipeline's ``fhir:`` block (templates and their fields' sources), checked
  at parse time in pure Python.
- ``build.py``: one document's evaluated fields -> its resources (run time).
- ``validate.py``: whether a payload may be sent (R4 models plus the checks they do not make).
"""
