#!/usr/bin/env python3
"""Reads Prometheus text metrics from a URL and parses them with the reference
parser (Debian's python3-prometheus-client). Prints the samples as JSON,
[[name, {labels}, value], ...], on stdout; exits 1 with the parser's error if
the text is not valid exposition format.

    parse_metrics.py http://127.0.0.1:PORT/metrics
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main():
    with urllib.request.urlopen(sys.argv[1], timeout=60) as response:
        text = response.read().decode("utf-8")
    samples = []
    try:
        for family in text_string_to_metric_families(text):
            if family.type not in ("counter", "gauge"):
                raise ValueError(f"family {family.name} has type {family.type}")
            for sample in family.samples:
                samples.append([sample.name, sample.labels, sample.value])
    except Exception as error:  # the parser raises ValueError and others
        print(f"not valid exposition format: {error}", file=sys.stderr)
        return 1
    json.dump(samples, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
