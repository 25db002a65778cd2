//! The neighbour (ARP and NDP) entries of the network namespaces a session holds, counted from
//! the host. The kernel charges these entries to no memory group and a permanent one is exempt
//! from the table's garbage collection and `gc_thresh3`, so nothing else bounds them (issue
//! #15, item 7; docs/security.md). This module finds a session's network namespaces and counts
//! their entries over `NETLINK_ROUTE`, reading at most a cap's worth; what to do past the cap is
//! the session layer's.
//!
//! Where the namespaces come from: every process of the session (its own namespace and nested
//! ones), and the `nsfs` mounts of a network namespace (`ip netns add`) that the mount
//! namespaces of those processes list in their `mountinfo`. A mount is opened beneath the
//! listing process's root (`openat2` with `RESOLVE_IN_ROOT`, no symlinks, no magic links,
//! `O_PATH`) and kept only when it is the `nsfs` inode the listing names, so no path the
//! session controls leads the host anywhere else.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
use nix::sched::CloneFlags;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, send, socket};
use nix::sys::stat::Mode;

/// Most network namespaces looked into per session and sweep: far more than a lesson makes,
/// and what bounds the sweep's work (each costs a thread and a dump). Past it the session is
/// over its limit (see [`Count::namespaces_over`]).
pub const MAX_NET_NAMESPACES: usize = 256;
/// Most mount namespaces per session whose `mountinfo` is read for `nsfs` mounts.
pub const MAX_MOUNT_NAMESPACES: usize = 16;
/// Most bytes of one `mountinfo` read (about 6 000 mounts).
pub const MAX_MOUNTINFO: u64 = 1 << 20;

/// `NSFS_MAGIC` from `linux/magic.h`: the file system of `/proc/<pid>/ns/*` and their binds.
const NSFS_MAGIC: i64 = 0x6e73_6673;
// From linux/rtnetlink.h and linux/netlink.h and linux/neighbour.h.
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NTF_PROXY: u8 = 0x08;
const NLMSG_HDRLEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum NeighbourError {
    #[error("could not start the thread that enters the namespace: {0}")]
    Thread(std::io::Error),
    #[error("could not enter the network namespace: {0}")]
    Enter(nix::Error),
    #[error("could not open a netlink socket in the namespace: {0}")]
    Socket(nix::Error),
    #[error("the neighbour dump failed: {0}")]
    Dump(nix::Error),
    #[error("the kernel refused the neighbour dump: {0}")]
    Refused(nix::Error),
    #[error("the neighbour dump's reply could not be read: {0}")]
    Reply(&'static str),
}

/// What one sweep found of a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Neighbour entries, proxy entries included, in all its namespaces together; counting
    /// stops once this passes the cap.
    pub entries: usize,
    /// Network namespaces looked into.
    pub namespaces: usize,
    /// More than [`MAX_NET_NAMESPACES`] network namespaces were found.
    pub namespaces_over: bool,
    /// Namespaces that could not be counted (gone meanwhile, or an error: logged by the caller).
    pub failed: usize,
}

/// Counts the neighbour entries of every network namespace the session's processes `pids`
/// (init among them) hold or see mounted, stopping once the total passes `cap`.
pub fn count_session(pids: &[i32], cap: usize) -> Count {
    let found = net_namespaces(pids);
    let mut c = Count { namespaces_over: found.over, ..Count::default() };
    for ns in &found.fds {
        if c.entries > cap {
            break;
        }
        c.namespaces += 1;
        match count(ns.as_fd(), cap - c.entries) {
            Ok(n) => c.entries += n,
            Err(_) => c.failed += 1,
        }
    }
    c
}

/// The network namespaces found for a session: descriptors, at most [`MAX_NET_NAMESPACES`].
#[derive(Default)]
struct Found {
    fds: Vec<OwnedFd>,
    over: bool,
    /// Inodes of the namespaces found.
    seen: BTreeSet<u64>,
}

impl Found {
    fn keep(&mut self, ino: u64, fd: OwnedFd) {
        if self.fds.len() == MAX_NET_NAMESPACES {
            self.over = true;
        } else {
            self.fds.push(fd);
        }
        self.seen.insert(ino);
    }
}

