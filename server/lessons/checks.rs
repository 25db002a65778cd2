//! Check kinds: each reads the kernel's view of a session *from the host* — namespace inodes of
//! the session's processes, their /proc status, uid_map, mountinfo, timens_offsets, the
//! session's cgroup counters, and (through `nsenter` running a host binary in one non-mount
//! namespace) hostnames, links and IPC objects. Nothing printed in the terminal counts.
//!
//! Every kind is one function, named in [`CHECKS`] with the arguments it needs; [`KINDS`] (what
//! [`validate`] reads) is built from that table and [`run`] looks the function up in it.
//!
//! The host does this work for the session, so each check is bounded, and the programs it runs
//! are charged to the session (moved into its relay group, [`Probe::charge_to`]): it
//! looks at no more than [`MAX_NAMESPACES`] nested namespaces of a kind and
//! [`MAX_CGROUP_ENTRIES`] child groups, every program it runs is killed at [`Probe::deadline`],
//! and past the deadline it stops and says so (the web layer adds one check at a time per
//! session, a rate, and a cap on checks at once across sessions).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nsplay_sandbox::Usage;

/// What a check may look at.
pub struct Probe<'a> {
    pub init_pid: i32,
    /// Host pids of every process of the session.
    pub pids: Vec<i32>,
    pub hostname: &'a str,
    pub uid_base: u32,
    pub usage: Usage,
    /// The session's cgroup directory (v2) or its memory-controller directory (v1).
    pub cgroup_dir: std::path::PathBuf,
    /// Where a program the check runs is moved (`cgroup.procs` files of the session's relay
    /// group): its CPU is the session's to pay, under the session's quota (docs/security.md,
    /// item 8). Empty: it stays in the server's group (tests).
    pub charge_to: Vec<std::path::PathBuf>,
    /// Check kinds that already passed in this session (some steps build on earlier ones).
    pub passed: BTreeSet<String>,
    /// When the check must be done: programs it runs are killed then, and it looks no further.
    pub deadline: Instant,
    /// What the learner typed for a quiz step.
    pub answer: Option<String>,
}

/// Most nested namespaces of one kind a check looks into (each may cost an `nsenter`).
pub const MAX_NAMESPACES: usize = 16;
/// Most child cgroups a check reads.
pub const MAX_CGROUP_ENTRIES: usize = 256;
/// Most output read from one program a check runs.
const MAX_OUTPUT: u64 = 64 * 1024;
/// How long one check may take ([`Probe::deadline`] is this from its start).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub passed: bool,
    pub detail: String,
}

/// A step's `check_args`.
type Args = BTreeMap<String, String>;

/// One check kind: the name lessons give it, the `check_args` it needs (so a lesson that lacks
/// one fails to load, not to check) and the function that checks it.
struct Check {
    name: &'static str,
    needs: &'static [&'static str],
    run: fn(&Probe<'_>, &Args, &str) -> Outcome,
}

/// Every check kind.
const CHECKS: &[Check] = &[
    Check { name: "uts_nested_hostname", needs: &["hostname"], run: uts_nested_hostname },
    Check { name: "uts_session_hostname", needs: &[], run: uts_session_hostname },
    Check { name: "pid_nested_init", needs: &[], run: pid_nested_init },
    Check { name: "mnt_nested_tmpfs", needs: &["path"], run: mnt_nested_tmpfs },
    Check { name: "ipc_nested_queue", needs: &[], run: ipc_nested_queue },
    Check { name: "net_nested_veth", needs: &[], run: net_nested_veth },
    Check { name: "user_nested_root", needs: &[], run: user_nested_root },
    Check { name: "cgroup_nested_ns", needs: &[], run: cgroup_nested_ns },
    Check { name: "cgroup_child_memory", needs: &[], run: cgroup_child_memory },
    Check { name: "time_nested_boottime", needs: &[], run: time_nested_boottime },
    Check { name: "cgroups_oom", needs: &[], run: cgroups_oom },
    Check { name: "cgroups_pids_limit", needs: &[], run: cgroups_pids_limit },
    Check { name: "cgroups_cpu_throttled", needs: &[], run: cgroups_cpu_throttled },
];

