//! The benchmark (`nsplay-bench`, docs/benchmarks.md) in its smoke mode: it must start nsplay,
//! drive it through the API, run the baselines and print the whole table. No time is asserted:
//! the numbers of a smoke run mean nothing, and CI machines are noisy.

mod common;

use std::process::Command;

/// The benchmark is a crate of its own (`server/bench`), so cargo names no path for it here: it
/// sits beside `nsplay` in the same target directory (`cargo build --workspace` builds both).
fn bench() -> std::path::PathBuf {
    let path = std::path::Path::new(common::BIN).with_file_name("nsplay-bench");
    assert!(
        path.exists(),
        "{} does not exist: build the workspace first (`cargo build --release --workspace`, as tests/run.sh does)",
        path.display()
    );
    path
}

#[test]
fn smoke_run_prints_the_whole_table() {
    common::require_root();
    let pid = std::process::id();
    let state = tempfile::tempdir().unwrap();
    // Its own cgroup parent and an id range of its own (above those of tests/common and of a full
    // benchmark run), so it runs next to the other tests.
    let id_base = (3_600_000_000u32 + (pid % 64) * 16 * 65536).to_string();
    let out = Command::new(bench())
        .args(["--smoke", "--nsplay", common::BIN, "--state-dir"])
        .arg(state.path())
        .args(["--cgroup-parent", &format!("nsplay-bench-smoke-{pid}"), "--id-base", &id_base, "--id-slots", "16"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nsplay-bench --smoke failed ({}):\n{stdout}\n{stderr}", out.status);

    assert!(stdout.contains("smoke mode"), "{stdout}");
    for header in ["- Date:", "- Machine:", "- Command:", "| Measure", "| nsplay", "| bwrap", "| unshare", "| raw pty"]
    {
        assert!(stdout.contains(header), "no {header:?} in:\n{stdout}");
    }
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ")).collect();
    for label in [
        "Spawn, 5 one after another, p50",
        "Spawn, 5 one after another, p99",
        "Spawn, 2 at once, p50",
        "Spawn, 2 at once, p99",
        "Echo p50 / p99, 1 session open",
        "Echo p50 / p99, 3 sessions open",
        "Echo p50 / p99, 5 sessions open",
        "Throughput, cat 8 MiB, --cpu 1",
        "Throughput, cat 8 MiB, --cpu 0.5",
        "Server CPU per GB of output, --cpu 1",
        "Server CPU per GB of output, --cpu 0.5",
        "Capacity: idle sessions opened",
        "Capacity: time to open all",
        "Capacity: time to end all",
        "Capacity: server RSS per idle session",
        "Capacity: sandbox memory per session",
        "Classroom (6 learners over 2 s, 1 flooding, 1 fork bombs, then 4 s): sessions",
        "Classroom: keystrokes lost",
        "Classroom: typists' keystroke → echo, p50 / p99 / max",
        "Classroom: /healthz p50 / p99",
        "Classroom: host memory per learner (MemAvailable)",
        "Classroom: server RSS",
        "Classroom without the output budget (--output-rate 0): echo p50 / p99 / max",
        "Classroom without the output budget: flood output delivered",
        "Classroom: typists' p99 echo, with the budget / without",
        "Images: import of the 8 MB image (3 uncompressed layers)",
        "Images: spawn without a pool (`--warm-pool 0`), 2 one after another, p50 / p99, on the image",
        "Images: spawn without a pool (`--warm-pool 0`), 2 one after another, p50 / p99, on the host root",
        "Images: spawn without a pool (`--warm-pool 0`), p50, image / host root",
        "Images: spawn from the warm pool, 2 one after another, p50 / p99, on the image",
        "Images: spawn from the warm pool, 2 one after another, p50 / p99, on the host root",
        "Images: spawn from the warm pool, p50, image / host root",
        "Images: host memory per idle session on the image (MemAvailable, 3 open)",
        "Images: host memory per idle session on the host root (MemAvailable, 3 open)",
    ] {
        let row = rows.iter().find(|r| r.starts_with(&format!("| {label}"))).unwrap_or_else(|| {
            panic!("no row {label:?} in:\n{stdout}");
        });
        // Every row has a measured nsplay value (second cell), whatever it is.
        let nsplay = row.split('|').nth(2).unwrap().trim();
        assert!(!nsplay.is_empty() && nsplay != "n/a" && nsplay != "—", "row {label:?} has no nsplay value: {row}");
    }
    // The smoke room joins everyone and loses no keystroke (however slow the machine is).
    for label in ["Classroom (6 learners", "Classroom: keystrokes lost"] {
        let row = rows.iter().find(|r| r.starts_with(&format!("| {label}"))).unwrap();
        let result = row.trim_end().trim_end_matches('|').rsplit('|').next().unwrap().trim();
        assert_eq!(result, "met", "{row}");
    }
    // Every session and group the benchmark made is gone.
    let capacity = rows.iter().find(|r| r.starts_with("| Capacity: idle sessions opened")).unwrap();
    assert!(capacity.split('|').nth(2).unwrap().trim() == "5", "{capacity}");
    for hierarchy in ["", "memory", "pids", "cpu", "freezer", "unified"] {
        let dir = std::path::Path::new("/sys/fs/cgroup").join(hierarchy).join(format!("nsplay-bench-smoke-{pid}"));
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
}
