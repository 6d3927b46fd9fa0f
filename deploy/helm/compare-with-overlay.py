#!/usr/bin/env python3
"""Compares what the Helm chart renders with what a Kustomize overlay renders.

    compare-with-overlay.py [--names-only] CHART.yaml OVERLAY.yaml

Both must hold the same objects, by kind and name, and (without --names-only) each object must
be the same once parsed: same labels, env, ports, probes, securityContext, replicas, images…
Three differences are expected and left out:
  - the overlay's Namespace: Helm installs into a namespace (`--create-namespace`) and does
    not own it;
  - the chart's `helm.sh/hook*` annotations, which make the Jobs run before install and upgrade;
  - the hook copies of ConfigMaps that those Jobs read instead (they run before the release's
    own ConfigMaps are applied): a hook ConfigMap that the overlay lacks and whose labels and
    data are those of one of the chart's ConfigMaps that are not hooks is left out, and the
    hooks' references to it are read as references to the original.
"""

import argparse
import difflib
import sys

import yaml


def objects(path, drop_kinds=()):
    """The objects of a rendering by (kind, name), without their hook annotations, and the set
    of the keys of those that are Helm hooks."""
    found, hooks = {}, set()
    with open(path) as stream:
        for doc in yaml.safe_load_all(stream):
            if not doc or doc.get("kind") in drop_kinds:
                continue
            key = (doc["kind"], doc["metadata"]["name"])
            if key in found:
                sys.exit(f"{path}: {key[0]}/{key[1]} twice")
            annotations = doc.get("metadata", {}).get("annotations", {})
            if "helm.sh/hook" in annotations:
                hooks.add(key)
            for name in [k for k in annotations if k.startswith("helm.sh/hook")]:
                del annotations[name]
            if "annotations" in doc.get("metadata", {}) and not annotations:
                del doc["metadata"]["annotations"]
            found[key] = doc
    return found, hooks


def config_map_refs(node, renames):
    """Renames, in place, the ConfigMaps that node refers to (envFrom, env, volumes)."""
    if isinstance(node, list):
        for item in node:
            config_map_refs(item, renames)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("configMapRef", "configMapKeyRef", "configMap") and isinstance(value, dict):
                if value.get("name") in renames:
                    value["name"] = renames[value["name"]]
            config_map_refs(value, renames)


def drop_hook_copies(chart, hooks, overlay):
    """Leaves out the hook ConfigMaps that copy one of the chart's other ConfigMaps, and reads
    the hooks' references to them as references to the original."""
    originals = {
        name: (doc["metadata"].get("labels"), doc.get("data"), doc.get("binaryData"))
        for (kind, name), doc in chart.items()
        if kind == "ConfigMap" and (kind, name) not in hooks
    }
    renames = {}
    for kind, name in sorted(hooks - overlay.keys()):
        if kind != "ConfigMap":
            continue
        doc = chart[(kind, name)]
        content = (doc["metadata"].get("labels"), doc.get("data"), doc.get("binaryData"))
        matches = [original for original, held in originals.items() if held == content]
        if len(matches) == 1:
            renames[name] = matches[0]
            del chart[(kind, name)]
    for key in hooks & chart.keys():
        config_map_refs(chart[key], renames)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names-only", action="store_true")
    parser.add_argument("chart")
    parser.add_argument("overlay")
    args = parser.parse_args()

    chart, hooks = objects(args.chart)
    overlay, _ = objects(args.overlay, drop_kinds=("Namespace",))
    drop_hook_copies(chart, hooks, overlay)
    problems = []
    for kind, name in sorted(overlay.keys() - chart.keys()):
        problems.append(f"the chart renders no {kind}/{name}")
    for kind, name in sorted(chart.keys() - overlay.keys()):
        problem = f"the chart renders {kind}/{name}, which the overlay does not"
        if kind == "ConfigMap" and (kind, name) in hooks:
            problem += " (a hook, but the copy of none of the chart's other ConfigMaps)"
        problems.append(problem)
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
