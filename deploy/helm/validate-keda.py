#!/usr/bin/env python3
"""Validates the KEDA objects (keda.sh/*) of rendered manifests against KEDA's own definitions.

    validate-keda.py KEDA_MODULE_DIR [--expect KIND]... MANIFEST...

KEDA_MODULE_DIR is the source of github.com/kedacore/keda/v2 at the KEDA version the cluster
runs (deploy/check.sh takes it from the Go module proxy). Three checks:

1. Every keda.sh object against the openAPIV3Schema of its CustomResourceDefinition in
   config/crd/bases, turned into a JSON schema the way the API server reads it, strictly: a
   property the schema does not declare is an error (the API server would prune it). The
   schemas' CEL rules (x-kubernetes-validations) are checked by the rules known below; a rule
   this script does not know fails the run, so a KEDA upgrade that adds one is noticed.
2. Every apache-kafka trigger's metadata, and every TriggerAuthentication parameter, against the
   scaler's own parameter list: the `keda:"..."` tags of apacheKafkaMetadata in
   pkg/scalers/apache_kafka_scaler.go (names, required ones, integers, booleans, enums).
3. Every ScaledObject's target: a Deployment of the same manifests, with no replica count and
   no HorizontalPodAutoscaler of its own.

Objects of other API groups are left to kubernetes-validate. --expect KIND fails the run when
no object of that kind was validated.
"""

import argparse
import copy
import pathlib
import re
import sys

import jsonschema
import yaml

GROUP = "keda.sh"

