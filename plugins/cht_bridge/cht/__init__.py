"""CHT as the bridge talks to it: ``CouchClient`` reads the ``medic`` database (changes, views,
``_all_docs``) for the forward pipelines' extraction and the match step; ``ChtApiClient`` adds
CHT's people, records and contacts-by-phone APIs for the reverse pipelines. Both use the shared
read loop (``cht_bridge.http``); neither knows about sources or destinations."""

from cht_bridge.cht.api import ChtApiClient, WriteError
from cht_bridge.cht.couch import CouchClient

__all__ = ["ChtApiClient", "CouchClient", "WriteError"]
