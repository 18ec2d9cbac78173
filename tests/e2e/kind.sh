#!/usr/bin/env bash
# End-to-end run of multiarch-operator on a real Kubernetes cluster: kind,
# with a local registry (the registry pattern of kind's documentation).
#
#   bash tests/e2e/kind.sh                      # linux/amd64 on an amd64 host
#   PLATFORMS=linux/arm64 bash tests/e2e/kind.sh          # on an arm64 host
#   ARM64_EMULATED_NODE=1 PLATFORMS=linux/amd64,linux/arm64 bash tests/e2e/kind.sh
#   EXAMPLE=sample bash tests/e2e/kind.sh     # the README's first build
#
# NOT RUN BY THE PROJECT'S CI, and not claimed as tested there: CI has no
# container engine and no cluster (see docs/ and tests/sim for what CI runs
# instead). It is for users and for outside CI with Docker; read it before
# running it. It needs: docker, kind, kubectl, helm, and one of crane, skopeo
# or `docker buildx`; network access to pull base images (busybox, BuildKit,
# buildah, git, the Rust builder of the operator image).
#
# What it does:
#   1. starts a registry container `kind-registry` (127.0.0.1:5001 on the
#      host, kind-registry:5000 inside the cluster),
#   2. creates a kind cluster whose containerd pulls localhost:5001 from it,
#   3. builds the operator image from the Dockerfile, `kind load`s it,
#   4. installs the chart (operator image = merge image),
#   5. applies a MultiArchImage (EXAMPLE=hello: a small context from a
#      ConfigMap that records the machine it was built on; EXAMPLE=sample:
#      deploy/examples/sample-buildkit.yaml, the README's first build of
#      https://github.com/pddg/multi-arch-image-sample with BuildKit, pointed
#      at the local registry; it asks for linux/amd64 and linux/arm64,
#      which a cluster with nodes of each builds, and kind builds the
#      PLATFORMS its nodes have),
#   6. `kubectl wait --for=condition=Ready`, then checks that the pushed
#      index lists exactly PLATFORMS, and (EXAMPLE=hello) runs the image on
#      each platform's node and checks `uname -m` recorded at build time;
#      (EXAMPLE=sample) checks status.source.commit and the index's
#      org.opencontainers.image.revision annotation agree.
#
# Platforms, honestly: kind nodes are containers on this host, so they have
# the host's architecture and nothing else. On one amd64 host only
# linux/amd64 builds natively, hence PLATFORMS=linux/amd64 by default. For
# arm64:
#   - run this script on an arm64 host (Apple Silicon with Docker Desktop,
#     a Graviton or Ampere VM) with PLATFORMS=linux/arm64: native;
#   - use a real cluster that has amd64 and arm64 nodes (EKS with Graviton,
#     GKE with Arm nodes, k3s on a Raspberry Pi next to a PC): install the
#     chart there as the README says and apply deploy/examples/ with a
#     registry the nodes can reach; this script does not manage such
#     clusters;
#   - ARM64_EMULATED_NODE=1: adds a worker, *labels* it
#     kubernetes.io/arch=arm64 and registers QEMU binfmt handlers on the
#     host (a privileged tonistiigi/binfmt container), so the arm64 build
#     runs emulated on an amd64 machine. This exercises the operator's
#     plumbing (per-platform Jobs, node pinning, the arch toleration, the
#     merge and its platform check) but is exactly the slow emulation the
#     operator exists to avoid, and the kubelet resets the label when it
#     restarts. Never use a relabelled node outside such a test.
#
# Rootless BuildKit needs user namespaces; on hosts that restrict them
# (Ubuntu 23.10+: kernel.apparmor_restrict_unprivileged_userns=1) use
# BUILDER=buildah, or see docs/troubleshooting.md.
#
# Environment: CLUSTER (kind cluster name, default multiarch-e2e), PLATFORMS,
# EXAMPLE (hello|sample), BUILDER (buildkit|buildah), KEEP=1 (leave the
# cluster and registry running), TIMEOUT (default 30m), KIND_NODE_IMAGE.

set -euo pipefail