fn net_namespaces(pids: &[i32]) -> Found {
    let mut mnt_seen = BTreeSet::new();
    let mut listers = Vec::new();
    let mut found = Found::default();
    for &pid in pids {
        if let Some(mnt) = crate::namespaces::inode(pid, "mnt")
            && listers.len() < MAX_MOUNT_NAMESPACES
            && mnt_seen.insert(mnt)
        {
            listers.push(pid);
        }
        let Some(ino) = crate::namespaces::inode(pid, "net") else { continue };
        if found.seen.contains(&ino) {
            continue;
        }
        // The kernel's own magic link of a process (the host's /proc): the inode is checked
        // again on the descriptor, in case the pid was reused between the two.
        let Ok(fd) = open(format!("/proc/{pid}/ns/net").as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        else {
            continue;
        };
        if nix::sys::stat::fstat(&fd).is_ok_and(|st| st.st_ino == ino) {
            found.keep(ino, fd);
        }
    }
    for pid in listers {
        for (ino, path) in nsfs_net_mounts(pid) {
            if found.seen.contains(&ino) {
                continue;
            }
            if let Some(fd) = open_mounted(pid, &path, ino) {
                found.keep(ino, fd);
            }
        }
    }
    found
}

/// The `nsfs` mounts of network namespaces in `pid`'s `mountinfo`: (namespace inode, mount
/// point as `pid` sees it). At most [`MAX_MOUNTINFO`] bytes are read.
fn nsfs_net_mounts(pid: i32) -> Vec<(u64, String)> {
    let Ok(f) = std::fs::File::open(format!("/proc/{pid}/mountinfo")) else { return Vec::new() };
    let mut text = String::new();
    if f.take(MAX_MOUNTINFO).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    text.lines().filter_map(nsfs_net_mount).collect()
}

/// One `mountinfo` line, when it is an `nsfs` mount of a network namespace.
fn nsfs_net_mount(line: &str) -> Option<(u64, String)> {
    let (left, right) = line.split_once(" - ")?;
    if right.split(' ').next()? != "nsfs" {
        return None;
    }
    let mut fields = left.split(' ');
    let root = fields.nth(3)?;
    let mount_point = fields.next()?;
    let ino = root.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()?;
    Some((ino, unescape(mount_point)))
}

/// `mountinfo`'s octal escapes (`\040` for a space, `\011`, `\012`, `\134`) undone.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = b[i + 1..i + 4].iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens the network namespace mounted at `path` inside `pid`'s root, when it is the `nsfs`
/// inode `ino`: `O_PATH` beneath the root first (no symlink, no magic link, nothing the session
/// controls can lead elsewhere), checked, then reopened readable through our own descriptor.
fn open_mounted(pid: i32, path: &str, ino: u64) -> Option<OwnedFd> {
    let root = open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(&root, path, how).ok()?;
    let fs = nix::sys::statfs::fstatfs(&fd).ok()?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets.
    let is_nsfs = fs.filesystem_type().0 as i64 == NSFS_MAGIC;
    if !is_nsfs || nix::sys::stat::fstat(&fd).ok()?.st_ino != ino {
        return None;
    }
    // An nsfs inode has no open hooks: reopening it readable only gives a descriptor setns takes.
    let reopened =
        open(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .ok()?;
    (nix::sys::stat::fstat(&reopened).ok()?.st_ino == ino).then_some(reopened)
}

/// Neighbour entries (ARP, NDP and proxy entries) of the network namespace `netns`, counted up
/// to `cap + 1`: the dump is read no further than that.
///
/// A short-lived thread enters the namespace and opens a `NETLINK_ROUTE` socket there (a
/// socket answers for the namespace it was made in), then ends: the server's own threads never
/// change namespace. The dump is read on the caller's thread.
pub fn count(netns: BorrowedFd<'_>, cap: usize) -> Result<usize, NeighbourError> {
    let sock = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("nsplay-neigh".into())
            .spawn_scoped(s, || -> Result<OwnedFd, NeighbourError> {
                nix::sched::setns(netns, CloneFlags::CLONE_NEWNET).map_err(NeighbourError::Enter)?;
                socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
                    .map_err(NeighbourError::Socket)
            })
            .map_err(NeighbourError::Thread)?
            .join()
            .unwrap_or(Err(NeighbourError::Reply("the namespace thread panicked")))
    })?;
    // The kernel answers a dump at once; a reply that does not come within this is an error,
    // not a wait.
    let timeout = nix::sys::time::TimeVal::new(2, 0);
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
        .map_err(NeighbourError::Socket)?;
    let entries = dump(&sock, 1, 0, cap)?;
    if entries > cap {
        return Ok(entries);
    }
    Ok(entries + dump(&sock, 2, NTF_PROXY, cap - entries)?)
}

