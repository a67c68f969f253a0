#!/usr/bin/env python3
"""Derive Kura's compact API shape tables from botocore's service models.

usage: python3 -m pip download --no-deps botocore -d /tmp/bc && \
       python3 scripts/gen-ecr-model.py /tmp/bc/botocore-*.whl > crates/kura-ecr/model/ecr-shapes.json && \
       python3 scripts/gen-ecr-model.py /tmp/bc/botocore-*.whl ecr-public \
           > crates/kura-ecr/model/ecr-public-shapes.json

The optional second argument names the botocore service directory: `ecr`
(the default), `ecr-public`, or `events` (EventBridge:
`python3 scripts/gen-ecr-model.py /tmp/bc/botocore-*.whl events > crates/kura-events/model/events-shapes.json`).

Keeps only what request validation needs (operation → input shape; each
shape's type, required members, min/max, pattern, enum, member/list/map
targets) and no documentation text.
"""
import gzip
import json
import sys
import zipfile

KEEP = ("type", "required", "min", "max", "pattern", "enum")


def load(path, service):
    with zipfile.ZipFile(path) as z:
        prefix = f"botocore/data/{service}/"
        # The newest API version when a service has several (events: 2014-02-03, 2015-10-07).
        name = max(n for n in z.namelist() if n.startswith(prefix) and "service-2.json" in n)
        raw = z.read(name)
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return json.loads(raw)


def main():
    service = sys.argv[2] if len(sys.argv) > 2 else "ecr"
    model = load(sys.argv[1], service)
    ops = {}
    for name, op in sorted(model["operations"].items()):
        ops[name] = {
            "input": op.get("input", {}).get("shape"),
            "errors": [e["shape"] for e in op.get("errors", [])],
        }
    shapes = {}
    for name, s in sorted(model["shapes"].items()):
        out = {k: s[k] for k in KEEP if k in s}
        # Rust's regex has no look-around (events' PathParameter uses one): such a pattern
        # is dropped, and the shape's other constraints still apply.
        if any(x in out.get("pattern", "") for x in ("(?!", "(?=", "(?<=", "(?<!")):
            del out["pattern"]
        if s["type"] == "structure":
            out["members"] = {m: v["shape"] for m, v in s["members"].items()}
            if s.get("exception"):
                out["exception"] = True
        elif s["type"] == "list":
            out["member"] = s["member"]["shape"]
        elif s["type"] == "map":
            out["key"] = s["key"]["shape"]
            out["value"] = s["value"]["shape"]
        shapes[name] = out
    json.dump(
        {"apiVersion": model["metadata"]["apiVersion"], "targetPrefix": model["metadata"]["targetPrefix"],
         "operations": ops, "shapes": shapes},
        sys.stdout, indent=0, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
