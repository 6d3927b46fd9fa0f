#!/usr/bin/env python3
"""Checks the dashboards and alerts beyond what Grafana's and Prometheus' tools check.

    check-monitoring.py REPOSITORY_ROOT

1. No dashboard or alert queries a metric the services do not export. The exported metrics are the names given to `metrics::counter!`, `gauge!` and `histogram!` (and
to the consumer runtime's `count`/`count_n` helpers) in crates/ and services/; a histogram's
series are its name with _bucket, _sum and _count where service-runtime's recorder gives it
buckets, else (a summary) its name with a quantile label, _sum and _count. The queried ones are the metric names in the
expressions of deploy/monitoring/dashboards/*.json and deploy/monitoring/alerts.yaml.
2. Every alert has a severity (warning or critical), a summary, a description and a
   runbook_url naming a file of the repository and a section of it, and alerts_test.yaml tests
   it both firing and quiet.
"""

import json
import pathlib
import re
import sys

import yaml

EXPORTED = re.compile(
    r'(?:\b(?:counter|gauge|histogram)!\(\s*|\.count(?:_n)?\(\s*)"([a-zA-Z_:][a-zA-Z0-9_:]*)"'
)
HISTOGRAM = re.compile(r'\bhistogram!\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
# PromQL words that look like names.
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "le", "inf", "nan", "atan2",
}
CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def exported(root):
    names, histograms = set(), set()
    for base in ("crates", "services"):
        for path in (root / base).rglob("*.rs"):
            text = path.read_text()
            names.update(EXPORTED.findall(text))
            histograms.update(HISTOGRAM.findall(text))
    # The recorder renders a histogram with buckets where it was given some
    # (service-runtime's set_buckets_for_metric), else as a summary with quantiles.
    recorder = (root / "crates" / "service-runtime" / "src" / "metrics_recorder.rs").read_text()
    bucketed = set(re.findall(r'Matcher::Full\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', recorder))
    for name in histograms:
        names.discard(name)
        suffixes = ("_bucket", "_sum", "_count") if name in bucketed else ("", "_sum", "_count")
        names.update(f"{name}{suffix}" for suffix in suffixes)
    return names


def queried(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = CLAUSE.sub("", expr)  # grouping labels
    expr = re.sub(r"(?<![a-zA-Z0-9_:])[0-9][0-9a-zA-Z.]*", "", expr)  # numbers and durations
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        name = match.group()
        following = expr[match.end():].lstrip()
        if following.startswith("(") or name.lower() in KEYWORDS or name.startswith("__"):
            continue
        names.add(name)
    return names


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    monitoring = root / "deploy" / "monitoring"
    known = exported(root)
    if len(known) < 20:
        sys.exit(f"only {len(known)} metrics found in {root}/crates and services: wrong root?")
    uses = {}
    for path in sorted((monitoring / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        stack = list(dashboard.get("panels", []))
        while stack:
            panel = stack.pop()
            stack += panel.get("panels", [])
            for target in panel.get("targets", []):
                for name in queried(target.get("expr", "")):
                    uses.setdefault(name, set()).add(f"{path.name}: {panel.get('title')}")
    for group in yaml.safe_load((monitoring / "alerts.yaml").read_text())["groups"]:
        for rule in group["rules"]:
            for name in queried(rule["expr"]):
                uses.setdefault(name, set()).add(f"alerts.yaml: {rule.get('alert') or rule.get('record')}")
    problems = [
        f"{name} is exported by no service; queried by {', '.join(sorted(uses[name]))}"
        for name in sorted(set(uses) - known)
    ]
    problems += check_alerts(root, monitoring)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"the {len(uses)} metrics queried are all exported; every alert is described and tested")


def slug(heading):
    """The anchor of a Markdown heading, as GitHub makes it."""
    heading = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return heading.replace(" ", "-")


def check_alerts(root, monitoring):
    problems = []
    rules = [
        rule
        for group in yaml.safe_load((monitoring / "alerts.yaml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    tests = yaml.safe_load((monitoring / "alerts_test.yaml").read_text())["tests"]
    fired, quiet = set(), set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    for rule in rules:
        name = rule["alert"]
        if rule.get("labels", {}).get("severity") not in ("warning", "critical"):
            problems.append(f"alerts.yaml: {name}: severity is neither warning nor critical")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not annotations.get(key):
                problems.append(f"alerts.yaml: {name}: no {key}")
        url = annotations.get("runbook_url", "")
        file, _, anchor = url.partition("#")
        target = root / file
        if not target.is_file():
            problems.append(f"alerts.yaml: {name}: runbook {file} does not exist")
        elif anchor:
            anchors = {slug(line.lstrip("#")) for line in target.read_text().splitlines() if line.startswith("#")}
            if anchor not in anchors:
                problems.append(f"alerts.yaml: {name}: {file} has no section #{anchor}")
        if name not in fired:
            problems.append(f"alerts_test.yaml: no test where {name} fires")
        if name not in quiet:
            problems.append(f"alerts_test.yaml: no test where {name} stays quiet")
    return problems


if __name__ == "__main__":
    main()
