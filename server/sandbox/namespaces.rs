//! The eight namespace kinds a session gets, and reading their identities (inode numbers of
//! `/proc/<pid>/ns/<kind>`) from the host, which is how nsplay proves isolation from outside.

use std::collections::BTreeMap;
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

/// Inodes of all eight kinds for a process; missing entries (process gone) are left out.
pub fn inodes(pid: i32) -> BTreeMap<&'static str, u64> {
    KINDS.iter().filter_map(|(k, _)| Some((*k, inode(pid, k)?))).collect()
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
