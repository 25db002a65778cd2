//! The eight namespace kinds a session gets, and reading their identities (inode numbers of
//! `/proc/<pid>/ns/<kind>`) from the host, which is how nsplay proves isolation from outside:
//! which processes live inside a session, and which namespaces the learner nested inside it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;

use nix::sched::CloneFlags;

/// (name in /proc/<pid>/ns, clone flag), in the order the API reports them.
pub const KINDS: [(&str, CloneFlags); 8] = [
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    // 0x80 is CLONE_NEWTIME; nix names it only on some targets.
    ("time", CloneFlags::from_bits_retain(0x80)),
    ("user", CloneFlags::CLONE_NEWUSER),
    ("uts", CloneFlags::CLONE_NEWUTS),
];

/// All eight flags: what a session is created with, and what a new terminal joins.
pub fn all_flags() -> CloneFlags {
    KINDS.iter().fold(CloneFlags::empty(), |acc, (_, f)| acc | *f)
}

/// Inode of one namespace of a process (what `ls -l /proc/<pid>/ns` shows in brackets).
/// For pid and time the namespace a process *lives* in is `pid`/`time`, not `*_for_children`.
pub fn inode(pid: i32, kind: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}")).ok().map(|m| m.ino())
}

/// Opens namespace `kind` of host process `pid` for a host program to enter, only if that
/// process belongs to the session whose host ids start at `uid_base` (its real uid is in the
/// session's range), and without a race against pid reuse: the pid is pinned by a pidfd first,
/// and both the uid and the namespace are read while that pidfd's process is still alive, so
/// they are that process's (a pid is not reused while its process lives). A pid read earlier
/// (from the session's cgroup) whose process has exited, and whose number a host process took
/// since, is refused: a check never looks into the host's namespaces.
pub fn open_session_namespace(pid: i32, kind: &str, uid_base: u32) -> Option<std::fs::File> {
    use std::os::fd::AsFd;
    if !KINDS.iter().any(|(k, _)| *k == kind) {
        return None;
    }
    let pidfd = crate::sys::pidfd_open(nix::unistd::Pid::from_raw(pid)).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid: u32 = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()?;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/{kind}")).ok()?;
    // Still alive (its pidfd not readable): what was read above was this process's.
    let mut fds = [nix::poll::PollFd::new(pidfd.as_fd(), nix::poll::PollFlags::POLLIN)];
    let alive = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).ok()? == 0;
    let ours = uid.checked_sub(uid_base).is_some_and(|off| off < crate::idmap::IDS_PER_SESSION);
    (alive && ours).then_some(ns)
}

/// Inodes of all eight kinds for a process; missing entries (process gone) are left out.
pub fn inodes(pid: i32) -> BTreeMap<&'static str, u64> {
    KINDS.iter().filter_map(|(k, _)| Some((*k, inode(pid, k)?))).collect()
}

/// Session processes whose namespace of `kind` differs from init's, one per namespace:
/// (inode, a host pid living in it).
pub fn nested_in(init_pid: i32, pids: &[i32], kind: &str) -> Vec<(u64, i32)> {
    let Some(base) = inode(init_pid, kind) else { return Vec::new() };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for &pid in pids {
        if let Some(ino) = inode(pid, kind)
            && ino != base
            && seen.insert(ino)
        {
            out.push((ino, pid));
        }
    }
    out
}

/// Nested namespaces the learner made: (kind, inode, a host pid living in it).
pub fn nested(init_pid: i32, pids: &[i32]) -> Vec<(&'static str, u64, i32)> {
    KINDS.iter().flat_map(|(k, _)| nested_in(init_pid, pids, k).into_iter().map(move |(i, p)| (*k, i, p))).collect()
}

/// Keeps the processes that live inside the session's PID namespace (their NSpid has a level
/// below the host's). nsplay's own helpers for a session (keeper, joiners) may share its cgroup
/// but live in the host's namespaces; they must never count as "nested".
pub fn inside_session(pids: Vec<i32>) -> Vec<i32> {
    pids.into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| s.lines().find_map(|l| l.strip_prefix("NSpid:").map(|v| v.split_whitespace().count())))
                .is_some_and(|levels| levels >= 2)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_namespaces_are_readable_and_all_eight_flags_are_set() {
        let me = std::process::id() as i32;
        let ns = inodes(me);
        assert_eq!(ns.len(), 8, "{ns:?}");
        assert_eq!(all_flags().bits().count_ones(), 8);
    }
}