/// Every check kind and the arguments it needs: [`CHECKS`] without the functions, built at
/// compile time.
pub const KINDS: &[(&str, &[&str])] = &{
    let mut kinds: [(&str, &[&str]); CHECKS.len()] = [("", &[]); CHECKS.len()];
    let mut i = 0;
    while i < CHECKS.len() {
        kinds[i] = (CHECKS[i].name, CHECKS[i].needs);
        i += 1;
    }
    kinds
};

pub fn validate(kind: &str, args: &BTreeMap<String, String>) -> Result<(), String> {
    let Some((_, needed)) = KINDS.iter().find(|(k, _)| *k == kind) else {
        return Err(format!("unknown check `{kind}`"));
    };
    for n in *needed {
        if !args.contains_key(*n) {
            return Err(format!("check `{kind}` needs check_args.{n}"));
        }
    }
    Ok(())
}

pub fn run(kind: &str, args: &BTreeMap<String, String>, p: &Probe<'_>, lang: &str) -> Outcome {
    let outcome = match CHECKS.iter().find(|c| c.name == kind) {
        Some(check) => (check.run)(p, args, lang),
        None => fail(lang, format!("unknown check {kind}"), format!("不明なチェック {kind}")),
    };
    past_deadline(outcome, p, lang)
}

/// A step's check: a built-in kind, or the author's checks (all must pass).
pub fn run_check(check: &super::Check, args: &BTreeMap<String, String>, p: &Probe<'_>, lang: &str) -> Outcome {
    match check {
        super::Check::Kind(k) => run(k, args, p, lang),
        super::Check::Author(specs) => past_deadline(super::author::run_all(specs, p, lang), p, lang),
    }
}

fn past_deadline(outcome: Outcome, p: &Probe<'_>, lang: &str) -> Outcome {
    if !outcome.passed && Instant::now() >= p.deadline {
        // What it did not get to look at may have passed: say that it was cut short.
        return timed_out(lang);
    }
    outcome
}

/// The outcome of a check stopped at its deadline.
pub fn timed_out(lang: &str) -> Outcome {
    let text = crate::text::get(lang, "check_timed_out");
    Outcome { passed: false, detail: crate::text::fill(text, &[("seconds", CHECK_TIMEOUT.as_secs().to_string())]) }
}

pub(super) fn tr(lang: &str, en: String, ja: String) -> String {
    if lang == "ja" { ja } else { en }
}

fn pass(lang: &str, en: String, ja: String) -> Outcome {
    Outcome { passed: true, detail: tr(lang, en, ja) }
}

fn fail(lang: &str, en: String, ja: String) -> Outcome {
    Outcome { passed: false, detail: tr(lang, en, ja) }
}

/// A check argument; one that is missing reads as empty (`validate` refuses such lessons).
fn arg<'a>(args: &'a Args, name: &str) -> &'a str {
    args.get(name).map(String::as_str).unwrap_or("")
}

/// Nested namespaces of `kind` (at most [`MAX_NAMESPACES`]; none once the deadline passed).
pub(super) fn nested_in(p: &Probe<'_>, kind: &str) -> Vec<(u64, i32)> {
    if Instant::now() >= p.deadline {
        return Vec::new();
    }
    let mut all = nsplay_sandbox::nested_in(p.init_pid, &p.pids, kind);
    all.truncate(MAX_NAMESPACES);
    all
}

