#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into corpus/<target>/seed-*.

Run once before the first `cargo fuzz run`; `cargo fuzz cmin` then keeps the
seeds that add coverage. Realistic examples only: what registries, docker
login, kubelet and users actually produce.
"""
import base64, hashlib, json, os, pathlib, shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
H = lambda c: c * 64
D = lambda c: "sha256:" + H(c)
REAL = "sha256:" + hashlib.sha256(b"multiarch").hexdigest()


def write(target, name, data):
    folder = ROOT / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (folder / f"seed-{name}").write_bytes(data)


refs = [
    "busybox", "busybox:1.36", "library/busybox:1.36", "docker.io/library/alpine:3.20",
    "index.docker.io/library/app:1", "registry-1.docker.io/library/nginx",
    "ghcr.io/o-r_g/my__app.x:Tag_1.0-rc", "quay.io/prometheus/node-exporter:v1.8.2",
    "gcr.io/distroless/static-debian12:nonroot", "registry.k8s.io/pause:3.10",
    "localhost/app:dev", "localhost:5000/team/app:v1.2.3", "127.0.0.1:5000/app",
    "127.0.0.1:5000/a/b/c@" + REAL, "registry.example.com/app:tag@" + REAL,
    "registry.example.com/tools/cowsay:mai-0123456789ab-linux-arm-v7",
    "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:latest",
    "myregistry.azurecr.io/samples/hello@sha512:" + "ab" * 64,
    "app@sha384:" + "c" * 96, "app@sha256:" + "A" * 64, "a_b.com/app", "app:t\u00e4g",
    "r.example/App", "r.example/app@sha256:abc", "r.example/app:", "r.example//app",
    "r.example:port/app", "r.example/a..b", "https://r.example/app", "xn--n3h.com/myimage:xn--n3h.com",
    "test.com:5000", "foo_bar.com:8080", "a--b/c___d", "[::1]:5000/app",
]
for i, r in enumerate(refs):
    write("image_reference", f"{i:02}", r)

plats = ["linux/amd64", "linux/arm64", "linux/arm64/v8", "linux/arm/v7", "linux/arm/v6",
         "linux/arm", "linux/armhf", "linux/armel", "linux/x86_64", "linux/aarch64",
         "linux/386", "linux/i686", "linux/ppc64le", "linux/s390x", "linux/riscv64",
         "linux/amd64/v3", "windows/amd64", "LINUX/AMD64", "darwin/arm64", "linux/amd65",
         "linux/arm/v9", "linux/s390x/v1", "linux", "linux/", "linux/amd64/v3/x",
         "linux/mips64le", "linux/loong64", "linux/arm64/v9"]
for i, p in enumerate(plats):
    write("platform", f"{i:02}", p)

b64 = lambda s: base64.b64encode(s.encode()).decode()
configs = [
    {"auths": {"registry.example.com": {"auth": b64("alice:pw1")}}},
    {"auths": {"https://index.docker.io/v1/": {"auth": b64("hubuser:hub-secret-pw")}}},
    {"auths": {"127.0.0.1:5000": {"username": "bob", "password": "pw2"},
               "https://quay.io/v2/": {"auth": b64("carol:pw:with:colons")}}},
    {"auths": {"acr.example.azurecr.io": {"identitytoken": "tok-SECRET"}}},
    {"auths": {"r.example": {"auth": b64("dave:pw3").rstrip("="), "username": "other", "password": "x"}}},
    {"auths": {"r.example": {}}, "credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud"}},
    {"auths": {"docker.io": {"auth": b64("u:p")}, "index.docker.io": {"auth": b64("v:q")}}},
    {"auths": {"ghcr.io": {"username": "gh", "password": "ghp_0123456789abcdef",
                           "auth": b64("gh:ghp_0123456789abcdef"), "email": "gh@example.com"}}},
    {},
]
for i, c in enumerate(configs):
    write("docker_config", f"{i:02}", json.dumps(c, indent=2))
write("docker_config", "bad-auth", '{"auths": {"r.example": {"auth": "%%%not-base64-secret"}}}')
write("docker_config", "nocolon", '{"auths": {"r": {"auth": "%s"}}}' % b64("nocolon"))
write("docker_config", "number", '{"auths": {"r": {"auth": 12345678}}}')

OCI_M = "application/vnd.oci.image.manifest.v1+json"
OCI_I = "application/vnd.oci.image.index.v1+json"
DK_M = "application/vnd.docker.distribution.manifest.v2+json"
DK_L = "application/vnd.docker.distribution.manifest.list.v2+json"


def image_manifest(mt, cfg_mt, layer_mt, foreign=False):
    m = {"schemaVersion": 2, "mediaType": mt,
         "config": {"mediaType": cfg_mt, "digest": D("1"), "size": 1469},
         "layers": [{"mediaType": layer_mt, "digest": D("2"), "size": 3623807}]}
    if foreign:
        m["layers"].append({"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                            "digest": D("3"), "size": 1, "urls": ["https://mcr.microsoft.com/l/x"]})
    return m


def entry(mt, digest, os_, arch, variant=None, osv=None, size=1234):
    p = {"architecture": arch, "os": os_}
    if variant:
        p["variant"] = variant
    if osv:
        p["os.version"] = osv
    return {"mediaType": mt, "digest": digest, "size": size, "platform": p}


def attestation(digest, about):
    return {"mediaType": OCI_M, "digest": digest, "size": 839,
            "annotations": {"vnd.docker.reference.digest": about,
                            "vnd.docker.reference.type": "attestation-manifest"},
            "platform": {"architecture": "unknown", "os": "unknown"}}


manifests = {
    "oci-manifest": image_manifest(OCI_M, "application/vnd.oci.image.config.v1+json",
                                   "application/vnd.oci.image.layer.v1.tar+gzip"),
    "docker-manifest": image_manifest(DK_M, "application/vnd.docker.container.image.v1+json",
                                      "application/vnd.docker.image.rootfs.diff.tar.gzip"),
    "windows-foreign": image_manifest(DK_M, "application/vnd.docker.container.image.v1+json",
                                      "application/vnd.docker.image.rootfs.diff.tar.gzip", True),
    "no-media-type": {"schemaVersion": 2, "config": {"digest": D("1"), "size": 2}, "layers": []},
    "buildkit-attestation-index": {"schemaVersion": 2, "mediaType": OCI_I, "manifests": [
        entry(OCI_M, D("a"), "linux", "amd64"), attestation(D("e"), D("a"))]},
    "buildkit-arm-index": {"schemaVersion": 2, "mediaType": OCI_I, "manifests": [
        entry(OCI_M, D("b"), "linux", "arm", "v7"), attestation(D("f"), D("b"))]},
    "multi-index": {"schemaVersion": 2, "mediaType": OCI_I, "manifests": [
        entry(OCI_M, D("a"), "linux", "amd64"), entry(OCI_M, D("b"), "linux", "arm64", "v8"),
        entry(OCI_M, D("c"), "linux", "arm", "v6"), entry(OCI_M, D("d"), "linux", "s390x"),
        attestation(D("e"), D("a")), attestation(D("f"), D("b"))],
        "annotations": {"org.opencontainers.image.created": "2025-01-01T00:00:00Z"}},
    "docker-list": {"schemaVersion": 2, "mediaType": DK_L, "manifests": [
        entry(DK_M, D("a"), "linux", "amd64"), entry(DK_M, D("b"), "linux", "arm64"),
        entry(DK_M, D("c"), "windows", "amd64", osv="10.0.17763.6054")]},
    "index-no-media-type": {"schemaVersion": 2, "manifests": [entry(OCI_M, D("a"), "linux", "x86_64")]},
    "mixed-index": {"schemaVersion": 2, "mediaType": OCI_I, "manifests": [
        entry(OCI_M, D("a"), "linux", "amd64"), entry(DK_M, D("b"), "linux", "arm64")]},
    "empty-index": {"schemaVersion": 2, "mediaType": OCI_I, "manifests": []},
    "config-amd64": {"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/usr/bin"]},
                     "rootfs": {"type": "layers", "diff_ids": [D("9")]}},
    "config-armv7": {"architecture": "arm", "os": "linux", "variant": "v7"},
    "config-arm64-v8": {"architecture": "arm64", "os": "linux", "variant": "v8"},
    "config-windows": {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2582"},
    "config-amd64-v3": {"architecture": "amd64", "os": "linux", "variant": "v3"},
    "unknown-media-type": {"schemaVersion": 2, "mediaType": "application/vnd.oci.artifact.manifest.v1+json"},
    "schema1": {"schemaVersion": 1, "name": "app", "tag": "latest", "fsLayers": []},
}
for name, m in manifests.items():
    write("manifest", name, json.dumps(m, indent=3 if "index" in name else None))
write("manifest", "not-json", "<html>502 Bad Gateway</html>")

msgs = [REAL, REAL + "\n", "pushed\n" + REAL + "\n", "  " + REAL + "  \n\n",
        "error: failed to push\n", "sha256:" + "A" * 64, "sha256:" + "a" * 63,
        REAL + "\nsomething after", "\r\n" + REAL + "\r\n", "sha512:" + "a" * 128, "",
        "#12 exporting manifest sha256:abc done\n#12 DONE 0.1s\n" + REAL]
for i, m in enumerate(msgs):
    write("termination_message", f"{i:02}", m)

examples = list((ROOT.parent / "deploy" / "examples").glob("*.yaml")) + [ROOT.parent / "deploy" / "local" / "hello.yaml"]
for path in examples:
    write("multiarchimage_yaml", path.stem, path.read_bytes())
write("multiarchimage_yaml", "json", json.dumps({"apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
      "metadata": {"name": "app"}, "spec": {"image": "r.example/app", "source": {"git": {"url": "https://g.example/a.git"}}}}))
write("multiarchimage_yaml", "other-kind", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n")
write("multiarchimage_yaml", "wrong-api", "apiVersion: multiarch.dev/v1\nkind: MultiArchImage\n")
write("multiarchimage_yaml", "anchors", "a: &a [1, 2]\nb: *a\nkind: MultiArchImage\napiVersion: multiarch.dev/v1alpha1\nmetadata: {name: x}\nspec: {image: r.example/x, tags: [a, a], platforms: [linux/amd65]}\n")
