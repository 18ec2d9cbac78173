#!/usr/bin/env bash
# The cluster-free demo: a real registry, the simulated cluster (tests/sim)
# with an amd64 and an arm64 node, and the real operator. It applies
# deploy/local/hello.yaml with kubectl, waits for the image index, shows
# what a client of each platform pulls, tears everything down, and exits 0
# only if all of that is right.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

need=()
for pair in docker-registry:docker-registry buildah:buildah skopeo:skopeo bwrap:bubblewrap git:git python3:python3; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
if ((${#need[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need[*]}; install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "==> installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "==> building the operator and the simulated cluster"
cargo build --quiet --bin multiarch-operator && cargo build --quiet -p kube-sim --bin kube-sim
bin="$root/target/debug"

work=$(mktemp -d /tmp/multiarch-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then echo "timed out waiting for $what" >&2; return 1; fi
    sleep 0.2
  done
}

echo "==> starting a registry"
registry_port=$(free_port)
registry="127.0.0.1:$registry_port"
cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: $registry}
YAML
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
pids+=($!)
wait_for 20 "the registry" python3 -c "import urllib.request; urllib.request.urlopen('http://$registry/v2/')"

echo "==> starting the simulated cluster (nodes: sim-amd64 linux/amd64, sim-arm64 linux/arm64)"
export KUBECONFIG="$work/kubeconfig"
"$bin/kube-sim" serve --kubeconfig "$KUBECONFIG" \
  --node sim-amd64=linux/amd64 --node sim-arm64=linux/arm64 \
  --image quay.io/buildah/stable \
  --image "ghcr.io/multiarch-operator/multiarch-operator=$bin" \
  > "$work/sim.log" 2>&1 &
pids+=($!)
wait_for 30 "the simulated cluster" test -s "$KUBECONFIG"
wait_for 30 "the API server" kubectl get --raw /version

echo "==> installing the CRD and starting the operator"
kubectl apply -f crds/multiarchimages.multiarch.dev.yaml
kubectl wait --for=condition=Established crd/multiarchimages.multiarch.dev --timeout=30s
metrics_port=$(free_port)
RUST_LOG=info "$bin/multiarch-operator" controller \
  --metrics-addr "127.0.0.1:$metrics_port" \
  --leader-election-namespace default \
  > "$work/operator.log" 2>&1 &
pids+=($!)
wait_for 30 "the operator's readiness" python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$metrics_port/readyz')"

echo "==> kubectl apply -f deploy/local/hello.yaml (image $registry/demo/hello)"
sed "s#REGISTRY#$registry#" deploy/local/hello.yaml > "$work/hello.yaml"
started=$SECONDS
kubectl apply -f "$work/hello.yaml"
if ! kubectl wait --for=condition=Ready multiarchimage/hello --timeout=120s; then
  echo "the build did not become Ready; the operator's log:" >&2
  tail -n 40 "$work/operator.log" >&2
  kubectl describe multiarchimage hello >&2 || true
  exit 1
fi
echo "==> Ready after $((SECONDS - started))s"

kubectl get multiarchimages -o wide
echo
kubectl describe multiarchimage hello | sed -n '/^Events:/,$p'
echo
digest=$(kubectl get multiarchimage hello -o jsonpath='{.status.digest}')
echo "==> the image index $registry/demo/hello@$digest"
skopeo inspect --tls-verify=false --raw "docker://$registry/demo/hello:v1.0.0" | python3 -m json.tool
index_digest=$(skopeo inspect --tls-verify=false --raw "docker://$registry/demo/hello:latest" | sha256sum | cut -d' ' -f1)
if [ "sha256:$index_digest" != "$digest" ]; then
  echo "the index under :latest (sha256:$index_digest) is not the digest in status ($digest)" >&2
  exit 1
fi

echo
echo "==> what a client of each platform pulls"
# A client resolves the tag through the index to one image; its config blob
# must be the one of the image that platform's build pushed.
config_digest() { python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])'; }
for arch in amd64 arm64; do
  pushed=$(kubectl get multiarchimage hello -o jsonpath="{.status.platforms[?(@.platform==\"linux/$arch\")].digest}")
  want=$(skopeo inspect --tls-verify=false --raw "docker://$registry/demo/hello@$pushed" | config_digest)
  resolved=$(skopeo inspect --tls-verify=false --override-os linux --override-arch "$arch" --config --raw \
    "docker://$registry/demo/hello:latest")
  got="sha256:$(printf '%s' "$resolved" | sha256sum | cut -d' ' -f1)"
  platform=$(printf '%s' "$resolved" | python3 -c 'import json,sys; c=json.load(sys.stdin); print(c["os"] + "/" + c["architecture"])')
  echo "a linux/$arch client pulls $registry/demo/hello@$pushed (config $got, $platform)"
  if [ "$got" != "$want" ] || [ "$platform" != "linux/$arch" ]; then
    echo "a linux/$arch client got config $got ($platform), expected $want (linux/$arch)" >&2
    exit 1
  fi
done

echo
echo "==> demo succeeded in ${SECONDS}s; tearing down"
