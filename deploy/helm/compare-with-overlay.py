#!/usr/bin/env python3
"""Compares what the Helm chart renders with what a Kustomize overlay renders.

    compare-with-overlay.py [--names-only] CHART.yaml OVERLAY.yaml

Both must hold the same objects, by kind and name, and (without --names-only) each object must
be the same once parsed: same labels, env, ports, probes, securityContext, replicas, images…
Two differences are expected and left out:
  - the overlay's Namespace: Helm installs into a namespace (`--create-namespace`) and does
    not own it;
  - the chart's `helm.sh/hook*` annotations, which make the Jobs run at install and upgrade.
"""

import argparse
import difflib
import sys

import yaml


def objects(path, drop_kinds=()):
    found = {}
    with open(path) as stream:
        for doc in yaml.safe_load_all(stream):
            if not doc or doc.get("kind") in drop_kinds:
                continue
            annotations = doc.get("metadata", {}).get("annotations", {})
            for key in [k for k in annotations if k.startswith("helm.sh/hook")]:
                del annotations[key]
            if "annotations" in doc.get("metadata", {}) and not annotations:
                del doc["metadata"]["annotations"]
            key = (doc["kind"], doc["metadata"]["name"])
            if key in found:
                sys.exit(f"{path}: {key[0]}/{key[1]} twice")
            found[key] = doc
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names-only", action="store_true")
    parser.add_argument("chart")
    parser.add_argument("overlay")
    args = parser.parse_args()

    chart = objects(args.chart)
    overlay = objects(args.overlay, drop_kinds=("Namespace",))
    problems = []
    for kind, name in sorted(overlay.keys() - chart.keys()):
        problems.append(f"the chart renders no {kind}/{name}")
    for kind, name in sorted(chart.keys() - overlay.keys()):
        problems.append(f"the chart renders {kind}/{name}, which the overlay does not")
    if not args.names_only:
        for key in sorted(chart.keys() & overlay.keys()):
            if chart[key] == overlay[key]:
                continue
            diff = difflib.unified_diff(
                yaml.safe_dump(overlay[key], sort_keys=True).splitlines(),
                yaml.safe_dump(chart[key], sort_keys=True).splitlines(),
                fromfile=f"{args.overlay} {key[0]}/{key[1]}",
                tofile=f"{args.chart} {key[0]}/{key[1]}",
                lineterm="",
            )
            problems.append("\n".join(diff))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    what = "kinds and names" if args.names_only else "objects"
    print(f"{len(chart)} {what} as in {args.overlay}")


if __name__ == "__main__":
    main()
