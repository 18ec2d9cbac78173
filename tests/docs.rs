//! The docs that are generated or point at files: `docs/reference.md` is
//! generated from the CRD's schema here, so it cannot drift from it
//! (`UPDATE_DOCS=1 cargo test --test docs` rewrites it), and every relative
//! link in README.md and docs/ leads to a file that exists.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

const CRD: &str = "crds/multiarchimages.multiarch.dev.yaml";
const REFERENCE: &str = "docs/reference.md";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The CRD's one document, skipping the leading comment-only one.
fn crd() -> Value {
    let text = std::fs::read_to_string(repo(CRD)).expect("read the CRD");
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("the CRD parses"))
        .collect();
    docs.into_iter()
        .find(|doc| doc["kind"] == "CustomResourceDefinition")
        .expect("a CustomResourceDefinition in the CRD file")
}

/// Inline code that survives any content (backticks, pipes).
fn code(text: &str) -> String {
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

/// Integers written as YAML floats by the generator (`86400.0`) read back as
/// integers.
fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => value.to_string(),
    }
}

fn type_name(schema: &Value) -> String {
    if schema["x-kubernetes-int-or-string"] == true {
        return "int-or-string".into();
    }
    let base = match schema["type"].as_str() {
        Some("array") => format!("[]{}", type_name(&schema["items"])),
        Some("object") if schema["additionalProperties"].is_object() => {
            format!("map[string]{}", type_name(&schema["additionalProperties"]))
        }
        Some(other) => other.to_string(),
        None => "any".into(),
    };
    match schema["format"].as_str() {
        Some(format) => format!("{base} ({format})"),
        None => base,
    }
}

/// The constraints of one schema node, as the API server enforces them.
fn validation(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().filter_map(Value::as_str).map(code).collect();
        out.push(format!("one of {}", values.join(", ")));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        out.push(format!("pattern {}", code(pattern)));
    }
    for (key, label) in [
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minimum", "value ≥"),
        ("maximum", "value ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
        ("minProperties", "entries ≥"),
        ("maxProperties", "entries ≤"),
    ] {
        if !schema[key].is_null() {
            out.push(format!("{label} {}", number(&schema[key])));
        }
    }
    for (key, label) in [
        ("items", "each item"),
        ("additionalProperties", "each value"),
    ] {
        let inner = &schema[key];
        if inner["properties"].is_null() && inner.is_object() {
            out.extend(
                validation(inner)
                    .into_iter()
                    .map(|v| format!("{label}: {v}")),
            );
        }
    }
    match schema["x-kubernetes-list-type"].as_str() {
        Some("set") => out.push("no duplicates (list type `set`)".into()),
        Some("map") => {
            let keys: Vec<String> = schema["x-kubernetes-list-map-keys"]
                .as_array()
                .map(|k| k.iter().filter_map(Value::as_str).map(code).collect())
                .unwrap_or_default();
            out.push(format!(
                "one item per {} (list type `map`)",
                keys.join(", ")
            ));
        }
        _ => {}
    }
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let expression = code(rule["rule"].as_str().unwrap_or_default());
        match rule["message"].as_str() {
            Some(message) => out.push(format!("CEL {expression}: {message}")),
            None => out.push(format!("CEL {expression}")),
        }
    }
    out
}