/// One `RTM_GETNEIGH` dump of every family (`AF_UNSPEC`) with `ndm_flags` `flags`; counts its
/// entries, reading no further than `cap + 1` of them (closing the socket ends the dump).
fn dump(sock: &OwnedFd, seq: u32, flags: u8, cap: usize) -> Result<usize, NeighbourError> {
    // nlmsghdr (16 bytes) + ndmsg (12 bytes: family, 3 pad, ifindex, state, flags, type).
    let mut req = Vec::with_capacity(28);
    req.extend_from_slice(&28u32.to_ne_bytes());
    req.extend_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    req.extend_from_slice(&0i32.to_ne_bytes());
    req.extend_from_slice(&0u16.to_ne_bytes());
    req.extend_from_slice(&[flags, 0]);
    send(sock.as_raw_fd(), &req, MsgFlags::empty()).map_err(NeighbourError::Dump)?;
    let mut buf = vec![0u8; 32 << 10];
    let mut n = 0;
    loop {
        let len = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(NeighbourError::Dump)?;
        if len == 0 {
            return Err(NeighbourError::Reply("the socket closed mid-dump"));
        }
        let mut at = 0;
        while at + NLMSG_HDRLEN <= len {
            let h = &buf[at..];
            let mlen = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let kind = u16::from_ne_bytes([h[4], h[5]]);
            let mseq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
            if mlen < NLMSG_HDRLEN || at + mlen > len {
                return Err(NeighbourError::Reply("a message's length is out of bounds"));
            }
            if mseq == seq {
                match kind {
                    NLMSG_DONE => return Ok(n),
                    NLMSG_ERROR => {
                        let code = h.get(16..20).map(|e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]])).unwrap_or(0);
                        return Err(NeighbourError::Refused(nix::Error::from_raw(-code)));
                    }
                    RTM_NEWNEIGH => {
                        n += 1;
                        if n > cap {
                            return Ok(n);
                        }
                    }
                    _ => {}
                }
            }
            at += (mlen + 3) & !3;
        }
    }
}

/// Neighbour entries of every network namespace on the host together (the `entries` column
/// of `/proc/net/stat/arp_cache` and `ndisc_cache`, which count each table across all
/// namespaces, permanent entries included): what the operator watches for entries the
/// per-session count cannot reach.
pub fn host_total() -> Option<u64> {
    ["arp_cache", "ndisc_cache"]
        .iter()
        .map(|t| {
            let text = std::fs::read_to_string(format!("/proc/net/stat/{t}")).ok()?;
            u64::from_str_radix(text.lines().nth(1)?.split_whitespace().next()?, 16).ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_of_network_namespaces_are_found_and_unescaped() {
        let line = "84 83 0:4 net:[4026532178] /run/netns/hide rw shared:2 - nsfs nsfs rw";
        assert_eq!(nsfs_net_mount(line), Some((4026532178, "/run/netns/hide".into())));
        let spaced = "84 83 0:4 net:[7] /run/a\\040b rw - nsfs nsfs rw";
        assert_eq!(nsfs_net_mount(spaced), Some((7, "/run/a b".into())));
        // Optional fields before the separator, and other namespace kinds or file systems.
        assert_eq!(nsfs_net_mount("1 2 0:4 net:[9] /x rw shared:1 master:2 - nsfs nsfs rw"), Some((9, "/x".into())));
        assert_eq!(nsfs_net_mount("1 2 0:4 mnt:[9] /x rw - nsfs nsfs rw"), None);
        assert_eq!(nsfs_net_mount("1 2 0:4 net:[9] /x rw - tmpfs nsfs rw"), None);
        assert_eq!(nsfs_net_mount("garbage"), None);
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }
}
