//! Runs the browser end-to-end suite (tests/browser/e2e.test.mjs, embed.test.mjs for
//! embedding from a second origin, learner.test.mjs for the learner page's tabs, theme and
//! viewing badge, classroom.test.mjs for an instructor's sign-in, room, live dashboard,
//! read-only view, notice and projector with three learners: playwright-core driving Debian's
//! Chromium against real `nsplay serve` instances, through the shared
//! tests/browser/harness.mjs) as part of `cargo test`. Once the suite has passed, no session
//! group may be left under any instance's cgroup parent. Missing prerequisites fail the test
//! with what to install: it never skips.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Instance;

const SUITE_TIMEOUT: Duration = Duration::from_secs(540);

/// The suite's files and how many instances each gets: one per server the file runs at a time.
/// No two files share an instance, so a group left behind names its file.
const FILES: &[(&str, usize)] =
    &[("e2e.test.mjs", 4), ("embed.test.mjs", 2), ("learner.test.mjs", 3), ("classroom.test.mjs", 1)];

fn chromium() -> PathBuf {
    PathBuf::from(std::env::var_os("NSPLAY_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()))
}

#[test]
fn browser_end_to_end() {
    common::require_root();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let browser = chromium();
    assert!(
        browser.exists(),
        "{} is missing: the browser tests need Debian's Chromium (`apt-get install chromium`; tests/run.sh does it)",
        browser.display()
    );
    assert!(
        Command::new("node").arg("--version").output().map(|o| o.status.success()).unwrap_or(false),
        "node is missing: the browser tests run on Node.js (`apt-get install nodejs npm`)"
    );
    assert!(
        dir.join("node_modules/playwright-core/package.json").exists(),
        "{}/node_modules is missing: run `npm ci` there (tests/run.sh does it)",
        dir.display()
    );

    // Isolated instances (state dir, cgroup parent, id range) for each file, passed as
    // { file: [serve args, …] } (tests/browser/harness.mjs reads it); dropped (cgroup parents
    // removed) after the suite has stopped its servers.
    let instances: Vec<(&str, Vec<Instance>)> =
        FILES.iter().map(|&(file, n)| (file, (0..n).map(|_| Instance::new()).collect())).collect();
    let args: serde_json::Map<String, serde_json::Value> = instances
        .iter()
        .map(|(file, insts)| {
            (file.to_string(), serde_json::json!(insts.iter().map(Instance::serve_args).collect::<Vec<_>>()))
        })
        .collect();
    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .args(FILES.iter().map(|(file, _)| file))
        .current_dir(&dir)
        .env("NSPLAY_BIN", common::BIN)
        .env("NSPLAY_INSTANCES", serde_json::Value::Object(args).to_string())
        .env("NSPLAY_CHROMIUM", &browser)
        .env("NSPLAY_SCREENSHOT_DIR", Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots"))
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Own process group, so a hung suite is ended together with its browser and servers.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().expect("cannot start node");
    let pgid = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let reader = |mut p: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = p.read_to_string(&mut s);
            s
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > SUITE_TIMEOUT {
            let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGTERM);
            std::thread::sleep(Duration::from_secs(10));
            let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    println!("{stdout}\n{stderr}");
    let took = start.elapsed().as_secs();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("the browser suite failed ({s}, {took} s):\n{stdout}\n{stderr}"),
        None => panic!("the browser suite took longer than {SUITE_TIMEOUT:?} and was stopped:\n{stdout}\n{stderr}"),
    }
    // Every server has stopped (the files' `after` hooks see to it even when a test fails):
    // a group still there is a session (or its relay) that no shutdown ended. Polled for up to
    // 10 s, as the other tests' leftover checks are.
    let leftovers = |insts: &[(&str, Vec<Instance>)]| -> Vec<String> {
        insts
            .iter()
            .flat_map(|(file, list)| list.iter().enumerate().map(move |(i, inst)| (file, i, inst)))
            .filter_map(|(file, i, inst)| {
                let groups = inst.all_groups();
                (!groups.is_empty()).then(|| format!("{file}, its INSTANCES[{i}] ({}): {groups:?}", inst.parent))
            })
            .collect()
    };
    common::wait_until(10, || leftovers(&instances).is_empty());
    let left = leftovers(&instances);
    assert!(left.is_empty(), "the browser suite passed but left session groups behind:\n{}", left.join("\n"));
    drop(instances);
}
