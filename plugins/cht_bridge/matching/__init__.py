"""Patient matching for reverse pipelines: decide whether each person of an EMR list is an
existing CHT contact (link), needs a person to look (review), or is new.

A deterministic pass (shared identifier; phone + date of birth) runs first, then Splink 5 on an
in-process DuckDB scores the rest with the model shipped as ``model.json``, or with one trained on
the deployment's own people and reviewers' answers (``training.py``; ``python -m
cht_bridge.matching train``), passed as ``MatchConfig.model`` (``config_for_model``).

.. code-block:: python

    from cht_bridge.matching import MatchConfig, Person, match

    decisions = match(incoming, existing, MatchConfig(upper=0.99, lower=0.5))
"""

from cht_bridge.matching.decisions import Candidate, Decision, MatchConfig
from cht_bridge.matching.matcher import match
from cht_bridge.matching.phones import normalise_phone
from cht_bridge.matching.records import Person, from_cht_person, person_from_name

__all__ = [
    "Candidate",
    "Decision",
    "MatchConfig",
    "Person",
    "from_cht_person",
    "match",
    "normalise_phone",
    "person_from_name",
]