CLUSTER="${CLUSTER:-multiarch-e2e}"
PLATFORMS="${PLATFORMS:-linux/amd64}"
EXAMPLE="${EXAMPLE:-hello}"
BUILDER="${BUILDER:-buildkit}"
TIMEOUT="${TIMEOUT:-30m}"
ARM64_EMULATED_NODE="${ARM64_EMULATED_NODE:-0}"
KEEP="${KEEP:-0}"
REGISTRY_NAME=kind-registry
REGISTRY_HOST_PORT=5001
# How build and merge pods reach the registry (Docker's DNS on the kind network).
REGISTRY_IN_CLUSTER="${REGISTRY_NAME}:5000"
# How this host (and the nodes' containerd, through hosts.toml) reach it.
REGISTRY_ON_HOST="localhost:${REGISTRY_HOST_PORT}"
NAMESPACE=e2e
OPERATOR_IMAGE=docker.io/library/multiarch-operator:e2e
TAG="e2e-$(date +%s)"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'kind.sh: %s\n' "$*" >&2; exit 1; }

# ---- tools ------------------------------------------------------------------
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required (see the header of this script)"
done
if command -v crane >/dev/null 2>&1; then
  INSPECT=crane
elif command -v skopeo >/dev/null 2>&1; then
  INSPECT=skopeo
elif docker buildx version >/dev/null 2>&1; then
  INSPECT=buildx
else
  die "one of crane, skopeo or docker buildx is required to inspect the pushed index"
fi
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer"
case "$EXAMPLE" in hello | sample) ;; *) die "EXAMPLE must be hello or sample" ;; esac
case "$BUILDER" in buildkit | buildah) ;; *) die "BUILDER must be buildkit or buildah" ;; esac
case "$(uname -m)" in
  x86_64 | amd64) HOST_ARCH=amd64 ;;
  aarch64 | arm64) HOST_ARCH=arm64 ;;
  *) die "unsupported host architecture $(uname -m): the operator image exists for amd64 and arm64" ;;
esac
IFS=, read -r -a PLATFORM_LIST <<<"$PLATFORMS"
for platform in "${PLATFORM_LIST[@]}"; do
  arch="${platform#linux/}"
  arch="${arch%%/*}"
  if [ "$arch" != "$HOST_ARCH" ] && ! { [ "$arch" = arm64 ] && [ "$ARM64_EMULATED_NODE" = 1 ]; }; then
    die "$platform cannot build on this $HOST_ARCH host's kind nodes (no node of that architecture); see the header"
  fi
done

# ---- cleanup ----------------------------------------------------------------
CREATED_CLUSTER=0
CREATED_REGISTRY=0
WORK="$(mktemp -d)"
cleanup() {
  local status=$?
  if [ "$status" -ne 0 ] && kubectl --context "kind-$CLUSTER" get ns "$NAMESPACE" >/dev/null 2>&1; then
    log "failed: what the cluster says"
    kubectl --context "kind-$CLUSTER" -n "$NAMESPACE" describe mai || true
    kubectl --context "kind-$CLUSTER" -n "$NAMESPACE" get jobs,pods -o wide || true
    kubectl --context "kind-$CLUSTER" -n multiarch-system logs deploy/multiarch-operator --tail=100 || true
  fi
  rm -rf "$WORK"
  if [ "$KEEP" = 1 ]; then
    log "KEEP=1: leaving cluster $CLUSTER and registry $REGISTRY_NAME running"
  else
    if [ "$CREATED_CLUSTER" = 1 ]; then kind delete cluster --name "$CLUSTER" || true; fi
    if [ "$CREATED_REGISTRY" = 1 ]; then docker rm -f "$REGISTRY_NAME" >/dev/null || true; fi
  fi
  exit "$status"
}
trap cleanup EXIT

# ---- registry and cluster (kind's local registry pattern) -------------------
if [ "$(docker inspect -f '{{.State.Running}}' "$REGISTRY_NAME" 2>/dev/null || true)" != true ]; then
  log "starting registry $REGISTRY_NAME on 127.0.0.1:$REGISTRY_HOST_PORT"
  docker run -d --restart=always -p "127.0.0.1:${REGISTRY_HOST_PORT}:5000" --network bridge \
    --name "$REGISTRY_NAME" docker.io/library/registry:2 >/dev/null
  CREATED_REGISTRY=1
fi

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "reusing kind cluster $CLUSTER"
else
  log "creating kind cluster $CLUSTER"
  workers=""
  if [ "$ARM64_EMULATED_NODE" = 1 ]; then workers="- role: worker"; fi
  kind create cluster --name "$CLUSTER" ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 120s --config=- <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
- |-
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
nodes:
- role: control-plane
$workers
EOF
  CREATED_CLUSTER=1
fi
KUBECTL=(kubectl --context "kind-$CLUSTER")

# Nodes pull localhost:5001/... from the registry container.
for node in $(kind get nodes --name "$CLUSTER"); do
  docker exec "$node" mkdir -p "/etc/containerd/certs.d/${REGISTRY_ON_HOST}"
  printf '[host."http://%s"]\n' "$REGISTRY_IN_CLUSTER" |
    docker exec -i "$node" cp /dev/stdin "/etc/containerd/certs.d/${REGISTRY_ON_HOST}/hosts.toml"