/// Runs a host program inside one namespace of session process `pid` (never the mount
/// namespace: the program must come from the host's filesystem, not the learner's): `kind` is
/// `uts`, `net` or `ipc`. The namespace is opened here and proven the session's
/// ([`nsplay_sandbox::open_session_namespace`]: a pid read from the cgroup earlier may name a
/// host process by now), then handed to `nsenter` as its standard input, which it enters
/// (`--net=/proc/self/fd/0`): no pid is looked up again.
/// The program is killed at the probe's deadline and read up to [`MAX_OUTPUT`].
pub(super) fn in_ns(p: &Probe<'_>, pid: i32, kind: &str, argv: &[&str]) -> Option<String> {
    if Instant::now() >= p.deadline || !["uts", "net", "ipc"].contains(&kind) {
        return None;
    }
    let ns = nsplay_sandbox::open_session_namespace(pid, kind, p.uid_base)?;
    let mut child = Command::new("nsenter")
        .arg(format!("--{kind}=/proc/self/fd/0"))
        .args(argv)
        .stdin(Stdio::from(ns))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Into the session's relay group before it does its work (it has only just been forked:
    // `nsenter` then enters the namespace and execs the program, which inherits the group).
    // A check that cannot be charged to its session does not run.
    for f in &p.charge_to {
        if let Err(e) = std::fs::write(f, child.id().to_string()) {
            tracing::warn!(group = %f.display(), error = %e, "cannot charge a check's program to its session; not running it");
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
    }
    let stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.take(MAX_OUTPUT).read_to_end(&mut out);
        out
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < p.deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    status.filter(|s| s.success()).map(|_| String::from_utf8_lossy(&out).into_owned())
}

fn status_field(pid: i32, field: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
}

/// A cgroup event counter of the session: passes once the kernel has counted one. `en` names
/// one event and `en_many` several ("kill at the memory limit", "kills at …"); `ja` is the
/// subject of 「…が、カーネルに N 回記録されています。」.
fn counter(lang: &str, n: u64, en: &str, en_many: &str, ja: &str, en_no: &str, ja_no: &str) -> Outcome {
    match n {
        0 => fail(lang, en_no.to_string(), ja_no.to_string()),
        1 => pass(lang, format!("The kernel recorded one {en}."), format!("{ja}が、カーネルに 1 回記録されています。")),
        n => pass(
            lang,
            format!("The kernel recorded {n} {en_many}."),
            format!("{ja}が、カーネルに {n} 回記録されています。"),
        ),
    }
}

/// The session's own hostname as its UTS namespace has it now (read from the host).
fn session_hostname(p: &Probe<'_>) -> String {
    in_ns(p, p.init_pid, "uts", &["hostname"]).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The failure when the learner renamed the session itself (`hostname` ran outside a nested
/// namespace): what happened and how to put it back.
fn renamed_session(p: &Probe<'_>, now: &str, lang: &str) -> Outcome {
    let was = p.hostname;
    fail(
        lang,
        format!(
            "The session's own hostname is now {now}, not {was}: `hostname` ran in the session's UTS namespace, not a nested one. Put it back with `hostname {was}`, then start the nested shell (`unshare -u /bin/sh`) and rename it there."
        ),
        format!(
            "セッション自身のホスト名が {was} ではなく {now} になっています。`hostname` が入れ子の名前空間ではなく、セッションの UTS 名前空間で実行されました。`hostname {was}` で元に戻してから、入れ子のシェル（`unshare -u /bin/sh`）を起動し、その中で変更してください。"
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// The kinds, in the order of `CHECKS`.

/// Passes when a nested UTS namespace has the hostname `check_args.hostname`.
fn uts_nested_hostname(p: &Probe<'_>, args: &Args, lang: &str) -> Outcome {
    let want = arg(args, "hostname");
    let nested = nested_in(p, "uts");
    let own = session_hostname(p);
    if !own.is_empty() && own != p.hostname {
        return renamed_session(p, &own, lang);
    }
    if nested.is_empty() {
        return fail(
            lang,
            "No process of your session runs in a UTS namespace of its own yet. Start one with `unshare -u /bin/sh`."
                .into(),
            "セッションのプロセスはまだ独自の UTS 名前空間で動いていません。`unshare -u /bin/sh` で作ってください。"
                .into(),
        );
    }
    let names: Vec<String> = nested
        .iter()
        .filter_map(|(_, pid)| in_ns(p, *pid, "uts", &["hostname"]))
        .map(|s| s.trim().to_string())
        .collect();
    if names.iter().any(|n| n == want) {
        let en = match nested.len() {
            1 => format!("Seen from the host: the nested UTS namespace has the hostname {want}"),
            n => format!("Seen from the host: one of the {n} nested UTS namespaces has the hostname {want}"),
        };
        pass(
            lang,
            format!("{en}, while the session keeps {}.", p.hostname),
            format!(
                "ホストから確認しました: 入れ子の UTS 名前空間（全 {} 個）のうち 1 つのホスト名が {want} になっており、セッションのホスト名は {} のままです。",
                nested.len(),
                p.hostname
            ),
        )
    } else {
        fail(
            lang,
            format!(
                "A nested UTS namespace exists, but its hostname is {}, not {want}. Run `hostname {want}` in the nested shell.",
                names.join(", ")
            ),
            format!(
                "入れ子の UTS 名前空間はありますが、ホスト名は {want} ではなく {} です。入れ子のシェルで `hostname {want}` を実行してください。",
                names.join(", ")
            ),
        )
    }
}

/// Passes when, after `uts_nested_hostname`, every nested UTS namespace is gone and the session's
/// own hostname is unchanged.
fn uts_session_hostname(p: &Probe<'_>, _: &Args, lang: &str) -> Outcome {
    if !p.passed.contains("uts_nested_hostname") {
        return fail(
            lang,
            "First change the hostname inside a nested UTS namespace (the earlier steps), then leave it.".into(),
            "まず前のステップで、入れ子の UTS 名前空間の中でホスト名を変えてから抜けてください。".into(),
        );
    }
    let nested = nested_in(p, "uts");
    if !nested.is_empty() {
        let en = match nested.len() {
            1 => "A process still runs in a nested UTS namespace".to_string(),
            n => format!("{n} processes still run in nested UTS namespaces"),
        };
        return fail(
            lang,
            format!("{en}: leave the nested shell with `exit`."),
            format!(
                "入れ子の UTS 名前空間でまだ {} 個のプロセスが動いています。`exit` で入れ子のシェルを抜けてください。",
                nested.len()
            ),
        );
    }
    let now = session_hostname(p);
    if now == p.hostname {
        pass(
            lang,
            format!(
                "The session's own UTS namespace still has its hostname {}: the change stayed inside the nested namespace.",
                p.hostname
            ),
            format!(
                "セッション自身の UTS 名前空間のホスト名は {} のままです。変更は入れ子の名前空間の中だけにとどまりました。",
                p.hostname
            ),
        )
    } else {
        renamed_session(p, &now, lang)
    }
}

/// Passes when a process of the session is PID 1 of a PID namespace below the session's.
fn pid_nested_init(p: &Probe<'_>, _: &Args, lang: &str) -> Outcome {
    // NSpid lists a process's pid in each namespace from the host's down: three levels
    // ending in 1 is PID 1 of a namespace below the session's. (Scan every process: the
    // one that called unshare stays in the session's namespace; its child is the PID 1.)
    for &pid in &p.pids {
        let nspid = status_field(pid, "NSpid:").unwrap_or_default();
        let levels: Vec<&str> = nspid.split_whitespace().collect();
        if levels.len() >= 3 && levels.last() == Some(&"1") {
            return pass(
                lang,
                format!("Host pid {pid} is PID 1 in a nested PID namespace (NSpid: {nspid})."),
                format!("ホストの pid {pid} は、入れ子の PID 名前空間で PID 1 です（NSpid: {nspid}）。"),
            );
        }
    }
    fail(lang, "No process of your session is PID 1 in a nested PID namespace. Try `unshare -p -f --mount-proc sleep 1000 &`.".into(),
         "入れ子の PID 名前空間で PID 1 になっているプロセスがありません。`unshare -p -f --mount-proc sleep 1000 &` を試してください。".into())
}

/// Passes when a nested mount namespace, and not the session's, has a tmpfs on `check_args.path`.
fn mnt_nested_tmpfs(p: &Probe<'_>, args: &Args, lang: &str) -> Outcome {
    let path = arg(args, "path");
    let has_tmpfs = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default().lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let sep = f.iter().position(|x| *x == "-");
            f.get(4) == Some(&path) && sep.and_then(|s| f.get(s + 1)) == Some(&"tmpfs")
        })
    };
    if has_tmpfs(p.init_pid) {
        return fail(
            lang,
            format!(
                "{path} is a tmpfs in the session's own mount namespace; the lesson wants it only in a nested one. Undo it with `umount {path}`, then mount it again inside `unshare -m`."
            ),
            format!(
                "{path} がセッション自身のマウント名前空間に tmpfs としてマウントされています。`umount {path}` で元に戻してから、`unshare -m` の中でもう一度マウントしてください。"
            ),
        );
    }
    match nested_in(p, "mnt").into_iter().find(|(_, pid)| has_tmpfs(*pid)) {
        Some((ino, pid)) => pass(
            lang,
            format!("Mount namespace {ino} (host pid {pid}) has a tmpfs on {path}; the session's namespace does not."),
            format!(
                "マウント名前空間 {ino}（ホスト pid {pid}）には {path} に tmpfs がありますが、セッションの名前空間にはありません。"
            ),
        ),
        None => fail(
            lang,
            format!("No nested mount namespace has a tmpfs on {path} yet."),
            format!("{path} に tmpfs をマウントした入れ子のマウント名前空間はまだありません。"),
        ),
    }
}

/// Passes when a nested IPC namespace, and not the session's, holds a System V message queue.
fn ipc_nested_queue(p: &Probe<'_>, _: &Args, lang: &str) -> Outcome {
    let queues = |pid: i32| {
        in_ns(p, pid, "ipc", &["cat", "/proc/sysvipc/msg"])
            .map(|s| s.lines().skip(1).filter(|l| !l.trim().is_empty()).count())
    };
    if queues(p.init_pid).unwrap_or(0) > 0 {
        return fail(
            lang,
            "The session's own IPC namespace has a message queue; the lesson wants it only in a nested one. Remove it with `ipcrm --all=msg` (or `ipcrm -q ID`, the ID from `ipcs -q`), then create it inside `unshare -i`.".into(),
            "セッション自身の IPC 名前空間にメッセージキューがあります。`ipcrm --all=msg`（または `ipcs -q` で調べた ID を使って `ipcrm -q ID`）で削除してから、`unshare -i` の中で作ってください。".into(),
        );
    }
    match nested_in(p, "ipc").into_iter().find(|(_, pid)| queues(*pid).unwrap_or(0) > 0) {
        Some((ino, _)) => pass(
            lang,
            format!("IPC namespace {ino} holds a System V message queue that the session's namespace does not see."),
            format!(
                "IPC 名前空間 {ino} には、セッションの名前空間からは見えない System V メッセージキューがあります。"
            ),
        ),
        None => fail(
            lang,
            "No nested IPC namespace holds a message queue yet.".into(),
            "メッセージキューを持つ入れ子の IPC 名前空間はまだありません。".into(),
        ),
    }
}

/// Passes when a nested network namespace has a veth interface.
fn net_nested_veth(p: &Probe<'_>, _: &Args, lang: &str) -> Outcome {
    for (ino, pid) in nested_in(p, "net") {
        if let Some(links) = in_ns(p, pid, "net", &["ip", "-o", "link", "show", "type", "veth"])
            && !links.trim().is_empty()
        {
            let name = links.split(':').nth(1).unwrap_or("").trim().split('@').next().unwrap_or("").to_string();
            return pass(
                lang,
                format!("Network namespace {ino} has the veth interface {name}."),
                format!("ネットワーク名前空間 {ino} に veth インターフェース {name} があります。"),
            );
        }
    }
    fail(
        lang,
        "No nested network namespace has a veth interface yet.".into(),
        "veth インターフェースを持つ入れ子のネットワーク名前空間はまだありません。".into(),
    )
}

/// Passes when a nested user namespace maps its uid 0 to the session's root.
fn user_nested_root(p: &Probe<'_>, _: &Args, lang: &str) -> Outcome {
    for (ino, pid) in nested_in(p, "user") {
        let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap_or_default();
        // Read from the host, the outside ids are host uids: the session's root is uid_base.
        if map.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"0") && f.get(1) == Some(&p.uid_base.to_string().as_str())
        }) {
            return pass(
                lang,
                format!("User namespace {ino} maps its uid 0 to the session's root (host uid {}).", p.uid_base),
                format!(
                    "ユーザー名前空間 {ino} は、その uid 0 をセッションの root（ホストの uid {}）に対応づけています。",
                    p.uid_base
                ),
            );
        }
    }
    fail(lang, "No nested user namespace maps uid 0 to the session's root yet. Try `unshare -U -r`.".into(),
         "uid 0 をセッションの root に対応づけた入れ子のユーザー名前空間はまだありません。`unshare -U -r` を試してください。".into())
}