# ObjectMeta as far as a chart sets it.
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {
            "type": "string",
            "maxLength": 253,
            "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        },
        "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def cel_min_le_max(spec):
    """minReplicaCount must be less than or equal to maxReplicaCount (default 100)."""
    if "minReplicaCount" in spec and spec["minReplicaCount"] > spec.get("maxReplicaCount", 100):
        return "minReplicaCount must be less than or equal to maxReplicaCount"
    return None


# CEL rules of KEDA's CRDs, by their text, with the same check in Python.
KNOWN_CEL_RULES = {
    "!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) "
    "? self.maxReplicaCount : 100)": cel_min_le_max,
}


def to_json_schema(node, cel, path):
    """The JSON schema of one OpenAPI v3 structural schema node, strict about properties.

    The CEL rules met on the way are appended to `cel` as (path, rule, message)."""
    if not isinstance(node, dict):
        return node
    schema = {}
    for key, value in node.items():
        if key == "properties":
            schema[key] = {
                name: to_json_schema(child, cel, path + [name]) for name, child in value.items()
            }
        elif key in ("items", "additionalProperties", "not"):
            schema[key] = to_json_schema(value, cel, path + ["*"]) if isinstance(value, dict) else value
        elif key in ("anyOf", "allOf", "oneOf"):
            schema[key] = [to_json_schema(child, cel, path) for child in value]
        elif key == "x-kubernetes-validations":
            for rule in value:
                cel.append((path, " ".join(rule["rule"].split()), rule.get("message", "")))
        elif key.startswith("x-kubernetes-") or key in ("description", "default", "example"):
            continue
        elif key in ("nullable", "format"):
            continue
        else:
            schema[key] = copy.deepcopy(value)
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in schema:
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("format") in INT_RANGES and node.get("type") == "integer":
        low, high = INT_RANGES[node["format"]]
        schema.setdefault("minimum", low)
        schema.setdefault("maximum", high)
    if node.get("nullable") and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    preserves = node.get("x-kubernetes-preserve-unknown-fields")
    if node.get("type") == "object" and "additionalProperties" not in schema and not preserves:
        schema["additionalProperties"] = False
    return schema


def load_crds(module):
    """{(apiVersion, kind): (JSON schema, CEL rules)} of every CRD of KEDA's."""
    crds = {}
    for path in sorted((module / "config" / "crd" / "bases").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served", True):
                    continue
                api_version = f"{group}/{version['name']}"
                cel = []
                schema = to_json_schema(version["schema"]["openAPIV3Schema"], cel, [])
                schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
                schema["properties"]["apiVersion"] = {"const": api_version}
                schema["properties"]["kind"] = {"const": kind}
                schema["properties"]["metadata"] = OBJECT_META
                # Status is the controller's to write, never a manifest's.
                schema["properties"].pop("status", None)
                crds[(api_version, kind)] = (schema, cel)
    if not crds:
        sys.exit(f"no CustomResourceDefinition found under {module}/config/crd/bases")
    return crds


TAG_LINE = re.compile(r'^\s*(\w+)\s+(\S+)\s+`keda:"([^"]*)"`')


def load_scaler_parameters(module):
    """The apache-kafka scaler's parameters: {name: {type, order, optional, default, enum}}."""
    source = (module / "pkg" / "scalers" / "apache_kafka_scaler.go").read_text()
    body = re.search(r"^type apacheKafkaMetadata struct \{\n(.*?)^\}", source, re.S | re.M)
    if not body:
        sys.exit("apacheKafkaMetadata not found in pkg/scalers/apache_kafka_scaler.go")
    parameters = {}
    for line in body.group(1).splitlines():
        match = TAG_LINE.match(line)
        if not match:
            continue
        _, go_type, tag = match.groups()
        spec = {"type": go_type, "order": [], "optional": False, "default": None, "enum": None}
        for part in (p.strip() for p in tag.split(",")):
            key, _, value = part.partition("=")
            if key == "name":
                name = value
            elif key == "order":
                spec["order"] = value.split(";")
            elif key == "optional":
                spec["optional"] = True
            elif key == "default":
                spec["default"] = value
            elif key == "enum":
                spec["enum"] = value.split(";")
        parameters[name] = spec
    if "consumerGroup" not in parameters or "lagThreshold" not in parameters:
        sys.exit("apacheKafkaMetadata's tags were not understood; update validate-keda.py")
    return parameters


BOOLEANS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}


def check_value(name, spec, value):
    if spec["enum"] and value not in spec["enum"]:
        return f"{name}: {value!r} is not one of {spec['enum']}"
    if spec["type"] in ("int", "int32", "int64") and not re.fullmatch(r"-?[0-9]+", value):
        return f"{name}: {value!r} is not an integer"
    if spec["type"] == "bool" and value not in BOOLEANS:
        return f"{name}: {value!r} is not a boolean"
    if spec["type"].startswith("[]") and not all(item.strip() for item in value.split(",")):
        return f"{name}: {value!r} has an empty item"
    return None


def check_trigger(trigger, parameters, has_auth):
    errors = []
    metadata = trigger.get("metadata", {})
    for name, value in metadata.items():
        spec = parameters.get(name)
        if spec is None:
            errors.append(f"metadata {name}: not a parameter of the apache-kafka scaler")
        elif "triggerMetadata" not in spec["order"]:
            errors.append(f"metadata {name}: taken from a TriggerAuthentication only")
        elif problem := check_value(name, spec, value):
            errors.append(f"metadata {problem}")
    for name, spec in parameters.items():
        required = not spec["optional"] and spec["default"] is None
        given = name in metadata or (has_auth and "authParams" in spec["order"])
        if required and not given:
            errors.append(f"metadata {name}: required by the apache-kafka scaler")
    # The scaler's own Validate().
    if re.fullmatch(r"-?[0-9]+", metadata.get("lagThreshold", "10")) and int(metadata.get("lagThreshold", "10")) <= 0:
        errors.append("metadata lagThreshold: must be a positive number")
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", type=pathlib.Path)
    parser.add_argument("manifests", nargs="+", type=pathlib.Path)
    parser.add_argument("--expect", action="append", default=[], metavar="KIND")
    args = parser.parse_args()

    crds = load_crds(args.module)
    parameters = load_scaler_parameters(args.module)
    objects = []
    for path in args.manifests:
        objects += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    keda = [(path, doc) for path, doc in objects if str(doc.get("apiVersion", "")).split("/")[0] == GROUP]
    auth_names = {doc["metadata"]["name"] for _, doc in keda if doc.get("kind") == "TriggerAuthentication"}

    failures, validated = [], {}
    for path, doc in keda:
        where = f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key not in crds:
            failures.append(f"{where}: KEDA has no such kind in {key[0]}")
            continue
        schema, cel = crds[key]
        validator = jsonschema.Draft202012Validator(schema)
        errors = [
            f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        ]
        for rule_path, rule, _ in cel:
            check = KNOWN_CEL_RULES.get(rule)
            if check is None:
                errors.append(f"CEL rule at {'.'.join(rule_path) or '(root)'} not known to this script: {rule}")
                continue
            target = doc
            for step in rule_path:
                target = target.get(step, {}) if isinstance(target, dict) else {}
            if problem := check(target):
                errors.append(f"{'.'.join(rule_path)}: {problem}")
        if doc.get("kind") == "ScaledObject":
            for index, trigger in enumerate(doc.get("spec", {}).get("triggers") or []):
                metadata = trigger.get("metadata")
                if trigger.get("type") != "apache-kafka" or not isinstance(metadata, dict):
                    continue
                if not all(isinstance(value, str) for value in metadata.values()):
                    continue  # The schema said so already.
                ref = trigger.get("authenticationRef")
                if ref and ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication" and ref["name"] not in auth_names:
                    errors.append(f"triggers.{index}: TriggerAuthentication {ref['name']} is not in these manifests")
                errors += [f"triggers.{index}.{e}" for e in check_trigger(trigger, parameters, bool(ref))]
        if doc.get("kind") == "TriggerAuthentication":
            for ref in doc.get("spec", {}).get("secretTargetRef") or []:
                spec = parameters.get(ref["parameter"])
                if spec is None or "authParams" not in spec["order"]:
                    errors.append(f"secretTargetRef {ref['parameter']}: not an authentication parameter of the apache-kafka scaler")
        failures += [f"{where}: {e}" for e in errors]
        validated[doc["kind"]] = validated.get(doc["kind"], 0) + 1

    # KEDA owns the scale of its targets: a target must be in the manifests, without a
    # replica count of its own (each apply would reset it) and without another autoscaler.
    deployments = {doc["metadata"]["name"]: doc for _, doc in objects if doc.get("kind") == "Deployment"}
    hpas = {
        doc["spec"]["scaleTargetRef"]["name"]: doc["metadata"]["name"]
        for _, doc in objects
        if doc.get("kind") == "HorizontalPodAutoscaler"
    }
    for path, doc in keda:
        if doc.get("kind") != "ScaledObject":
            continue
        target = doc.get("spec", {}).get("scaleTargetRef", {}).get("name")
        where = f"{path}: ScaledObject/{doc['metadata']['name']}"
        if target not in deployments:
            failures.append(f"{where}: scales Deployment {target}, which is not in these manifests")
        elif "replicas" in deployments[target]["spec"]:
            failures.append(f"{where}: Deployment {target} still sets replicas")
        if target in hpas:
            failures.append(f"{where}: HorizontalPodAutoscaler {hpas[target]} scales {target} too")

    for kind in args.expect:
        if not validated.get(kind):
            failures.append(f"no {kind} in {', '.join(map(str, args.manifests))}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    files = ", ".join(path.name for path in args.manifests)
    if validated:
        print(f"{files}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(validated.items())) + " valid for KEDA")
    else:
        print(f"{files}: no KEDA object")


if __name__ == "__main__":
    main()
