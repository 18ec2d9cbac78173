#!/usr/bin/env python3
"""Generate tests/sim/src/protobuf/fields.txt: the protobuf field table of the
built-in kinds the simulator serves.

The simulator converts Kubernetes protobuf bodies to and from the JSON its
store keeps by walking this table (field number -> JSON name, wire kind,
message type). It is derived from two crates kube-sim depends on: k8s-pb
(a dev-dependency; its prost-generated types give field numbers and types,
and tests/protobuf_wire.rs checks the table against them) and k8s-openapi
(serde JSON names of the same structs). Re-run after bumping either:

    python3 tests/sim/scripts/gen-proto-table.py ~/.cargo/registry/src/*/k8s-pb-0.9.0 \
        ~/.cargo/registry/src/*/k8s-openapi-0.29.0/src/v1_35 > tests/sim/src/protobuf/fields.txt

(k8s-pb 0.9 carries Kubernetes 1.35, so the names come from the same version.)
"""
import os
import re
import sys

PB, OPENAPI = sys.argv[1], sys.argv[2]
# Groups whose kinds the simulator serves (or may serve); messages are kept
# only when reachable from a kind (or its List) of these packages.
ROOT_PACKAGES = [
    "api.core.v1", "api.batch.v1", "api.apps.v1", "api.coordination.v1", "api.events.v1",
    "api.discovery.v1", "api.rbac.v1", "api.authorization.v1",
    "api.authentication.v1", "api.admissionregistration.v1",
    "apimachinery.pkg.apis.meta.v1",
]

ATTR = re.compile(r'#\[prost\((?P<body>[^\]]*)\)\]')


def modules():
    src = os.path.join(PB, "src")
    for root, _, files in os.walk(src):
        for f in files:
            if f != "mod.rs":
                continue
            rel = os.path.relpath(root, src)
            yield rel.replace(os.sep, "."), os.path.join(root, f)


def parse_structs(mod, path):
    """{struct: [(tag, rust_field, kind, label, type_expr)]} and Resource kinds."""
    text = open(path).read()
    structs = {}
    kinds = []
    # The apiVersion comes from k8s-pb itself: a package name does not give
    # the group (api.rbac.v1 is rbac.authorization.k8s.io/v1).
    for m in re.finditer(r'const API_VERSION: &\'static str = "([^"]*)";\s*const GROUP[^;]*;\s*const VERSION[^;]*;\s*const KIND: &\'static str = "([^"]*)"', text):
        kinds.append((m.group(2), m.group(1)))
    for m in re.finditer(r'pub struct (\w+) \{(.*?)\n\}', text, re.S):
        name, body = m.group(1), m.group(2)
        fields = []
        # Join each attribute with the declaration that follows it.
        lines = [l.strip() for l in body.split("\n") if not l.strip().startswith("//")]
        joined = " ".join(lines)
        for fm in re.finditer(r'#\[prost\(([^\]]*)\)\]\s*pub (r#)?(\w+): (.*?),\s*(?=#\[prost|$)', joined):
            attr, field, ty = fm.group(1), fm.group(3), fm.group(4)
            tag = re.search(r'tag = "(\d+)"', attr).group(1)
            if attr.startswith("btree_map"):
                kv = re.search(r'btree_map = "string, (\w+)"', attr).group(1)
                kind, label = "map_" + kv, "map"
            else:
                parts = [p.strip() for p in attr.split(",")]
                kind = parts[0].split(" ")[0]
                label = "repeated" if "repeated" in parts else "optional"
            fields.append((int(tag), field, kind, label, ty))
        structs[name] = fields
    return structs, kinds


def resolve(mod, ty):
    """Absolute struct path of the message type named in a field's Rust type."""
    inner = ty.replace(" ", "")
    if "BTreeMap<" in inner:
        inner = inner.split(",", 1)[1].rstrip(">").rstrip(",")
    for wrap in ["::core::option::Option<", "::prost::alloc::vec::Vec<"]:
        if inner.startswith(wrap):
            inner = inner[len(wrap):-1]
    parts = inner.split("::")
    base = mod.split(".")
    while parts and parts[0] == "super":
        base = base[:-1]
        parts = parts[1:]
    if parts and parts[0] == "crate":
        base, parts = [], parts[1:]
    return ".".join(base + parts)


def openapi_names(mod, struct):
    """JSON name by Rust field name, from k8s-openapi's serde code."""
    d = os.path.join(OPENAPI, *mod.split("."))
    if not os.path.isdir(d):
        return {}
    for f in os.listdir(d):
        p = os.path.join(d, f)
        if not f.endswith(".rs"):
            continue
        t = open(p).read()
        # k8s-pb spells acronyms differently (HostIp, AwsElastic...; u_id).
        if re.search(r'pub struct %s \{' % struct, t, re.I):
            return {norm(rust): js for js, rust in re.findall(r'"([^"]+)" => Field::Key_(\w+),', t)}
    return {}


def norm(rust_field):
    return rust_field.replace("_", "").lower()


def camel(s):
    p = s.split("_")
    return p[0] + "".join(x[:1].upper() + x[1:] for x in p[1:])


def main():
    all_structs, roots, api_versions = {}, [], {}
    for mod, path in modules():
        structs, kinds = parse_structs(mod, path)
        for s, f in structs.items():
            all_structs[mod + "." + s] = (mod, s, f)
        if mod in ROOT_PACKAGES:
            for k, av in kinds:
                api_versions[mod + "." + k] = av
                roots.append(mod + "." + k)
                if mod + "." + k + "List" in [mod + "." + x for x in structs]:
                    roots.append(mod + "." + k + "List")
    # A subresource's kind: k8s-pb gives it no Resource impl.
    roots.append("api.authentication.v1.TokenRequest")
    api_versions["api.authentication.v1.TokenRequest"] = "authentication.k8s.io/v1"
    roots.append("apimachinery.pkg.apis.meta.v1.Status")
    roots.append("apimachinery.pkg.runtime.Unknown")
    seen, order, todo = set(), [], list(roots)
    while todo:
        n = todo.pop()
        if n in seen or n not in all_structs:
            continue
        seen.add(n)
        order.append(n)
        mod, s, fields = all_structs[n]
        for _, _, kind, _, ty in fields:
            if kind in ("message", "map_message"):
                todo.append(resolve(mod, ty))
    print("# Generated by tests/sim/scripts/gen-proto-table.py from k8s-pb and k8s-openapi; do not edit.")
    print("# K <apiVersion> <Kind> <message>; M <message>; F <tag> <json name> <kind> <label> [<message>]")
    for r in roots:
        mod, s, _ = all_structs.get(r, (None, None, None))
        if mod and not s.endswith("List") and r.split(".")[-1] not in ("Status", "Unknown"):
            if r not in api_versions:
                continue
            print(f"K {api_versions[r]} {s} {r}")
    for n in sorted(order):
        mod, s, fields = all_structs[n]
        names = openapi_names(mod, s)
        print(f"M {n}")
        for tag, field, kind, label, ty in fields:
            js = names.get(norm(field), camel(field))
            ref = resolve(mod, ty) if kind in ("message", "map_message") else ""
            # A message field the JSON form lacks is an embedded Go struct
            # (`json:",inline"`, e.g. Volume's VolumeSource): its fields sit
            # in the parent's JSON object.
            if names and norm(field) not in names and kind == "message" and label == "optional":
                label = "inline"
            print(f"F {tag} {js} {kind} {label} {ref}".rstrip())


main()