/// Descriptions are free text: keep paragraphs, join wrapped lines.
fn description(schema: &Value) -> String {
    let text = schema["description"]
        .as_str()
        .or_else(|| schema["items"]["description"].as_str())
        .unwrap_or("");
    text.split("\n\n")
        .map(|paragraph| paragraph.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// One entry per field, depth first, in the schema's order.
fn walk(out: &mut String, path: &str, schema: &Value, required: bool) {
    let _ = writeln!(out, "### {}\n", code(path));
    let _ = writeln!(out, "- Type: {}", code(&type_name(schema)));
    let _ = writeln!(out, "- Required: {}", if required { "yes" } else { "no" });
    if !schema["default"].is_null() {
        let _ = writeln!(out, "- Default: {}", code(&schema["default"].to_string()));
    }
    if schema["nullable"] == true {
        let _ = writeln!(out, "- May be `null`");
    }
    let checks = validation(schema);
    if !checks.is_empty() {
        let _ = writeln!(out, "- Validation: {}", checks.join("; "));
    }
    let text = description(schema);
    if !text.is_empty() {
        let _ = writeln!(out, "\n{text}");
    }
    out.push('\n');

    // Objects nest directly; objects inside lists under `path[]`.
    let (child_prefix, object) = if schema["items"]["properties"].is_object() {
        (format!("{path}[]"), &schema["items"])
    } else {
        (path.to_string(), schema)
    };
    walk_properties(out, &child_prefix, object);
}

fn walk_properties(out: &mut String, prefix: &str, object: &Value) {
    let Some(properties) = object["properties"].as_object() else {
        return;
    };
    let required: Vec<&str> = object["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, schema) in properties {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        walk(out, &path, schema, required.contains(&name.as_str()));
    }
}

/// The whole reference, from the CRD alone.
fn reference(crd: &Value) -> String {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let version = spec["versions"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["storage"] == true).or(v.first()))
        .expect("a CRD version");
    let group = spec["group"].as_str().unwrap();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# `{}` reference\n\n<!-- Generated from {CRD} by tests/docs.rs: do not edit. \
         Regenerate with `UPDATE_DOCS=1 cargo test --test docs`. -->\n",
        names["kind"].as_str().unwrap()
    );
    let root = &version["schema"]["openAPIV3Schema"];
    let _ = writeln!(out, "{}\n", description(root));
    let short: Vec<String> = names["shortNames"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_str).map(code).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "- API version: {}\n- Kind: {}, plural {}, short name {}\n- Scope: {}\n",
        code(&format!("{group}/{}", version["name"].as_str().unwrap())),
        code(names["kind"].as_str().unwrap()),
        code(names["plural"].as_str().unwrap()),
        short.join(", "),
        spec["scope"].as_str().unwrap(),
    );
    let _ = writeln!(
        out,
        "`kubectl explain {}.spec` shows the same descriptions in a cluster.\n",
        names["singular"].as_str().unwrap()
    );

    let _ = writeln!(
        out,
        "## `kubectl get` columns\n\n| Column | From | Description |\n| --- | --- | --- |"
    );
    for column in version["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let wide = if column["priority"].as_i64().unwrap_or(0) > 0 {
            " (with `-o wide`)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| {}{wide} | {} | {} |",
            column["name"].as_str().unwrap_or_default(),
            code(column["jsonPath"].as_str().unwrap_or_default()),
            column["description"].as_str().unwrap_or_default(),
        );
    }
    out.push('\n');

    for section in ["spec", "status"] {
        let schema = &root["properties"][section];
        if schema.is_null() {
            continue;
        }
        let _ = writeln!(out, "## `{section}`\n");
        let text = description(schema);
        if !text.is_empty() {
            let _ = writeln!(out, "{text}\n");
        }
        walk_properties(&mut out, section, schema);
    }
    // One trailing newline, whatever the last entry ended with.
    format!("{}\n", out.trim_end())
}

#[test]
fn reference_is_generated_from_the_crd() {
    let generated = reference(&crd());
    let path = repo(REFERENCE);
    if std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).expect("write docs/reference.md");
        eprintln!("UPDATE_DOCS=1: rewrote {REFERENCE} from {CRD}");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{REFERENCE} is not what {CRD} generates (the CRD changed, or the file was edited by hand): \
         regenerate it with `UPDATE_DOCS=1 cargo test --test docs` and commit it"
    );
}

#[test]
fn reference_covers_every_field_of_the_schema() {
    let crd = crd();
    let text = reference(&crd);
    // A few fields a user looks for first, and the CEL rule of the source.
    for needle in [
        "### `spec.image`",
        "### `spec.platforms`",
        "### `spec.source.git.url`",
        "### `spec.builder.strategy`",
        "### `status.platforms[].digest`",
        "### `status.conditions[].observedGeneration`",
        "has(self.git) != has(self.configMap)",
        "- Default: `[\"linux/amd64\",\"linux/arm64\"]`",
    ] {
        assert!(text.contains(needle), "the reference lacks {needle}");
    }
    // Every property of the schema has its own entry.
    fn count(schema: &Value) -> usize {
        let own = schema["properties"]
            .as_object()
            .map_or(0, |p| p.values().map(|s| 1 + count(s)).sum::<usize>());
        own + if schema["items"]["properties"].is_object() {
            count(&schema["items"])
        } else {
            0
        }
    }
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let fields = count(&root["properties"]["spec"]) + count(&root["properties"]["status"]);
    assert_eq!(text.matches("\n### `").count(), fields);
}

