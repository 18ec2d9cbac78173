//! The git steps: resolving a revision to one commit, and fetching exactly
//! that commit. Both run the git image with a FIXED script: every user value
//! (URL, revision, commit) reaches it as a positional argument, never as
//! script text, so no shell ever interprets one.
//!
//! Why the steps run as `GIT_UID` (65534, `nobody`): OpenSSH's client looks
//! its own uid up in /etc/passwd (`getpwuid`) and exits with `No user exists
//! for uid N` when there is no entry. Alpine (the default git image) uses
//! musl, which has no NSS, so nss_wrapper is no way out, and a non-root
//! container cannot add an entry. `nobody` (65534) is listed in the
//! /etc/passwd of Alpine, Debian, Ubuntu, Fedora and busybox images, so ssh
//! works under both strategies without root. The files it writes are
//! world-readable (umask 022), so the builder (uid 1000 for BuildKit, root
//! for buildah) reads the checkout.

use serde_json::{json, Value};

use super::build::restricted_container;
use super::{BuilderImages, GIT_CREDENTIALS_VOLUME, SOURCE_DIR, WORKSPACE_VOLUME};
use crate::api::GitSource;

/// Where the git Secret is mounted, in the git steps only.
pub const GIT_SECRET_DIR: &str = "/var/run/multiarch/git";
/// HOME of the git steps: their git config and the ssh key copy live on
/// an emptyDir only the git steps mount, never the build step.
pub const GIT_HOME: &str = "/var/run/multiarch/git-home";
/// The uid (and gid) of the git steps: `nobody`, which has a passwd entry
/// in every common base image (see the module comment).
pub const GIT_UID: i64 = 65534;

/// Sets up credentials from the Secret's keys, whichever kind it is.
/// `$1` is the URL. Used by both steps.
const PRELUDE: &str = r#"set -eu
secrets=/var/run/multiarch/git
export HOME=/var/run/multiarch/git-home
export GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=$HOME/.gitconfig
fail() { echo "error: $*" >&2; exit 2; }
mkdir -p "$HOME"
url=$1
git config --global protocol.version 2
git config --global advice.detachedHead false
if [ -f "$secrets/ssh-privatekey" ]; then
  [ -s "$secrets/known_hosts" ] || fail "the git Secret has ssh-privatekey but no known_hosts: add the server's host keys (ssh-keyscan -t ed25519,rsa HOST) under the key known_hosts"
  cp "$secrets/ssh-privatekey" "$HOME/ssh-key"
  chmod 600 "$HOME/ssh-key"
  export GIT_SSH_COMMAND="ssh -F /dev/null -i $HOME/ssh-key -o IdentitiesOnly=yes -o UserKnownHostsFile=$secrets/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes"
fi
if [ -f "$secrets/.git-credentials" ]; then
  git config --global credential.helper "store --file=$secrets/.git-credentials"
fi
if [ -f "$secrets/username" ] || [ -f "$secrets/password" ]; then
  origin=$(printf '%s\n' "$url" | sed -n 's#^\(https\{0,1\}://[^/]*\).*#\1#p')
  [ -n "$origin" ] || fail "username and password (a basic-auth Secret) need an https:// or http:// URL"
  git config --global "credential.$origin.helper" '!f() { test "$1" = get || exit 0; printf "username=%s\npassword=%s\n" "$(cat /var/run/multiarch/git/username 2>/dev/null)" "$(cat /var/run/multiarch/git/password 2>/dev/null)"; }; f'
fi
"#;

/// `resolve_commit`: sets `commit` to the 40-hex commit of `$rev` (empty:
/// the remote's default branch) on `$url`. Names are looked up in git's own
/// order (gitrevisions(7)): as given, `refs/`, `refs/tags/`, `refs/heads/`;
/// annotated tags are peeled to their commit; a full commit is checked to
/// exist; an abbreviated one is looked up in the commits of every branch and
/// tag (commit objects only, `--filter=tree:0`).
const RESOLVE_FUNCTION: &str = r#"resolve_commit() {
if [ -z "$rev" ]; then
  commit=$(git ls-remote -- "$url" HEAD | awk '$2 == "HEAD" { print $1; exit }')
  [ -n "$commit" ] || fail "$url has no default branch (no HEAD)"
