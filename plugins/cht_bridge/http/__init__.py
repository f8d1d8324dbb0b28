"""HTTP as every source and destination speaks it: one place for each rule.

``retry`` (what is retryable, backoff, ``Retry-After``, the circuit breaker), ``read`` (the read
loop, answers read within a deadline and a size cap, ``safe_url``), ``reasons`` (the one parser of
an error answer's reason), ``origin`` (credentials only to their Connection's origin) and
``auth`` (an auth setting plus a Connection's login and secret become a session). Nothing here
reads an Airflow Connection: ``cht_bridge.hooks`` does, and hands the values in.
"""