/// Relative links `](path)` in a markdown file, outside code.
fn relative_links(markdown: &str) -> Vec<String> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            // Every other backtick-separated piece is inline code.
            prose.extend(line.split('`').step_by(2));
            prose.push('\n');
        }
    }
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        if !target.contains("://") && !target.starts_with('#') && !target.starts_with("mailto:") {
            out.push(target.split('#').next().unwrap().to_string());
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn relative_links_in_the_docs_lead_to_files() {
    let mut files = vec![repo("README.md")];
    for entry in std::fs::read_dir(repo("docs")).expect("docs/") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    assert!(files.len() >= 5, "README.md and docs/*.md: {files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for link in relative_links(&text) {
            let target = file.parent().unwrap().join(&link);
            assert!(
                target.exists(),
                "{} links to {link}, which does not exist",
                file.display()
            );
        }
    }
}

/// `name=$(kubectl ...)`: a documented command whose output later commands use.
fn is_assignment(line: &str) -> bool {
    line.split_once("=$(kubectl ").is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The `kubectl ...` commands of a document (and `name=$(kubectl ...)`
/// assignments), continuation lines joined: in
/// Markdown, the lines of shell code blocks; in YAML, comment lines.
fn kubectl_commands(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let markdown = path.extension().is_some_and(|e| e == "md");
    let mut out = vec![];
    let mut shell = false;
    let mut pending: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if markdown && trimmed.starts_with("```") {
            let lang = trimmed.trim_start_matches('`').trim();
            shell = !shell && matches!(lang, "sh" | "bash" | "shell" | "console");
            continue;
        }
        let code = if markdown {
            if !shell {
                continue;
            }
            trimmed
        } else {
            match trimmed.strip_prefix('#') {
                Some(c) => c.trim_start(),
                None => continue,
            }
        };
        let cmd = match pending.take() {
            Some(mut p) => {
                p.push(' ');
                p.push_str(code.trim());
                p
            }
            None if code.starts_with("kubectl ") || is_assignment(code) => code.to_string(),
            None => continue,
        };
        match cmd.strip_suffix('\\') {
            Some(head) => pending = Some(head.trim_end().to_string()),
            None => out.push(cmd),
        }
    }
    out
}

/// The MultiArchImage status the operator writes when a build succeeds
/// (`ready`) or fails for good; the documented `kubectl wait` commands
/// wait for these.
fn operator_status(generation: i64, ready: bool) -> serde_json::Value {
    let (phase, r, stalled) = if ready {
        ("Succeeded", "True", "False")
    } else {
        ("Failed", "False", "True")
    };
    serde_json::json!({"status": {
        "phase": phase, "observedGeneration": generation,
        "image": "registry.example.com/tools/sample@sha256:5b1e07c2a1f3e0c0b6b4f1f0b8b8d4f4f1d5e9a2b7c3d6e8f9a0b1c2d3e4f5a6",
        "conditions": [
            {"type": "Ready", "status": r, "reason": phase, "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": generation},
            {"type": "Stalled", "status": stalled, "reason": phase, "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": generation},
        ],
    }})
}

struct DocsCluster {
    sim: kube_sim::Sim,
    home: tempfile::TempDir,
    kubectl: PathBuf,
}

impl DocsCluster {
    /// A cluster with the CRD installed, as after the README's install step.
    fn start() -> DocsCluster {
        let kubectl = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("`kubectl` not found: install the Debian package kubernetes-client");
        // The operator's image runs the operator built here, as its
        // Dockerfile's ENTRYPOINT does.
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_multiarch-operator"));
        let sim = kube_sim::Sim::start(kube_sim::SimConfig {
            images: vec![(OPERATOR_IMAGE.into(), bin.parent().map(PathBuf::from))],
            image_entrypoints: vec![(OPERATOR_IMAGE.into(), vec!["multiarch-operator".into()])],
            ..Default::default()
        })
        .expect("start kube-sim");
        let c = DocsCluster {
            sim,
            home: tempfile::tempdir().unwrap(),
            kubectl,
        };
        for (file, text) in [
            ("deploy_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n"),
            ("known_hosts", "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample\n"),
        ] {
            std::fs::write(c.home.path().join(file), text).unwrap();
        }
        c.sh(&format!("kubectl apply -f {CRD}"), true);
        c.sh("kubectl wait --for=condition=Established crd/multiarchimages.multiarch.dev --timeout=30s", true);
        c
    }

    /// Run one shell command line from the repository root; returns
    /// (success, stdout, stderr).
    fn sh(&self, line: &str, must: bool) -> (bool, String, String) {
        let bin = self.kubectl.parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(repo(""))
            .env("KUBECONFIG", self.sim.kubeconfig_path())
            .env("HOME", self.home.path())
            .env("PATH", path)
            // What a reader exports before pasting the commands.
            .env("REGISTRY_TOKEN", "registry-token")
            .env("GIT_TOKEN", "git-token")
            .output()
            .expect("run sh");
        let r = (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        assert!(
            !must || r.0,
            "`{line}` failed:\nstdout: {}\nstderr: {}",
            r.1,
            r.2
        );
        r
    }

    fn set_operator_status(&self, ready: bool) {
        let (_, generation, _) = self.sh(
            "kubectl -n ci get mai sample -o jsonpath='{.metadata.generation}'",
            true,
        );
        let status = operator_status(generation.trim().parse().unwrap_or(1), ready);
        self.sh(
            &format!(
                "kubectl -n ci patch mai sample --subresource=status --type=merge -p '{status}'"
            ),
            true,
        );
    }
}

/// The operator's image repository in deploy/multiarch-operator.yaml.
const OPERATOR_IMAGE: &str = "ghcr.io/multiarch-operator/multiarch-operator";

/// Commands that cannot run on the simulator, and why.
const NOT_ON_THE_SIMULATOR: &[(&str, &str)] = &[];

/// After the README's install commands: the operator runs in-cluster as its
/// ServiceAccount (it takes its leader Lease), then its Deployment is
/// removed, as the rest of the test writes the status the operator would.
fn check_and_stop_the_installed_operator(c: &DocsCluster) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, holder, _) = c.sh(
            "kubectl -n multiarch-system get lease multiarch-operator -o jsonpath='{.spec.holderIdentity}'",
            false,
        );
        if holder.starts_with("multiarch-operator-") {
            break;
        }
        if std::time::Instant::now() > deadline {
            let (_, logs, _) = c.sh(
                "kubectl -n multiarch-system logs deploy/multiarch-operator --tail=40",
                false,
            );
            panic!("the installed operator took no leader Lease; its log:\n{logs}");
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    c.sh(
        "kubectl -n multiarch-system delete deploy multiarch-operator --wait=true",
        true,
    );
    // The garbage collector removes its ReplicaSet, then the pod stops.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, pods, _) = c.sh(
            "kubectl -n multiarch-system get pods -l app.kubernetes.io/name=multiarch-operator -o name",
            true,
        );
        if pods.trim().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operator's pods stay: {pods}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Every `kubectl` command written in README.md, docs/*.md and
/// deploy/examples/*, run as written against the simulator (without the
/// operator: the test writes the status the operator would, so `kubectl
/// wait` and `kubectl get` show what they would show). Substitutions, the
/// ones a reader makes: `sample.yaml` (the reader's own file) is
/// deploy/examples/sample-buildkit.yaml; `./deploy_key` and `./known_hosts`
/// are files in the test's home; `$REGISTRY_TOKEN`/`$GIT_TOKEN` are
/// set; the build id `5f2c9a1e` of the example Job names is the one the
/// operator renders; a trailing `&` (running two waits at once) is dropped.
#[test]
fn documented_kubectl_commands_run_on_the_simulator() {
    let mut files = vec![repo("README.md")];
    for dir in ["docs", "deploy/examples"] {
        let mut more: Vec<PathBuf> = std::fs::read_dir(repo(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        more.sort();
        files.extend(more);
    }
    let mut ran = 0;
    for file in &files {
        let commands = kubectl_commands(file);
        if commands.is_empty() {
            continue;
        }
        let c = DocsCluster::start();
        let readme = file.ends_with("README.md");
        let mut assignments: Vec<String> = vec![];
        if !readme {
            // The README's first build has happened.
            c.sh("kubectl create namespace ci", true);
            c.sh(
                "kubectl apply -f deploy/examples/sample-buildkit.yaml",
                true,
            );
        }
        // The build Jobs of the example, as the operator creates them.
        let build_id = {
            let (_, rendered, _) = c.sh(
                &format!(
                    "{} render -f deploy/examples/sample-buildkit.yaml",
                    env!("CARGO_BIN_EXE_multiarch-operator")
                ),
                true,
            );
            let name = rendered
                .lines()
                .filter_map(|l| l.trim().strip_prefix("name: sample-"))
                .find(|name| !name.ends_with("-resolve"))
                .expect("a rendered build Job name")
                .to_string();
            name.split('-').next().unwrap().to_string()
        };
        if !readme {
            // Owned by the MultiArchImage (the garbage collector removes
            // Jobs whose owner does not exist).
            c.sh(
                &format!(
                    "{} render -f deploy/examples/sample-buildkit.yaml \
                     | sed \"s/<uid of the MultiArchImage>/$(kubectl -n ci get mai sample -o jsonpath='{{.metadata.uid}}')/\" \
                     | kubectl -n ci create -f -",
                    env!("CARGO_BIN_EXE_multiarch-operator")
                ),
                true,
            );
        }
        for cmd in commands {
            if let Some((_, why)) = NOT_ON_THE_SIMULATOR.iter().find(|(c, _)| *c == cmd) {
                eprintln!("not run ({why}): {cmd}");
                continue;
            }
            // The reader's own key files, made up in the test's home.
            let home = c.home.path().display().to_string();
            let cmd = cmd
                .replace("=./deploy_key", &format!("={home}/deploy_key"))
                .replace("=./known_hosts", &format!("={home}/known_hosts"))
                .replace("-f sample.yaml", "-f deploy/examples/sample-buildkit.yaml")
                .replace("5f2c9a1e", &build_id);
            let cmd = cmd.trim_end_matches('&').trim_end().to_string();
            // Earlier assignments of the same document stay in effect.
            let cmd = if is_assignment(&cmd) {
                assignments.push(cmd.clone());
                cmd
            } else if assignments.is_empty() {
                cmd
            } else {
                format!("{}; {cmd}", assignments.join("; "))
            };
            let installed = cmd.contains("rollout status deploy/multiarch-operator");
            if cmd.contains("wait mai/sample") {
                c.set_operator_status(!cmd.contains("condition=Stalled"));
            }
            if cmd.contains("logs")
                && (cmd.contains("job/sample-") || cmd.contains("-l multiarch.dev/name=sample"))
            {
                // The build pods cannot pull the builder images here, so
                // kubectl finds the Job's pod and container and says it
                // is waiting to start.
                let (_, _, err) = c.sh(&cmd, false);
                assert!(err.contains("is waiting to start"), "`{cmd}`: {err}");
            } else {
                let (_, out, _) = c.sh(&cmd, true);
                if cmd.contains("get mai sample") && !cmd.contains("-o") {
                    assert!(out.contains("sample") && out.contains("Succeeded"), "{out}");
                }
                if installed {
                    assert!(out.contains("successfully rolled out"), "{out}");
                    check_and_stop_the_installed_operator(&c);
                }
            }
            ran += 1;
        }
    }
    assert!(ran >= 20, "ran only {ran} documented commands");
}

/// Every Job the operator renders from every example is accepted by the
/// API server's validation (the simulator enforces the real rules).
#[test]
fn rendered_jobs_of_every_example_are_accepted() {
    let c = DocsCluster::start();
    c.sh("kubectl create namespace ci", true);
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo("deploy/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    examples.sort();
    let mut jobs = 0;
    for ex in &examples {
        let (_, rendered, _) = c.sh(
            &format!(
                "{} render -f {}",
                env!("CARGO_BIN_EXE_multiarch-operator"),
                ex.display()
            ),
            true,
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("jobs.yaml");
        std::fs::write(&f, &rendered).unwrap();
        let (_, out, _) = c.sh(&format!("kubectl -n ci create -f {}", f.display()), true);
        jobs += out.matches("job.batch/").count();
    }
    assert!(
        jobs >= 3 * examples.len(),
        "{jobs} Jobs from {} examples",
        examples.len()
    );
}