else
  refs=$(git ls-remote -- "$url")
  commit=
  for name in "$rev" "refs/$rev" "refs/tags/$rev" "refs/heads/$rev"; do
    commit=$(printf '%s\n' "$refs" | want="$name^{}" awk '$2 == ENVIRON["want"] { print $1; exit }')
    [ -n "$commit" ] || commit=$(printf '%s\n' "$refs" | want="$name" awk '$2 == ENVIRON["want"] { print $1; exit }')
    [ -z "$commit" ] || break
  done
  if [ -z "$commit" ]; then
    case $rev in
      *[!0-9a-f]*) fail "$url has no branch or tag $rev" ;;
    esac
    [ ${#rev} -ge 4 ] || fail "$rev is too short for a commit (at least 4 hex digits)"
    probe=$HOME/probe
    git init -q "$probe"
    if [ ${#rev} -eq 40 ]; then
      git -C "$probe" fetch -q --depth 1 --filter=tree:0 --no-tags "$url" "$rev" 2>/dev/null || fail "$url has no commit $rev"
      commit=$rev
    else
      git -C "$probe" fetch -q --filter=tree:0 --no-tags "$url" '+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*'
      commit=$(git -C "$probe" rev-parse -q --verify "$rev^{commit}") || fail "no commit of a branch or tag of $url starts with $rev, or more than one does"
    fi
  fi
fi
case $commit in
  *[!0-9a-f]*) fail "$url answered $commit, not a commit" ;;
esac
}
"#;

/// `$1` URL, `$2` revision. Writes the 40-hex commit, alone, to
/// /dev/termination-log.
const RESOLVE: &str = r#"rev=${2-}
resolve_commit
printf '%s' "$commit" > /dev/termination-log
echo "resolved ${rev:-the default branch} of $url to $commit"
"#;

/// `$1` URL, `$2` the 40-hex commit, `$3` the revision. Fetches that commit
/// alone, shallow, then its submodules (recursive, shallow) and its Git LFS
/// files. An empty `$2` (no resolve step ran) resolves `$3` here first.
const FETCH: &str = r#"commit=${2-}
if [ -z "$commit" ]; then
  rev=${3-}
  resolve_commit
fi
case $commit in
  *[!0-9a-f]*|'') fail "$commit is not a commit" ;;
esac
[ ${#commit} -eq 40 ] || fail "$commit is not a full commit"
git init -q /workspace/source
cd /workspace/source
git remote add origin "$url"
git fetch -q --depth 1 --no-tags origin "$commit"
git checkout -q --detach FETCH_HEAD
[ "$(git rev-parse HEAD)" = "$commit" ] || fail "fetched $(git rev-parse HEAD), not $commit"
if [ -f .gitmodules ]; then
  git submodule --quiet update --init --recursive --depth 1
fi
if git grep -q -e 'filter=lfs' -- '*.gitattributes' 2>/dev/null; then
  git lfs version >/dev/null 2>&1 || fail "the repository uses Git LFS and the git image has no git-lfs: give the operator a --git-image that has it"
  git lfs install --local >/dev/null
  git lfs pull
fi
echo "fetched $url at $commit"
"#;

/// The resolve script, as the container runs it.
pub fn resolve_script() -> String {
    format!("{PRELUDE}{RESOLVE_FUNCTION}{RESOLVE}")
}

/// The fetch script, as the container runs it.
pub fn fetch_script() -> String {
    format!("{PRELUDE}{RESOLVE_FUNCTION}{FETCH}")
}

/// Volumes the git steps need: their HOME and, if named, the git Secret.
pub fn git_volumes(git: &GitSource) -> Vec<Value> {
    let mut volumes = vec![super::storage::BuildStorage::small_volume("git-home")];
    if let Some(secret) = &git.secret_ref {
        volumes.push(json!({"name": GIT_CREDENTIALS_VOLUME, "secret": {
            "secretName": secret.name,
            // Readable by GIT_UID whatever the pod's fsGroup: only the git
            // steps mount it, so no other process sees these files.
            "defaultMode": 0o444,
            "optional": false,
        }}));
    }
    volumes
}

/// A container of the git image running `script` with the URL and more
/// values as positional arguments. `extra_mounts` are the step's own.
pub fn git_container(
    name: &str,
    script: String,
    git: &GitSource,
    values: &[&str],
    images: &BuilderImages,
    extra_mounts: &[Value],
) -> Value {
    let mut mounts = vec![json!({"name": "git-home", "mountPath": GIT_HOME})];
    if git.secret_ref.is_some() {
        mounts.push(
            json!({"name": GIT_CREDENTIALS_VOLUME, "mountPath": GIT_SECRET_DIR, "readOnly": true}),
        );
    }
    mounts.extend(extra_mounts.iter().cloned());
    let mut security = restricted_container();
    security["runAsUser"] = json!(GIT_UID);
    security["runAsGroup"] = json!(GIT_UID);
    security["runAsNonRoot"] = json!(true);
    let mut command = vec![
        "sh".to_string(),
        "-c".into(),
        script,
        name.into(),
        git.url.clone(),
    ];
    command.extend(values.iter().map(|v| v.to_string()));
    json!({
        "name": name,
        "image": images.git,
        "imagePullPolicy": "IfNotPresent",
        // `sh -c SCRIPT NAME ARG...`: the arguments are $1, $2...
        "command": command,
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": security,
    })
}

/// The fetch step of a build Job: the context at `SOURCE_DIR`. Without a
/// commit (nothing resolved it), the step resolves the revision itself.
pub fn fetch_container(git: &GitSource, commit: Option<&str>, images: &BuilderImages) -> Value {
    debug_assert!(SOURCE_DIR == "/workspace/source", "FETCH writes there");
    let revision = git.revision.clone().unwrap_or_default();
    git_container(
        "fetch-source",
        fetch_script(),
        git,
        &[commit.unwrap_or(""), &revision],
        images,
        &[json!({"name": WORKSPACE_VOLUME, "mountPath": "/workspace"})],
    )
}