done
if [ "$(docker inspect -f='{{json .NetworkSettings.Networks.kind}}' "$REGISTRY_NAME")" = null ]; then
  docker network connect kind "$REGISTRY_NAME"
fi
"${KUBECTL[@]}" apply -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "${REGISTRY_ON_HOST}"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
EOF

# Builds must be able to land on every node (multi-node clusters taint the
# control plane).
"${KUBECTL[@]}" taint nodes --all node-role.kubernetes.io/control-plane:NoSchedule- >/dev/null 2>&1 || true

if [ "$ARM64_EMULATED_NODE" = 1 ]; then
  log "emulated arm64: registering QEMU binfmt handlers, relabelling a worker (see the header)"
  docker run --privileged --rm docker.io/tonistiigi/binfmt --install arm64 >/dev/null
  worker="$("${KUBECTL[@]}" get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{.items[0].metadata.name}')"
  [ -n "$worker" ] || die "no worker node to relabel"
  "${KUBECTL[@]}" label node "$worker" kubernetes.io/arch=arm64 --overwrite
  # Taint it the way GKE taints Arm nodes: the operator's automatic
  # toleration is then exercised too.
  "${KUBECTL[@]}" taint node "$worker" kubernetes.io/arch=arm64:NoSchedule --overwrite
fi

# ---- operator ---------------------------------------------------------------
log "building the operator image $OPERATOR_IMAGE (the Dockerfile, for $HOST_ARCH)"
DOCKER_BUILDKIT=1 docker build -t "$OPERATOR_IMAGE" .
kind load docker-image "$OPERATOR_IMAGE" --name "$CLUSTER"

log "installing the chart"
helm upgrade --install multiarch-operator charts/multiarch-operator \
  --kube-context "kind-$CLUSTER" --namespace multiarch-system --create-namespace \
  --set image.repository="${OPERATOR_IMAGE%:*}" --set image.tag="${OPERATOR_IMAGE##*:}" \
  --set image.pullPolicy=Never --set logLevel=debug --wait --timeout 5m
"${KUBECTL[@]}" -n multiarch-system rollout status deploy/multiarch-operator --timeout=2m

# The build pods need more than the baseline Pod Security level (Unconfined
# seccomp and AppArmor): a namespace of their own, labelled for it.
"${KUBECTL[@]}" create namespace "$NAMESPACE" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
"${KUBECTL[@]}" label namespace "$NAMESPACE" pod-security.kubernetes.io/enforce=privileged --overwrite

# ---- the build --------------------------------------------------------------
platforms_json="$(printf '"%s",' "${PLATFORM_LIST[@]}")"
platforms_json="[${platforms_json%,}]"
if [ "$EXAMPLE" = hello ]; then
  NAME=hello-native
  REPOSITORY=e2e/hello-native
  "${KUBECTL[@]}" apply -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: hello-native-context
  namespace: $NAMESPACE
data:
  Dockerfile: |
    FROM docker.io/library/busybox:1.37
    # Runs on the build node: records the machine that built this platform.
    RUN uname -m > /built-on
    CMD ["cat", "/built-on"]
---
apiVersion: multiarch.dev/v1alpha1
kind: MultiArchImage
metadata:
  name: $NAME
  namespace: $NAMESPACE
spec:
  image: ${REGISTRY_IN_CLUSTER}/${REPOSITORY}
  tags: [$TAG]
  platforms: $platforms_json
  source:
    configMap:
      name: hello-native-context
  builder:
    strategy: $BUILDER
  insecureRegistry: true
EOF
else
  NAME=sample
  REPOSITORY=e2e/sample
  # The example as shipped, pointed at the local registry (no push secret).
  patch="{\"metadata\":{\"namespace\":\"$NAMESPACE\"},\"spec\":{\"image\":\"${REGISTRY_IN_CLUSTER}/${REPOSITORY}\",\"tags\":[\"$TAG\"],\"platforms\":$platforms_json,\"pushSecret\":null,\"insecureRegistry\":true,\"builder\":{\"strategy\":\"$BUILDER\"}}}"
  "${KUBECTL[@]}" patch --local -f deploy/examples/sample-buildkit.yaml --type=merge -p "$patch" -o yaml |
    "${KUBECTL[@]}" apply -f -
fi

