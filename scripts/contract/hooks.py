"""Schemathesis hooks for scripts/contract.sh: what api/openapi.yaml states in prose but JSON Schema
cannot express. Nothing here changes what is generated or checked, except:

- application/x-ndjson: the document models the body as one NewEvent or an array of them, one
  per line; this serializer writes each as one line of JSON, as a client does.
- RULES: a schema-valid request refused with 400 is a failure (positive_data_acceptance), unless
  every problem the 400 names is one of these rules. Each is written in the document next to
  the field it limits; a schema cannot say them. The run prints how many failures were dropped.
"""

import atexit
import collections
import json
import os
import sys

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    lines = value if isinstance(value, list) else [value]  # a single event is a body of one line
    return "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines).encode("utf-8")


# (field, text in the message): the rules a schema cannot state.
RULES = [
    # NewEvent.timestamp: a window around the receive time, and the index's date_nanos range.
    ("timestamp", "in the past (ingest.max_past_age)"),
    ("timestamp", "in the future (ingest.max_future_skew)"),
    ("timestamp", "must be between 1970-01-01 and 2262-04-10"),
    # NewEvent.payload: limits on its size, depth and keys, at every level.
    ("payload", "bytes serialized, more than"),
    ("payload", "nested deeper than"),
    ("payload", "keys (counted at every level)"),
    ("payload", "bytes, more than"),
    ("payload", "contains \\u0000"),  # NewEvent: no string may hold U+0000
    # ClientID and EventType: 128 bytes of UTF-8, where maxLength counts characters.
    ("clientId", "bytes"),
    ("type", "bytes"),
    # cursor and Last-Event-ID: opaque and signed; only what the service issued for the same
    # query is one.
    ("cursor", "start again without a cursor"),
    ("Last-Event-ID", "reconnect without it"),
    # Rules between parameters: to before from (the bounds are probably swapped), and
    # ack=async with wait=searchable (an answer cannot both come at once and wait).
    ("to", "must not be before from"),
    ("ack", "cannot be combined with wait=searchable"),
]


# How many failures each rule explained, printed when the run ends.
dropped = collections.Counter()


def _rule(detail):
    for field, text in RULES:
        if detail.get("field") == field and text in detail.get("message", ""):
            return field + ": " + text
    return None


def _explained(response):
    """Whether the 400 names only problems the RULES explain; counts them if so."""
    if response.status_code != 400:
        return False
    try:
        details = json.loads(response.content)["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return False
    rules = [_rule(d) for d in details or []]
    if not rules or None in rules:
        return False
    dropped.update(set(rules))
    return True


@atexit.register
def _report():
    if dropped:
        print("[contract] schema-valid requests refused for a rule the document states in prose:", file=sys.stderr)
        for rule, n in sorted(dropped.items()):
            print(f"[contract]   {n:5d}  {rule}", file=sys.stderr)


def _service(response):
    """The service that answered: scripts/contract.sh names their base URLs."""
    for name in ("ingest", "search"):
        if response.request.url.startswith(os.environ["SPILLWAY_CONTRACT_" + name.upper()] + "/"):
            return name
    return None


def _served_elsewhere(case, response, methods):
    """Whether x-spillway-service gives every method to a service other than the one that answered."""
    item = case.operation.schema.raw_schema["paths"][case.operation.path]
    service = _service(response)
    for method in methods:
        served_by = item.get(method.lower(), {}).get("x-spillway-service", [])
        if isinstance(served_by, str):
            served_by = [served_by]
        if service is None or service in served_by:
            return False
    return True


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keep every failure but these two:

    - ST202, a schema-valid request refused only for the RULES above;
    - ST205, an Allow header lacking only methods that x-spillway-service gives to the other
      service: both share /api/v1/events, and each service's Allow names what it serves.
    """
    if failure.code == "ST202" and _explained(response):
        return False
    if failure.code == "ST205" and not failure.undocumented_methods and _served_elsewhere(case, response, failure.missing_methods):
        dropped["Allow: methods of the other service (x-spillway-service)"] += 1
        return False
    return True
