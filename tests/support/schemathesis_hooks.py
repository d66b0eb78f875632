"""Schemathesis hooks for tests/test_query_api.py (loaded through
SCHEMATHESIS_HOOKS): an NDJSON serializer, so `POST /v1/events` is also
tested with `application/x-ndjson` bodies (one event a line)."""
import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    return (json.dumps(value) + "\n").encode()
