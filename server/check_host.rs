//! `nsplay check-host`: resolves serve's settings (file, environment, flags), runs the sandbox's
//! host probes for them (`nsplay_sandbox::hostcheck`) and prints the findings as text or JSON.
//! Exit code 0: nsplay can run (warnings may remain); 1: at least one item fails; 2: the
//! settings are invalid.

use nsplay_sandbox::hostcheck::{self, Finding, HostCheckConfig, Status};

use crate::cli::CheckHostArgs;
use crate::config::Settings;

pub fn check_host(args: &CheckHostArgs) -> i32 {
    let settings = match Settings::resolve(&args.serve) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nsplay: {e}");
            return 2;
        }
    };
    let cfg = HostCheckConfig {
        id_base: settings.sandbox.id_base,
        id_slots: settings.sandbox.id_slots,
        cgroup_parent: settings.sandbox.cgroup_parent.clone(),
        max_sessions: settings.max_sessions,
        pids: settings.limits.pids,
        open_files: settings.open_files,
        nested_userns: settings.nested_userns,
    };
    let findings = hostcheck::check(&cfg);
    let can_run = !findings.iter().any(|f| f.status == Status::Fail);
    if args.json {
        let out = serde_json::json!({ "can_run": can_run, "findings": findings });
        println!("{out}");
    } else {
        print!("{}", render(&findings, can_run));
    }
    if can_run { 0 } else { 1 }
}

/// One line per finding (`ok`, `WARN`, `FAIL`), its fix indented below it, then the verdict.
fn render(findings: &[Finding], can_run: bool) -> String {
    let mut s = String::new();
    for f in findings {
        let tag = match f.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        s.push_str(&format!("{tag} {:<38} {}\n", f.item, f.detail));
        if !f.fix.is_empty() {
            s.push_str(&format!("     {:<38} fix: {}\n", "", f.fix));
        }
    }
    let (warn, fail) = findings.iter().fold((0, 0), |(w, x), f| match f.status {
        Status::Warn => (w + 1, x),
        Status::Fail => (w, x + 1),
        Status::Ok => (w, x),
    });
    s.push_str(&if can_run {
        format!("nsplay can run on this host ({warn} warnings)\n")
    } else {
        format!("nsplay cannot run on this host: {fail} items fail ({warn} warnings)\n")
    });
    s
}
