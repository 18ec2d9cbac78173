#!/usr/bin/env python3
"""Renders the multiarch-operator Helm chart with Helm's own engine.

Uses the helm-python-sdk package (PyPI), which bundles Helm's Go library, so
no `helm` binary is needed. tests/chart.rs runs this script, and developers
run it to regenerate the plain manifest:

    python3 tests/chart/render.py --manifest > deploy/multiarch-operator.yaml

Other uses:

    python3 tests/chart/render.py                         # default values
    python3 tests/chart/render.py --set watchNamespace=team-a
    python3 tests/chart/render.py --include-crds --namespace ops
    python3 tests/chart/render.py --rules                 # RBAC, one grant a line
    python3 tests/chart/render.py --lint                  # `helm lint --strict`, as JSON

Documents come out in the order `helm template` and `helm install` use
(Helm's install order by kind, then by name), each after a `# Source:` line.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

try:
    import helm_python as helm
    import yaml
except ImportError as missing:
    sys.exit(
        f"{missing}: install it with `python3 -m pip install helm-python-sdk PyYAML` "
        "(scripts/test.sh does)"
    )

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "multiarch-operator"
RELEASE = "multiarch-operator"
# The namespace of the plain manifest, deploy/multiarch-operator.yaml.
MANIFEST_NAMESPACE = "multiarch-system"

# Helm's install order (pkg/release/util/kind_sorter.go), the kinds this
# chart uses first; unknown kinds go last, as Helm puts them.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret",
    "SecretList", "ConfigMap", "StorageClass", "PersistentVolume",
    "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role",
    "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
    "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass",
    "Ingress", "APIService", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
]


def split_documents(source: str, text: str) -> list[tuple[str, str, dict]]:
    """(source, text, parsed) for each non-empty YAML document of `text`."""
    docs, current = [], []
    for line in text.splitlines():
        if line.rstrip() == "---":
            docs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    docs.append("\n".join(current))
    out = []
    for doc in docs:
        parsed = yaml.safe_load(doc)
        if parsed:
            out.append((source, doc.strip("\n") + "\n", parsed))
    return out


def order_key(item: tuple[str, str, dict]) -> tuple[int, str, str]:
    _, _, obj = item
    kind = obj.get("kind", "")
    rank = INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)
    return (rank, kind, obj.get("metadata", {}).get("name", ""))


def render(values: dict, namespace: str, release: str, include_crds: bool) -> list:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
        crds = chart.crds if include_crds else []
    docs = []
    for crd in crds:
        docs += split_documents(f"{CHART.name}/crds/{crd['filename'].split('/')[-1]}", crd["data"])
    for path, text in rendered.items():
        # NOTES.txt and helpers are not manifests.
        if path.endswith((".yaml", ".yml")):
            docs += split_documents(path, text)
    return sorted(docs, key=order_key)


def as_yaml(docs: list) -> str:
    return "".join(f"---\n# Source: {source}\n{text}" for source, text, _ in docs)


def namespace_document() -> tuple[str, str, dict]:
    text = (
        "apiVersion: v1\n"
        "kind: Namespace\n"
        "metadata:\n"
        f"  name: {MANIFEST_NAMESPACE}\n"
        "  labels:\n"
        "    # The operator's pod meets the restricted Pod Security Standard.\n"
        "    pod-security.kubernetes.io/enforce: restricted\n"
    )
    return ("namespace (added by tests/chart/render.py)", text, yaml.safe_load(text))


def manifest() -> str:
    docs = render({}, MANIFEST_NAMESPACE, RELEASE, include_crds=True)
    header = (
        "# multiarch-operator: everything `kubectl apply -f` needs (namespace, CRD,\n"
        "# RBAC, operator Deployment, metrics Service), rendered from\n"
        "# charts/multiarch-operator with its default values. Do not edit: regenerate\n"
        "# with `python3 tests/chart/render.py --manifest > deploy/multiarch-operator.yaml`.\n"
    )
    return header + as_yaml([namespace_document()] + docs)


def rules(docs: list) -> str:
    """One line per granted (verb, apiGroup, resource): the scope (the role's
    kind and namespace), and the resource names it is limited to, if any."""
    lines = []
    for _, _, obj in docs:
        kind = obj.get("kind")
        if kind not in ("ClusterRole", "Role"):
            continue
        scope = "cluster" if kind == "ClusterRole" else f"namespace={obj['metadata']['namespace']}"
        for rule in obj.get("rules", []):
            names = ",".join(rule.get("resourceNames", [])) or "*"
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        lines.append(f"{verb}\t{group or 'core'}\t{resource}\t{names}\t{scope}\n")
    return "".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a value, as `helm --set` takes it (repeatable)")
    parser.add_argument("--namespace", default=MANIFEST_NAMESPACE, help="release namespace")
    parser.add_argument("--release", default=RELEASE, help="release name")
    parser.add_argument("--include-crds", action="store_true",
                        help="also print the chart's crds/ (as `helm template --include-crds`)")
    parser.add_argument("--manifest", action="store_true",
                        help="print deploy/multiarch-operator.yaml (default values)")
    parser.add_argument("--lint", action="store_true",
                        help="run `helm lint --strict` with the values given; print its report as JSON")
    parser.add_argument("--rules", action="store_true",
                        help="print the RBAC grants: verb, group, resource, names, scope")
    args = parser.parse_args()

    if args.manifest:
        sys.stdout.write(manifest())
        return
    values: dict = {}
    for expression in args.set:
        merge(values, helm.parse_set_string(expression))
    if args.lint:
        report = helm.lint(CHART, values, strict=True, namespace=args.namespace)
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
        return
    docs = render(values, args.namespace, args.release, args.include_crds)
    sys.stdout.write(rules(docs) if args.rules else as_yaml(docs))


def merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


if __name__ == "__main__":
    try:
        main()
    except helm.HelmError as error:
        sys.exit(f"helm: {error}")