log "waiting for mai/$NAME to be Ready (timeout $TIMEOUT)"
start=$(date +%s)
"${KUBECTL[@]}" -n "$NAMESPACE" wait "mai/$NAME" --for=condition=Ready --timeout="$TIMEOUT"
log "Ready after $(($(date +%s) - start)) s"
"${KUBECTL[@]}" -n "$NAMESPACE" get mai "$NAME" -o wide
"${KUBECTL[@]}" -n "$NAMESPACE" describe mai "$NAME" | sed -n '/^Events:/,$p'

# ---- checks -----------------------------------------------------------------
digest="$("${KUBECTL[@]}" -n "$NAMESPACE" get mai "$NAME" -o jsonpath='{.status.digest}')"
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "status.digest is not a digest: '$digest'"
reference="${REGISTRY_ON_HOST}/${REPOSITORY}:${TAG}"

log "inspecting $reference with $INSPECT"
case "$INSPECT" in
  crane) raw="$(crane manifest --insecure "$reference")"; pushed="$(crane digest --insecure "$reference")" ;;
  skopeo)
    # The digest is the hash of the manifest's exact bytes.
    skopeo inspect --raw --tls-verify=false "docker://$reference" >"$WORK/index.json"
    raw="$(cat "$WORK/index.json")"
    pushed="sha256:$(sha256sum "$WORK/index.json" | cut -d' ' -f1)"
    ;;
  buildx)
    raw="$(docker buildx imagetools inspect --raw "$reference")"
    pushed="$(docker buildx imagetools inspect --format '{{json .Manifest.Digest}}' "$reference" | tr -d '"')"
    ;;
esac
printf '%s\n' "$raw"
[ "$pushed" = "$digest" ] || die "the tag points at $pushed, the status says $digest"
# The index lists exactly the requested platforms (attestation manifests,
# platform unknown/unknown, are not counted).
listed="$(printf '%s' "$raw" | grep -o '"architecture": *"[^"]*"' | grep -v unknown | sed 's/.*"\([^"]*\)"$/\1/' | sort | tr '\n' ' ')"
wanted="$(for p in "${PLATFORM_LIST[@]}"; do a="${p#linux/}"; echo "${a%%/*}"; done | sort | tr '\n' ' ')"
[ "$listed" = "$wanted" ] || die "the index lists architectures '$listed', wanted '$wanted'"

if [ "$EXAMPLE" = sample ]; then
  commit="$("${KUBECTL[@]}" -n "$NAMESPACE" get mai "$NAME" -o jsonpath='{.status.source.commit}')"
  [[ "$commit" =~ ^[0-9a-f]{40}$ ]] || die "status.source.commit is not a commit: '$commit'"
  printf '%s' "$raw" | grep -q "\"org.opencontainers.image.revision\": *\"$commit\"" ||
    die "the index is not annotated with org.opencontainers.image.revision=$commit"
  log "built commit $commit of the sample"
fi

if [ "$EXAMPLE" = hello ]; then
  for platform in "${PLATFORM_LIST[@]}"; do
    arch="${platform#linux/}"
    arch="${arch%%/*}"
    case "$arch" in amd64) machine=x86_64 ;; arm64) machine=aarch64 ;; *) machine="" ;; esac
    if [ "$arch" != "$HOST_ARCH" ]; then
      # A relabelled node is still a $HOST_ARCH machine: its containerd
      # would pull the $HOST_ARCH entry. The index check above is the check.
      log "$platform: built emulated on a relabelled node; not run"
      continue
    fi
    pod="run-${arch}"
    "${KUBECTL[@]}" -n "$NAMESPACE" delete pod "$pod" --ignore-not-found >/dev/null
    # Pull the index by digest through the node's containerd, which picks
    # its own platform's entry.
    "${KUBECTL[@]}" -n "$NAMESPACE" run "$pod" --restart=Never \
      --image="${REGISTRY_ON_HOST}/${REPOSITORY}@${digest}" \
      --overrides="{\"spec\":{\"nodeSelector\":{\"kubernetes.io/arch\":\"$arch\"},\"tolerations\":[{\"key\":\"kubernetes.io/arch\",\"operator\":\"Exists\"}]}}" >/dev/null
    "${KUBECTL[@]}" -n "$NAMESPACE" wait "pod/$pod" --for=jsonpath='{.status.phase}'=Succeeded --timeout=3m
    got="$("${KUBECTL[@]}" -n "$NAMESPACE" logs "$pod")"
    [ "$got" = "$machine" ] || die "$platform was built on '$got', expected $machine"
    log "$platform: built on $got, runs on its node"
  done
fi

log "end to end: OK ($PLATFORMS, $BUILDER, index $digest)"
