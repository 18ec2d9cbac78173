#!/usr/bin/env bash
# Builds the upstream components the end-to-end tests run for real, from
# their own Go modules (pinned in tests/upstream/*/go.mod and go.sum), into
# .cache/upstream/<name>-<version>/. A warm machine builds nothing again.
#   kube-v1.34.4/upstream-kube   etcd, kube-apiserver, kube-controller-manager,
#                                kube-scheduler (one binary, linked once)
#   buildkit-v0.18.2/            buildkitd, buildctl, buildctl-daemonless.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if ! command -v go >/dev/null 2>&1; then
  echo "go not found: the upstream components are built with Go (Debian package golang-go, or the Go toolchain)" >&2
  exit 1
fi

# Go's module and build caches stay in the project's cache: under $HOME they
# would sit within reach of every build container of the tests (the hostile
# probes of tests/git_e2e.rs read /root whole).
export GOMODCACHE="${GOMODCACHE_UPSTREAM:-$root/.cache/upstream/go/mod}"
export GOCACHE="${GOCACHE_UPSTREAM:-$root/.cache/upstream/go/build}"
export GOFLAGS="${GOFLAGS:-} -modcacherw"

# The version a harness pins, read from its go.mod.
pinned() { awk -v m="$2" '$1 == m { print $2; exit }' "tests/upstream/$1/go.mod"; }

kube_version=$(pinned kube k8s.io/kubernetes)
kube_dir=.cache/upstream/kube-$kube_version
if [ ! -x "$kube_dir/upstream-kube" ]; then
  echo "building Kubernetes $kube_version (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) from its Go modules"
  start=$(date +%s)
  mkdir -p "$kube_dir"
  # The version stamps upstream's own build sets (hack/lib/version.sh), so
  # the API server reports the release it is.
  minor=${kube_version#v1.}
  minor=${minor%%.*}
  (cd tests/upstream/kube && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w \
    -X k8s.io/component-base/version.gitVersion=$kube_version \
    -X k8s.io/component-base/version.gitMajor=1 \
    -X k8s.io/component-base/version.gitMinor=$minor \
    -X k8s.io/component-base/version.gitTreeState=clean" \
    -o "$root/$kube_dir/upstream-kube.tmp" .)
  mv "$kube_dir/upstream-kube.tmp" "$kube_dir/upstream-kube"
  echo "built $kube_dir/upstream-kube in $(($(date +%s) - start)) s"
fi

buildkit_version=$(pinned buildkit github.com/moby/buildkit)
buildkit_dir=.cache/upstream/buildkit-$buildkit_version
if [ ! -x "$buildkit_dir/buildkitd" ] || [ ! -x "$buildkit_dir/buildctl" ] || [ ! -x "$buildkit_dir/buildctl-daemonless.sh" ]; then
  echo "building BuildKit $buildkit_version (buildkitd, buildctl) from its Go module"
  start=$(date +%s)
  mkdir -p "$buildkit_dir/tmp"
  (cd tests/upstream/buildkit && CGO_ENABLED=0 go build -mod=readonly -trimpath \
    -ldflags "-s -w -X github.com/moby/buildkit/version.Version=$buildkit_version" \
    -o "$root/$buildkit_dir/tmp/" github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl)
  # The daemonless wrapper the rootless image runs, from the same module.
  module_dir=$(cd tests/upstream/buildkit && go list -m -f '{{.Dir}}' github.com/moby/buildkit)
  install -m 0755 "$module_dir/examples/buildctl-daemonless/buildctl-daemonless.sh" "$buildkit_dir/tmp/"
  mv "$buildkit_dir"/tmp/* "$buildkit_dir/"
  rmdir "$buildkit_dir/tmp"
  echo "built $buildkit_dir in $(($(date +%s) - start)) s"
fi