/// Passes when a process of the session is in a cgroup namespace of its own.
fn cgroup_nested_ns(p: &Probe<'_>, _: &Args, lang: &str) -> Outcome {
    match nested_in(p, "cgroup").first() {
        Some((ino, pid)) => pass(
            lang,
            format!("Host pid {pid} runs in cgroup namespace {ino}, not the session's."),
            format!("ホストの pid {pid} は、セッションとは別の cgroup 名前空間 {ino} で動いています。"),
        ),
        None => fail(
            lang,
            "No process of your session is in a cgroup namespace of its own yet (`unshare -C`).".into(),
            "独自の cgroup 名前空間（`unshare -C`）で動いているプロセスはまだありません。".into(),
        ),
    }
}

/// Passes when a child cgroup of the session's has a memory limit and holds a process.
fn cgroup_child_memory(p: &Probe<'_>, _: &Args, lang: &str) -> Outcome {
    let mut found = None;
    for e in std::fs::read_dir(&p.cgroup_dir).into_iter().flatten().flatten().take(MAX_CGROUP_ENTRIES) {
        let d = e.path();
        if !d.is_dir() {
            continue;
        }
        let max = std::fs::read_to_string(d.join("memory.max"))
            .or_else(|_| std::fs::read_to_string(d.join("memory.limit_in_bytes")))
            .unwrap_or_default();
        let limited = !max.trim().is_empty()
            && max.trim() != "max"
            && max.trim().parse::<u64>().map(|v| v < (1 << 50)).unwrap_or(false);
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        if limited && !procs.trim().is_empty() {
            found = Some((e.file_name().to_string_lossy().into_owned(), max.trim().to_string()));
            break;
        }
    }
    if found.is_none()
        && !p.cgroup_dir.join("memory.max").exists()
        && p.cgroup_dir.join("memory.limit_in_bytes").exists()
    {
        return fail(lang, "This step needs a cgroup v2 host: this server runs on cgroup v1, where the session cannot create child memory groups.".into(),
                    "このステップには cgroup v2 のホストが必要です。このサーバーは cgroup v1 で動いており、セッション内でメモリ用の子 cgroup を作れません。".into());
    }
    match found {
        Some((name, max)) => pass(
            lang,
            format!("Child cgroup {name} has a memory limit of {max} bytes and holds a process."),
            format!("子 cgroup {name} にはメモリ上限 {max} バイトが設定され、プロセスが入っています。"),
        ),
        None => fail(
            lang,
            "No child cgroup below the session's has a memory limit and a process yet.".into(),
            "メモリ上限が設定され、プロセスが入った子 cgroup はまだありません。".into(),
        ),
    }
}

