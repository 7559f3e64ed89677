"""Parses Kafka records or HTTP requests with the CloudEvents Python SDK (Kafka or
HTTP protocol binding, binary mode), as a consumer would.

stdin: one JSON object per line, {"headers": [[name, value], ...], "key": str|null,
"value": str} (a Kafka record) or, with "binding": "http", {"headers": …, "value":
body} (a request). stdout: one JSON object per line with the event's attributes and
data.
"""
import json
import sys

from cloudevents.core.bindings import http, kafka

for line in sys.stdin:
    record = json.loads(line)
    if record.get("binding") == "http":
        event = http.from_binary_event(
            http.HTTPMessage(headers=dict(record["headers"]), body=record["value"].encode())
        )
    else:
        message = kafka.KafkaMessage(
            headers={name: value.encode() for name, value in record["headers"]},
            key=None if record["key"] is None else record["key"].encode(),
            value=record["value"].encode(),
        )
        event = kafka.from_binary_event(message)
    attributes = {
        name: (value.isoformat() if hasattr(value, "isoformat") else value)
        for name, value in event.get_attributes().items()
    }
    print(json.dumps({"attributes": attributes, "data": event.get_data()}))