/// Passes when a nested time namespace has a boottime or monotonic offset.
fn time_nested_boottime(p: &Probe<'_>, _: &Args, lang: &str) -> Outcome {
    for (ino, pid) in nested_in(p, "time") {
        let offsets = std::fs::read_to_string(format!("/proc/{pid}/timens_offsets")).unwrap_or_default();
        let shifted = offsets.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 3 && (f[0] == "boottime" || f[0] == "monotonic") && (f[1] != "0" || f[2] != "0")
        });
        if shifted {
            let summary = offsets.lines().map(str::trim).collect::<Vec<_>>().join("; ");
            return pass(
                lang,
                format!("Time namespace {ino} has clock offsets ({summary})."),
                format!("time 名前空間 {ino} には時計のオフセットがあります（{summary}）。"),
            );
        }
    }
    fail(lang, "No nested time namespace with a boottime or monotonic offset yet (`unshare -T --boottime 86400 --fork sleep 1000 &`).".into(),
         "boottime か monotonic のオフセットを持つ入れ子の time 名前空間はまだありません（`unshare -T --boottime 86400 --fork sleep 1000 &`）。".into())
}

/// Passes once the session's memory limit has killed a process.
fn cgroups_oom(p: &Probe<'_>, _: &Args, lang: &str) -> Outcome {
    counter(
        lang,
        p.usage.oom_kills,
        "process killed at the memory limit",
        "processes killed at the memory limit",
        "メモリ上限によるプロセスの強制終了",
        "No OOM kill counted yet: run the memory hog (`tail /dev/zero`).",
        "OOM kill はまだ記録されていません。メモリを食いつぶすコマンド（`tail /dev/zero`）を実行してください。",
    )
}

/// Passes once the session's pids.max has refused a fork.
fn cgroups_pids_limit(p: &Probe<'_>, _: &Args, lang: &str) -> Outcome {
    counter(
        lang,
        p.usage.pids_limit_hits,
        "fork refused at pids.max",
        "forks refused at pids.max",
        "pids.max による fork の拒否",
        "No fork has been refused by pids.max yet.",
        "pids.max による fork の拒否はまだ記録されていません。",
    )
}

/// Passes once the session's CPU quota has held it back for a second in all.
fn cgroups_cpu_throttled(p: &Probe<'_>, _: &Args, lang: &str) -> Outcome {
    // Any busy moment throttles a period or two; the lesson's spinner throttles for
    // seconds, so ask for at least one second in total.
    let secs = p.usage.throttled_usec as f64 / 1e6;
    if p.usage.throttled_usec >= 1_000_000 {
        pass(
            lang,
            format!("The CPU quota held the session back for {secs:.1} s in {} periods.", p.usage.throttled_periods),
            format!(
                "CPU クォータにより、セッションは {} 回の周期で合計 {secs:.1} 秒待たされました。",
                p.usage.throttled_periods
            ),
        )
    } else {
        fail(
            lang,
            format!("Throttled for only {secs:.1} s so far: run the busy loop to see the quota bite."),
            format!(
                "これまでに抑制された時間は {secs:.1} 秒だけです。ビジーループを実行して、クォータが効く様子を確かめてください。"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Probe<'static> {
        let me = std::process::id() as i32;
        Probe {
            init_pid: me,
            pids: vec![me],
            hostname: "x",
            uid_base: 0,
            usage: Usage::default(),
            cgroup_dir: "/nonexistent".into(),
            charge_to: Vec::new(),
            passed: BTreeSet::new(),
            deadline: Instant::now() + CHECK_TIMEOUT,
            answer: None,
        }
    }

    #[test]
    fn a_check_past_its_deadline_says_it_was_stopped() {
        let p = Probe { deadline: Instant::now(), ..probe() };
        let args: BTreeMap<String, String> = [("hostname".to_string(), "x".to_string())].into();
        let en = run("uts_nested_hostname", &args, &p, "en");
        assert!(!en.passed);
        assert!(en.detail.contains("longer than 5 s"), "{}", en.detail);
        assert!(run("uts_nested_hostname", &args, &p, "ja").detail.contains("5 秒"));
    }

    #[test]
    fn nothing_nested_fails_every_namespace_check_in_both_languages() {
        let p = probe();
        for (kind, needed) in KINDS {
            let args: BTreeMap<String, String> =
                needed.iter().map(|n| (n.to_string(), "/mnt/demo".to_string())).collect();
            let en = run(kind, &args, &p, "en");
            let ja = run(kind, &args, &p, "ja");
            assert!(!en.passed && !ja.passed, "{kind} passed with nothing done");
            assert_ne!(en.detail, ja.detail, "{kind} detail is not translated");
        }
    }

    #[test]
    fn counters_pass_once_the_kernel_counts() {
        let mut p = probe();
        p.usage.oom_kills = 2;
        assert!(run("cgroups_oom", &BTreeMap::new(), &p, "en").passed);
        assert!(validate("uts_nested_hostname", &BTreeMap::new()).is_err());
        assert!(validate("no_such_check", &BTreeMap::new()).is_err());
    }

    #[test]
    fn the_table_names_each_kind_once_and_kinds_is_the_table() {
        let names: BTreeSet<&str> = CHECKS.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), CHECKS.len(), "a kind is named twice in CHECKS");
        assert!(CHECKS.iter().all(|c| !c.name.is_empty()));
        let from_table: Vec<(&str, &[&str])> = CHECKS.iter().map(|c| (c.name, c.needs)).collect();
        assert_eq!(KINDS, from_table.as_slice());
        // A kind that builds on another (uts_session_hostname reads `passed`) names one that exists.
        assert!(names.contains("uts_nested_hostname"));
    }

    #[test]
    fn every_kind_validates_with_its_args_and_not_without_one() {
        for c in CHECKS {
            let args: BTreeMap<String, String> = c.needs.iter().map(|n| (n.to_string(), "x".to_string())).collect();
            assert_eq!(validate(c.name, &args), Ok(()), "{}", c.name);
            for n in c.needs {
                let mut fewer = args.clone();
                fewer.remove(*n);
                assert_eq!(validate(c.name, &fewer), Err(format!("check `{}` needs check_args.{n}", c.name)));
            }
        }
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        assert_eq!(validate("no_such_check", &BTreeMap::new()), Err("unknown check `no_such_check`".to_string()));
        let p = probe();
        let en = run("no_such_check", &BTreeMap::new(), &p, "en");
        assert_eq!(en, Outcome { passed: false, detail: "unknown check no_such_check".into() });
        assert_eq!(run("no_such_check", &BTreeMap::new(), &p, "ja").detail, "不明なチェック no_such_check");
    }

    #[test]
    fn counters_and_the_cpu_quota_pass_on_the_kernels_numbers() {
        let mut p = probe();
        p.usage.pids_limit_hits = 1;
        p.usage.throttled_usec = 1_500_000;
        p.usage.throttled_periods = 12;
        let pids = run("cgroups_pids_limit", &BTreeMap::new(), &p, "en");
        assert_eq!(pids.detail, "The kernel recorded one fork refused at pids.max.");
        let cpu = run("cgroups_cpu_throttled", &BTreeMap::new(), &p, "en");
        assert!(cpu.passed);
        assert_eq!(cpu.detail, "The CPU quota held the session back for 1.5 s in 12 periods.");
        p.usage.throttled_usec = 999_999;
        assert!(!run("cgroups_cpu_throttled", &BTreeMap::new(), &p, "ja").passed);
    }

    #[test]
    fn counter_texts_read_well_in_both_languages() {
        let mut p = probe();
        let none = BTreeMap::new();
        p.usage.oom_kills = 1;
        p.usage.pids_limit_hits = 3;
        assert_eq!(
            run("cgroups_oom", &none, &p, "en").detail,
            "The kernel recorded one process killed at the memory limit."
        );
        assert_eq!(
            run("cgroups_oom", &none, &p, "ja").detail,
            "メモリ上限によるプロセスの強制終了が、カーネルに 1 回記録されています。"
        );
        assert_eq!(
            run("cgroups_pids_limit", &none, &p, "en").detail,
            "The kernel recorded 3 forks refused at pids.max."
        );
        assert_eq!(
            run("cgroups_pids_limit", &none, &p, "ja").detail,
            "pids.max による fork の拒否が、カーネルに 3 回記録されています。"
        );
        for kind in ["cgroups_oom", "cgroups_pids_limit"] {
            for lang in ["en", "ja"] {
                let d = run(kind, &none, &p, lang).detail;
                assert!(!d.contains("(s)") && !d.contains("one of 1"), "{d}");
            }
        }
    }

    #[test]
    fn a_renamed_session_hostname_is_named_with_the_way_back() {
        // The test process stands in for the session's init: its UTS namespace is the host's,
        // whose hostname is not "nsplay", as if the learner had renamed the session.
        let mut p = probe();
        p.hostname = "nsplay";
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
        assert_ne!(host, "nsplay", "this test needs a host not called nsplay");
        let args: BTreeMap<String, String> = [("hostname".to_string(), "my-new-hostname".to_string())].into();
        p.passed.insert("uts_nested_hostname".into());
        for kind in ["uts_nested_hostname", "uts_session_hostname"] {
            let en = run(kind, &args, &p, "en");
            assert!(!en.passed);
            assert!(
                en.detail.starts_with(&format!("The session's own hostname is now {host}, not nsplay")),
                "{}",
                en.detail
            );
            assert!(en.detail.contains("Put it back with `hostname nsplay`"), "{}", en.detail);
            let ja = run(kind, &args, &p, "ja");
            assert!(
                ja.detail.contains(&format!("セッション自身のホスト名が nsplay ではなく {host} になっています")),
                "{}",
                ja.detail
            );
            assert!(ja.detail.contains("`hostname nsplay` で元に戻してから"), "{}", ja.detail);
        }
    }

    #[test]
    fn a_tmpfs_in_the_sessions_own_namespace_says_how_to_undo_it() {
        // The test process's mount namespace stands in for the session's: any tmpfs it has
        // is "mounted in the session's own namespace".
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let path = info
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let sep = f.iter().position(|x| *x == "-")?;
                (f.get(sep + 1) == Some(&"tmpfs")).then(|| f[4].to_string())
            })
            .expect("the host has a tmpfs mounted");
        let args: BTreeMap<String, String> = [("path".to_string(), path.clone())].into();
        let en = run("mnt_nested_tmpfs", &args, &probe(), "en");
        assert!(!en.passed);
        assert!(en.detail.contains(&format!("Undo it with `umount {path}`")), "{}", en.detail);
        let ja = run("mnt_nested_tmpfs", &args, &probe(), "ja");
        assert!(ja.detail.contains(&format!("`umount {path}` で元に戻してから")), "{}", ja.detail);
    }
}
