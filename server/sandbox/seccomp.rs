//! The seccomp filter of every program started in a session: which system calls it may make,
//! and what the refused ones return. Installed by [`super::pty::exec_on_pty`] as the last step
//! before `execve`, after `PR_SET_NO_NEW_PRIVS`, so it binds the shell and everything it starts,
//! nested namespaces included (a filter cannot be removed, only stacked on).
//!
//! The policy is an allowlist, based on Docker's default profile and stricter than it:
//!
//! - **Allowed**: what Docker allows without extra capabilities, minus `io_uring_*`,
//!   `name_to_handle_at`, `memfd_secret`, `adjtimex`, `clock_adjtime`, `modify_ldt` and
//!   `fanotify_mark`; plus
//!   what the namespace lessons need and only act inside the session's own user namespace:
//!   `mount`, `umount2`, `pivot_root`, `chroot`, `unshare`, `setns`, `clone` with namespace
//!   flags, `sethostname`, `setdomainname`. `ptrace` and `process_vm_*` are allowed as in Docker
//!   (kernels ≥ 4.8 re-check the filter after a tracer changes a call; the session's helpers are
//!   non-dumpable, so only the session's own programs can be traced).
//! - **Allowed with argument checks**: `ioctl` except `TIOCSTI`, `TIOCLINUX` and `TIOCSETD`
//!   (compared on the low 32 bits, as the kernel does: CVE-2019-10063); `personality` with the
//!   values Docker allows; `socket` for unix, TCP, UDP, ICMP, raw IP and route/diag netlink only
//!   (no nf_tables, XFRM, AF_PACKET, AF_ALG, SCTP, DCCP, …); `setsockopt` except the
//!   `x_tables`/IPVS/multicast-routing options; and, when nested user namespaces are switched
//!   off, `clone`/`unshare` without `CLONE_NEWUSER`.
//! - **ENOSYS**: `clone3` (its flags sit behind a pointer a filter cannot read) and the new mount
//!   API, so that glibc and mount(8) fall back to `clone` and `mount`, which the filter can see;
//!   calls newer than Docker's list that have an older equivalent; and every number above the
//!   newest call this table knows. ENOSYS is what an older kernel says, which every program
//!   handles.
//! - **EPERM**: everything else (keys, BPF, perf, userfaultfd, kexec, modules, handles, swap,
//!   accounting, quotas, clocks, reboot, NUMA policy, …), including every x32 call and any
//!   number with the x32 bit. Calls from another architecture (the i386 `int 0x80` entry)
//!   kill the process: they would be read with the wrong syscall table.
//!
//! The tables are x86_64's; on any other architecture nsplay does not build rather than run
//! sessions unfiltered.

#[cfg(not(target_arch = "x86_64"))]
compile_error!("nsplay's seccomp filter (server/sandbox/seccomp.rs) knows only x86_64 system call numbers");

use std::collections::BTreeMap;

use seccompiler::sock_filter;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("the seccomp rules of {syscall} do not fit in one BPF jump (255 instructions)")]
    TooLarge { syscall: &'static str },
    #[error("installing the seccomp filter: {0}")]
    Install(#[from] seccompiler::Error),
}

/// What a refused or answered call returns, or whether it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Errno(i32),
    /// Kills the whole process (calls through a foreign architecture's entry point).
    Kill,
}

/// How one argument is compared. Only its low 32 bits are loaded: every argument nsplay checks
/// is a C `int` or `unsigned int` to the kernel, which ignores the high half, so a 64-bit compare
/// could be dodged by setting high bits (CVE-2019-10063: `ioctl(fd, TIOCSTI | 1 << 32)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq(u32),
    Ne(u32),
    /// Unsigned `<`.
    Lt(u32),
    /// Unsigned `>=`.
    Ge(u32),
    /// `arg & mask == value`.
    MaskedEq(u32, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub arg: u8,
    pub cmp: Cmp,
}

const fn check(arg: u8, cmp: Cmp) -> Check {
    Check { arg, cmp }
}

/// The decision for one system call number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Always(Verdict),
    /// Allowed when every check of at least one of the lists holds; refused with EPERM otherwise.
    AllowIf(Vec<Vec<Check>>),
}

/// x86_64 system call numbers: libc's, plus the ones newer than the libc crate knows
/// (arch/x86/entry/syscalls/syscall_64.tbl; the numbers are ABI and never change).
#[allow(non_upper_case_globals)]
mod nr {
    pub use libc::*;
    pub const SYS_create_module: i64 = 174;
    pub const SYS_get_kernel_syms: i64 = 177;
    pub const SYS_query_module: i64 = 178;
    pub const SYS_io_pgetevents: i64 = 333;
    pub const SYS_cachestat: i64 = 451;
    pub const SYS_map_shadow_stack: i64 = 453;
    pub const SYS_futex_wake: i64 = 454;
    pub const SYS_futex_wait: i64 = 455;
    pub const SYS_futex_requeue: i64 = 456;
    pub const SYS_statmount: i64 = 457;
    pub const SYS_listmount: i64 = 458;
    pub const SYS_lsm_get_self_attr: i64 = 459;
    pub const SYS_lsm_set_self_attr: i64 = 460;
    pub const SYS_lsm_list_modules: i64 = 461;
    pub const SYS_mseal: i64 = 462;
    pub const SYS_setxattrat: i64 = 463;
    pub const SYS_getxattrat: i64 = 464;
    pub const SYS_listxattrat: i64 = 465;
    pub const SYS_removexattrat: i64 = 466;
    pub const SYS_open_tree_attr: i64 = 467;
    pub const SYS_file_getattr: i64 = 468;
    pub const SYS_file_setattr: i64 = 469;
}

/// The newest system call the tables below classify. Anything above returns ENOSYS, so a
/// program built for a newer kernel falls back instead of seeing an unexpected EPERM.
pub const NEWEST_KNOWN: i64 = nr::SYS_file_setattr;

/// Bit 30 of the number marks the x32 ABI; x32 calls are refused as a whole.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// `AUDIT_ARCH_X86_64` from linux/audit.h.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

macro_rules! table {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), nr::$name)),*]
    };
}

/// Strips the `SYS_` prefix the tables carry.
fn short(name: &'static str) -> &'static str {
    name.strip_prefix("SYS_").unwrap_or(name)
}

/// Allowed whatever the arguments.
#[rustfmt::skip]
const ALLOWED: &[(&str, i64)] = table![
    // Files, directories, descriptors.
    SYS_read, SYS_write, SYS_open, SYS_close, SYS_stat, SYS_fstat, SYS_lstat, SYS_poll, SYS_lseek,
    SYS_pread64, SYS_pwrite64, SYS_readv, SYS_writev, SYS_preadv, SYS_pwritev, SYS_preadv2, SYS_pwritev2,
    SYS_access, SYS_faccessat, SYS_faccessat2, SYS_pipe, SYS_pipe2, SYS_select, SYS_pselect6, SYS_ppoll,
    SYS_dup, SYS_dup2, SYS_dup3, SYS_fcntl, SYS_flock, SYS_fsync, SYS_fdatasync, SYS_sync, SYS_syncfs,
    SYS_sync_file_range, SYS_truncate, SYS_ftruncate, SYS_fallocate, SYS_fadvise64, SYS_readahead,
    SYS_getdents, SYS_getdents64, SYS_getcwd, SYS_chdir, SYS_fchdir, SYS_rename, SYS_renameat, SYS_renameat2,
    SYS_mkdir, SYS_mkdirat, SYS_rmdir, SYS_creat, SYS_link, SYS_linkat, SYS_unlink, SYS_unlinkat, SYS_symlink,
    SYS_symlinkat, SYS_readlink, SYS_readlinkat, SYS_chmod, SYS_fchmod, SYS_fchmodat, SYS_chown, SYS_fchown,
    SYS_lchown, SYS_fchownat, SYS_umask, SYS_mknod, SYS_mknodat, SYS_openat, SYS_openat2, SYS_newfstatat,
    SYS_statx, SYS_statfs, SYS_fstatfs, SYS_utime, SYS_utimes, SYS_futimesat, SYS_utimensat, SYS_setxattr,
    SYS_lsetxattr, SYS_fsetxattr, SYS_getxattr, SYS_lgetxattr, SYS_fgetxattr, SYS_listxattr, SYS_llistxattr,
    SYS_flistxattr, SYS_removexattr, SYS_lremovexattr, SYS_fremovexattr, SYS_sendfile, SYS_splice, SYS_tee,
    SYS_vmsplice, SYS_copy_file_range, SYS_close_range, SYS_inotify_init, SYS_inotify_init1,
    SYS_inotify_add_watch, SYS_inotify_rm_watch, SYS_memfd_create,
    // Asynchronous I/O of the old kind (Docker allows it; io_uring is refused below).
    SYS_io_setup, SYS_io_destroy, SYS_io_getevents, SYS_io_pgetevents, SYS_io_submit, SYS_io_cancel,
    // Polling, events, timers, clocks (read-only).
    SYS_epoll_create, SYS_epoll_create1, SYS_epoll_ctl, SYS_epoll_wait, SYS_epoll_pwait, SYS_epoll_pwait2,
    SYS_eventfd, SYS_eventfd2, SYS_signalfd, SYS_signalfd4, SYS_timerfd_create, SYS_timerfd_settime,
    SYS_timerfd_gettime, SYS_timer_create, SYS_timer_settime, SYS_timer_gettime, SYS_timer_getoverrun,
    SYS_timer_delete, SYS_getitimer, SYS_setitimer, SYS_alarm, SYS_nanosleep, SYS_clock_nanosleep,
    SYS_clock_gettime, SYS_clock_getres, SYS_gettimeofday, SYS_time, SYS_pause,
    // Memory.
    SYS_mmap, SYS_mprotect, SYS_munmap, SYS_brk, SYS_mremap, SYS_msync, SYS_mincore, SYS_madvise, SYS_mlock,
    SYS_mlock2, SYS_munlock, SYS_mlockall, SYS_munlockall, SYS_remap_file_pages, SYS_membarrier,
    SYS_pkey_mprotect, SYS_pkey_alloc, SYS_pkey_free,
    // Processes, threads, signals, credentials (all within the session's user namespace).
    SYS_fork, SYS_vfork, SYS_execve, SYS_execveat, SYS_exit, SYS_exit_group, SYS_wait4, SYS_waitid, SYS_kill,
    SYS_tkill, SYS_tgkill, SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_rt_sigpending,
    SYS_rt_sigtimedwait, SYS_rt_sigqueueinfo, SYS_rt_tgsigqueueinfo, SYS_rt_sigsuspend, SYS_sigaltstack,
    SYS_restart_syscall, SYS_pidfd_open, SYS_pidfd_send_signal, SYS_process_mrelease, SYS_getpid, SYS_getppid,
    SYS_gettid, SYS_getpgid, SYS_setpgid, SYS_getpgrp, SYS_getsid, SYS_setsid, SYS_getuid, SYS_geteuid,
    SYS_getgid, SYS_getegid, SYS_setuid, SYS_setgid, SYS_setreuid, SYS_setregid, SYS_setresuid, SYS_getresuid,
    SYS_setresgid, SYS_getresgid, SYS_setfsuid, SYS_setfsgid, SYS_getgroups, SYS_setgroups, SYS_capget,
    SYS_capset, SYS_prctl, SYS_arch_prctl, SYS_set_tid_address, SYS_set_thread_area, SYS_get_thread_area,
    SYS_set_robust_list, SYS_get_robust_list, SYS_futex, SYS_futex_waitv, SYS_rseq, SYS_getrlimit,
    SYS_setrlimit, SYS_prlimit64, SYS_getrusage, SYS_times, SYS_getpriority, SYS_setpriority, SYS_ioprio_get,
    SYS_ioprio_set, SYS_sched_yield, SYS_sched_setparam, SYS_sched_getparam, SYS_sched_setscheduler,
    SYS_sched_getscheduler, SYS_sched_get_priority_max, SYS_sched_get_priority_min, SYS_sched_rr_get_interval,
    SYS_sched_setaffinity, SYS_sched_getaffinity, SYS_sched_setattr, SYS_sched_getattr, SYS_getcpu, SYS_uname,
    SYS_sysinfo, SYS_getrandom, SYS_seccomp, SYS_landlock_create_ruleset, SYS_landlock_add_rule,
    SYS_landlock_restrict_self,
    // Debugging the session's own programs (strace, gdb), as Docker allows on kernels >= 4.8.
    SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev,
    // System V and POSIX IPC (the session has its own IPC namespace).
    SYS_shmget, SYS_shmat, SYS_shmctl, SYS_shmdt, SYS_semget, SYS_semop, SYS_semtimedop, SYS_semctl,
    SYS_msgget, SYS_msgsnd, SYS_msgrcv, SYS_msgctl, SYS_mq_open, SYS_mq_unlink, SYS_mq_timedsend,
    SYS_mq_timedreceive, SYS_mq_notify, SYS_mq_getsetattr,
    // Sockets once created (creation and setsockopt are checked below).
    SYS_connect, SYS_accept, SYS_accept4, SYS_sendto, SYS_recvfrom, SYS_sendmsg, SYS_recvmsg, SYS_sendmmsg,
    SYS_recvmmsg, SYS_shutdown, SYS_bind, SYS_listen, SYS_getsockname, SYS_getpeername, SYS_socketpair,
    SYS_getsockopt,
    // What the namespace lessons are about; the kernel confines each to namespaces owned by
    // the session's user namespace.
    SYS_mount, SYS_umount2, SYS_pivot_root, SYS_chroot, SYS_setns, SYS_sethostname, SYS_setdomainname,
];

/// Refused with ENOSYS: the caller falls back to a call the filter can judge, or to what it
/// does on an older kernel.
#[rustfmt::skip]
const ENOSYS: &[(&str, i64)] = table![
    // Flags behind a pointer: glibc falls back to clone(2), whose flags the filter reads.
    SYS_clone3,
    // The new mount API: mount(8) falls back to mount(2).
    SYS_open_tree, SYS_move_mount, SYS_fsopen, SYS_fsconfig, SYS_fsmount, SYS_fspick, SYS_mount_setattr,
    SYS_open_tree_attr, SYS_statmount, SYS_listmount,
    // Newer than Docker's list, each with an older equivalent (or optional, like mseal and
    // shadow stacks): new kernel code for no new ability.
    SYS_fchmodat2, SYS_cachestat, SYS_map_shadow_stack, SYS_futex_wake, SYS_futex_wait, SYS_futex_requeue,
    SYS_lsm_get_self_attr, SYS_lsm_set_self_attr, SYS_lsm_list_modules, SYS_mseal, SYS_setxattrat,
    SYS_getxattrat, SYS_listxattrat, SYS_removexattrat, SYS_file_getattr, SYS_file_setattr,
];

/// Refused with EPERM (the default; listed so that tests and docs name each one, and so that
/// nothing is refused by accident).
#[rustfmt::skip]
pub const REFUSED: &[(&str, i64)] = table![
    // Kernel keyrings are not namespaced.
    SYS_add_key, SYS_request_key, SYS_keyctl,
    // Large kernel attack surfaces with a history of exploits from user namespaces.
    SYS_bpf, SYS_perf_event_open, SYS_userfaultfd, SYS_io_uring_setup, SYS_io_uring_enter,
    SYS_io_uring_register,
    // Replace or extend the running kernel.
    SYS_kexec_load, SYS_kexec_file_load, SYS_init_module, SYS_finit_module, SYS_delete_module,
    SYS_create_module, SYS_get_kernel_syms, SYS_query_module,
    // File handles bypass the mount tree (the "shocker" escape).
    SYS_open_by_handle_at, SYS_name_to_handle_at,
    // Host-wide state: swap, accounting, quotas, clocks, power, console, kernel log, sysctl.
    SYS_swapon, SYS_swapoff, SYS_acct, SYS_quotactl, SYS_quotactl_fd, SYS_settimeofday, SYS_clock_settime,
    SYS_clock_adjtime, SYS_adjtimex, SYS_reboot, SYS_vhangup, SYS_syslog, SYS__sysctl, SYS_lookup_dcookie,
    SYS_fanotify_init, SYS_fanotify_mark,
    // Port I/O and segment tricks.
    SYS_iopl, SYS_ioperm, SYS_modify_ldt,
    // NUMA placement of other processes' memory (Docker: CAP_SYS_NICE only).
    SYS_mbind, SYS_set_mempolicy, SYS_get_mempolicy, SYS_set_mempolicy_home_node, SYS_migrate_pages,
    SYS_move_pages,
    // Reach into other processes beyond ptrace's rules (Docker: CAP_SYS_PTRACE only).
    SYS_kcmp, SYS_pidfd_getfd, SYS_process_madvise,
    // Secret memory, unusual or obsolete calls.
    SYS_memfd_secret, SYS_uselib, SYS_ustat, SYS_sysfs, SYS_nfsservctl, SYS_getpmsg, SYS_putpmsg,
    SYS_afs_syscall, SYS_tuxcall, SYS_security, SYS_vserver, SYS_epoll_ctl_old, SYS_epoll_wait_old,
];

/// `ioctl` requests refused: faking terminal input (TIOCSTI), the virtual console's grab bag
/// (TIOCLINUX), and swapping a terminal's line discipline (TIOCSETD, the n_hdlc/n_gsm bugs).
pub const REFUSED_IOCTLS: &[(&str, u32)] =
    &[("TIOCSTI", libc::TIOCSTI as u32), ("TIOCLINUX", libc::TIOCLINUX as u32), ("TIOCSETD", libc::TIOCSETD as u32)];

/// `personality` values Docker allows: PER_LINUX, PER_LINUX32 (`linux32`), UNAME26, both, and
/// the query 0xffffffff. Not ADDR_NO_RANDOMIZE (gdb then warns and keeps ASLR), and none of the
/// flags that weaken memory protection (READ_IMPLIES_EXEC, MMAP_PAGE_ZERO).
const PERSONALITIES: &[u32] = &[0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

const SOL_IP: u32 = libc::SOL_IP as u32;
const SOL_IPV6: u32 = libc::SOL_IPV6 as u32;

/// Options of one session's filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Whether programs may create user namespaces inside the session's (`unshare -U`).
    pub nested_userns: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { nested_userns: true }
    }
}

fn socket_rules() -> Vec<Vec<Check>> {
    const TYPE_MASK: u32 = 0xf;
    let (stream, dgram, raw) = (libc::SOCK_STREAM as u32, libc::SOCK_DGRAM as u32, libc::SOCK_RAW as u32);
    let mut rules = vec![vec![check(0, Cmp::Eq(libc::AF_UNIX as u32))]];
    for family in [libc::AF_INET as u32, libc::AF_INET6 as u32] {
        let domain = check(0, Cmp::Eq(family));
        let kind = |t| check(1, Cmp::MaskedEq(TYPE_MASK, t));
        let proto = |p: i32| check(2, Cmp::Eq(p as u32));
        for (t, p) in [
            (stream, 0),
            (stream, libc::IPPROTO_TCP),
            (dgram, 0),
            (dgram, libc::IPPROTO_UDP),
            (dgram, libc::IPPROTO_ICMP),
            (dgram, libc::IPPROTO_ICMPV6),
        ] {
            rules.push(vec![domain, kind(t), proto(p)]);
        }
        // Raw IP never loads a protocol module; ping needs it.
        rules.push(vec![domain, kind(raw)]);
    }
    // Netlink only for routes/links/addresses (ip) and socket diagnostics (ss). Not
    // NETLINK_NETFILTER: nf_tables is the most exploited code reachable from a user namespace.
    for protocol in [libc::NETLINK_ROUTE, libc::NETLINK_SOCK_DIAG] {
        rules.push(vec![check(0, Cmp::Eq(libc::AF_NETLINK as u32)), check(2, Cmp::Eq(protocol as u32))]);
    }
    rules
}

/// Everything but the netfilter, IPVS and multicast-routing options, which configure kernel
/// tables from any INET socket (CVE-2021-22555 went through IPT_SO_SET_REPLACE). `SOL_IP`
/// options below 64 are the ordinary ones (the highest is IP_PROTOCOL, 52); from 64 on come
/// IPT_SO_*, ARPT_SO_*, EBT_SO_*, MRT_* and IP_VS_*. `SOL_IPV6` has IP6T_SO_* at 64 and 65,
/// ordinary options up to 80, and MRT6_* from 200.
fn setsockopt_rules() -> Vec<Vec<Check>> {
    vec![
        vec![check(1, Cmp::Ne(SOL_IP)), check(1, Cmp::Ne(SOL_IPV6))],
        vec![check(1, Cmp::Eq(SOL_IP)), check(2, Cmp::Lt(64))],
        vec![check(1, Cmp::Eq(SOL_IPV6)), check(2, Cmp::Lt(64))],
        vec![check(1, Cmp::Eq(SOL_IPV6)), check(2, Cmp::Ge(66)), check(2, Cmp::Lt(200))],
    ]
}

/// The whole policy: one rule per classified system call number.
pub fn rules(opts: &Options) -> BTreeMap<i64, (&'static str, Rule)> {
    let mut map = BTreeMap::new();
    for (name, n) in ALLOWED {
        map.insert(*n, (short(name), Rule::Always(Verdict::Allow)));
    }
    for (name, n) in ENOSYS {
        map.insert(*n, (short(name), Rule::Always(Verdict::Errno(libc::ENOSYS))));
    }
    for (name, n) in REFUSED {
        map.insert(*n, (short(name), Rule::Always(Verdict::Errno(libc::EPERM))));
    }
    let ioctl = REFUSED_IOCTLS.iter().map(|(_, req)| check(1, Cmp::Ne(*req))).collect();
    map.insert(nr::SYS_ioctl, ("ioctl", Rule::AllowIf(vec![ioctl])));
    let personality = PERSONALITIES.iter().map(|p| vec![check(0, Cmp::Eq(*p))]).collect();
    map.insert(nr::SYS_personality, ("personality", Rule::AllowIf(personality)));
    map.insert(nr::SYS_socket, ("socket", Rule::AllowIf(socket_rules())));
    map.insert(nr::SYS_setsockopt, ("setsockopt", Rule::AllowIf(setsockopt_rules())));
    // clone's flags are its first argument on x86_64; the kernel reads only their low 32 bits
    // (legacy clone) and refuses high bits in unshare, so a 32-bit mask test is exact.
    let no_newuser = || {
        let newuser = libc::CLONE_NEWUSER as u32;
        Rule::AllowIf(vec![vec![check(0, Cmp::MaskedEq(newuser, 0))]])
    };
    for (name, n) in [("clone", nr::SYS_clone), ("unshare", nr::SYS_unshare)] {
        let rule = if opts.nested_userns { Rule::Always(Verdict::Allow) } else { no_newuser() };
        map.insert(n, (name, rule));
    }
    map
}

// ---------------------------------------------------------------------------------------------
// Classic BPF, just the instructions a seccomp filter needs.

// Opcodes are class | operation | source (linux/bpf_common.h), spelled out in the comments.
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD 0x00 | BPF_W 0x00 | BPF_ABS 0x20
const BPF_ALU_AND_K: u16 = 0x54; // BPF_ALU 0x04 | BPF_AND 0x50 | BPF_K 0x00
const BPF_JMP_JEQ_K: u16 = 0x15; // BPF_JMP 0x05 | BPF_JEQ 0x10 | BPF_K
const BPF_JMP_JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT 0x20 | BPF_K
const BPF_JMP_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE 0x30 | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET 0x06 | BPF_K

/// Offsets in `struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }` (little endian:
/// the low half of an argument comes first).
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const fn data_arg_low(arg: u8) -> u32 {
    16 + 8 * arg as u32
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn ret(v: Verdict) -> sock_filter {
    let k = match v {
        Verdict::Allow => libc::SECCOMP_RET_ALLOW,
        Verdict::Errno(e) => libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA),
        Verdict::Kill => libc::SECCOMP_RET_KILL_PROCESS,
    };
    stmt(BPF_RET_K, k)
}

/// One list of checks: falls through to `ret ALLOW` when all hold, else jumps past its end
/// (to the next list, or to the syscall's final EPERM).
fn compile_checks(checks: &[Check]) -> Vec<sock_filter> {
    // Built back to front: each jump needs the distance to the end of the list.
    let mut rev: Vec<sock_filter> = vec![ret(Verdict::Allow)];
    for c in checks.iter().rev() {
        let fail = u8::try_from(rev.len()).expect("a check list is a handful of instructions");
        let (cmp, mask) = match c.cmp {
            Cmp::MaskedEq(mask, v) => (jump(BPF_JMP_JEQ_K, v & mask, 0, fail), Some(mask)),
            Cmp::Eq(v) => (jump(BPF_JMP_JEQ_K, v, 0, fail), None),
            Cmp::Ne(v) => (jump(BPF_JMP_JEQ_K, v, fail, 0), None),
            Cmp::Lt(v) => (jump(BPF_JMP_JGE_K, v, fail, 0), None),
            Cmp::Ge(v) => (jump(BPF_JMP_JGE_K, v, 0, fail), None),
        };
        rev.push(cmp);
        if let Some(mask) = mask {
            rev.push(stmt(BPF_ALU_AND_K, mask));
        }
        rev.push(stmt(BPF_LD_W_ABS, data_arg_low(c.arg)));
    }
    rev.reverse();
    rev
}

/// Compiles the policy for x86_64. Layout: architecture check, x32 check, "newer than the
/// table" check, then for each number `jeq nr → its block`, each block ending in a return, and
/// a final EPERM for numbers in none of the tables.
pub fn program(opts: &Options) -> Result<Vec<sock_filter>, SeccompError> {
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        ret(Verdict::Kill),
        stmt(BPF_LD_W_ABS, DATA_NR),
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        ret(Verdict::Errno(libc::EPERM)),
        jump(BPF_JMP_JGT_K, NEWEST_KNOWN as u32, 0, 1),
        ret(Verdict::Errno(libc::ENOSYS)),
    ];
    for (n, (name, rule)) in rules(opts) {
        let block = match rule {
            Rule::Always(v) => vec![ret(v)],
            Rule::AllowIf(lists) => {
                let mut b: Vec<sock_filter> = lists.iter().flat_map(|l| compile_checks(l)).collect();
                b.push(ret(Verdict::Errno(libc::EPERM)));
                b
            }
        };
        let skip = u8::try_from(block.len()).map_err(|_| SeccompError::TooLarge { syscall: name })?;
        // The accumulator still holds the number whenever a block is skipped: blocks only load
        // arguments on their way to a return.
        prog.push(jump(BPF_JMP_JEQ_K, n as u32, 0, skip));
        prog.extend(block);
    }
    prog.push(ret(Verdict::Errno(libc::EPERM)));
    Ok(prog)
}

/// Installs the filter on the calling thread (the single-threaded child about to exec), after
/// setting `PR_SET_NO_NEW_PRIVS` (which the kernel requires of an unprivileged filter).
pub fn install(opts: &Options) -> Result<(), SeccompError> {
    let prog = program(opts)?;
    seccompiler::apply_filter(&prog)?;
    Ok(())
}

/// Every classified call with the verdict it gets when its arguments are irrelevant (for
/// `AllowIf` calls: `Allow`, as the common case is allowed). Used by the probe suite.
pub fn table(opts: &Options) -> Vec<(&'static str, i64, Verdict)> {
    rules(opts)
        .into_iter()
        .map(|(n, (name, rule))| match rule {
            Rule::Always(v) => (name, n, v),
            Rule::AllowIf(_) => (name, n, Verdict::Allow),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions [`program`] emits, run on a
    /// `seccomp_data`, so the policy can be checked call by call without installing it.
    fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::new();
        data.extend(nr.to_le_bytes());
        data.extend(arch.to_le_bytes());
        data.extend(0u64.to_le_bytes());
        for a in args {
            data.extend(a.to_le_bytes());
        }
        let load = |off: u32| {
            let o = off as usize;
            u32::from_le_bytes(data[o..o + 4].try_into().unwrap())
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &prog[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => acc = load(i.k),
                BPF_ALU_AND_K => acc &= i.k,
                BPF_JMP_JEQ_K | BPF_JMP_JGT_K | BPF_JMP_JGE_K => {
                    let hit = match i.code {
                        BPF_JMP_JEQ_K => acc == i.k,
                        BPF_JMP_JGT_K => acc > i.k,
                        _ => acc >= i.k,
                    };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
                BPF_RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn verdict(prog: &[sock_filter], nr: i64, args: [u64; 6]) -> Verdict {
        let k = run(prog, AUDIT_ARCH_X86_64, nr as u32, args);
        match k & libc::SECCOMP_RET_ACTION_FULL {
            libc::SECCOMP_RET_ALLOW => Verdict::Allow,
            libc::SECCOMP_RET_ERRNO => Verdict::Errno((k & libc::SECCOMP_RET_DATA) as i32),
            libc::SECCOMP_RET_KILL_PROCESS => Verdict::Kill,
            other => panic!("unexpected action {other:#x}"),
        }
    }

    fn prog() -> Vec<sock_filter> {
        program(&Options::default()).unwrap()
    }

    const EPERM: Verdict = Verdict::Errno(libc::EPERM);
    const ENOSYS_V: Verdict = Verdict::Errno(libc::ENOSYS);

    #[test]
    fn every_x86_64_call_is_classified_exactly_once() {
        let mut seen = BTreeMap::new();
        for (name, n) in ALLOWED.iter().chain(ENOSYS).chain(REFUSED) {
            assert!(seen.insert(*n, *name).is_none(), "{name} ({n}) is listed twice");
        }
        for n in
            [nr::SYS_ioctl, nr::SYS_personality, nr::SYS_socket, nr::SYS_setsockopt, nr::SYS_clone, nr::SYS_unshare]
        {
            assert!(seen.insert(n, "conditional").is_none(), "{n} is listed twice");
        }
        // 335..=423 are unassigned on x86_64 (kept in step with the 32-bit tables).
        let missing: Vec<i64> =
            (0..=NEWEST_KNOWN).filter(|n| !(335..=423).contains(n)).filter(|n| !seen.contains_key(n)).collect();
        assert!(missing.is_empty(), "unclassified x86_64 calls: {missing:?}");
    }

    #[test]
    fn the_program_fits_and_matches_the_tables() {
        let p = prog();
        assert!(p.len() < 4096, "{} instructions", p.len());
        for (name, n) in ALLOWED {
            assert_eq!(verdict(&p, *n, [0; 6]), Verdict::Allow, "{name}");
        }
        for (name, n) in ENOSYS {
            assert_eq!(verdict(&p, *n, [0; 6]), ENOSYS_V, "{name}");
        }
        for (name, n) in REFUSED {
            assert_eq!(verdict(&p, *n, [0; 6]), EPERM, "{name}");
        }
    }

    #[test]
    fn foreign_architectures_are_killed_and_x32_is_refused() {
        let p = prog();
        const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
        assert_eq!(run(&p, AUDIT_ARCH_I386, 20, [0; 6]), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(verdict(&p, nr::SYS_getpid | 0x4000_0000, [0; 6]), EPERM);
        assert_eq!(verdict(&p, 0x4000_0000 + 512, [0; 6]), EPERM); // x32-only rt_sigaction
        assert_eq!(verdict(&p, -1, [0; 6]), EPERM);
    }

    #[test]
    fn unknown_and_newer_calls_get_enosys_and_unassigned_ones_eperm() {
        let p = prog();
        assert_eq!(verdict(&p, NEWEST_KNOWN + 1, [0; 6]), ENOSYS_V);
        assert_eq!(verdict(&p, 1000, [0; 6]), ENOSYS_V);
        assert_eq!(verdict(&p, 400, [0; 6]), EPERM);
    }

    #[test]
    fn tiocsti_and_friends_are_refused_whatever_the_high_bits() {
        let p = prog();
        for (name, req) in REFUSED_IOCTLS {
            for high in [0u64, 1 << 32, 0xffff_ffff << 32] {
                let args = [0, high | u64::from(*req), 0, 0, 0, 0];
                assert_eq!(verdict(&p, nr::SYS_ioctl, args), EPERM, "{name} with {high:#x}");
            }
        }
        let tcgets = libc::TCGETS;
        assert_eq!(verdict(&p, nr::SYS_ioctl, [0, tcgets, 0, 0, 0, 0]), Verdict::Allow);
        let tiocswinsz = libc::TIOCSWINSZ;
        assert_eq!(verdict(&p, nr::SYS_ioctl, [0, tiocswinsz, 0, 0, 0, 0]), Verdict::Allow);
    }

    #[test]
    fn personality_allows_only_dockers_values() {
        let p = prog();
        for v in PERSONALITIES {
            assert_eq!(verdict(&p, nr::SYS_personality, [u64::from(*v), 0, 0, 0, 0, 0]), Verdict::Allow);
        }
        const READ_IMPLIES_EXEC: u64 = 0x0040_0000;
        assert_eq!(verdict(&p, nr::SYS_personality, [READ_IMPLIES_EXEC, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(verdict(&p, nr::SYS_personality, [1, 0, 0, 0, 0, 0]), EPERM);
    }

    #[test]
    fn sockets_are_limited_to_the_families_the_lessons_use() {
        let p = prog();
        let sock = |d: i32, t: i32, pr: i32| verdict(&p, nr::SYS_socket, [d as u64, t as u64, pr as u64, 0, 0, 0]);
        let cloexec = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        assert_eq!(sock(libc::AF_UNIX, libc::SOCK_STREAM | cloexec, 0), Verdict::Allow);
        assert_eq!(sock(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0), Verdict::Allow);
        assert_eq!(sock(libc::AF_INET, libc::SOCK_STREAM | cloexec, libc::IPPROTO_TCP), Verdict::Allow);
        assert_eq!(sock(libc::AF_INET6, libc::SOCK_DGRAM, 0), Verdict::Allow);
        assert_eq!(sock(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP), Verdict::Allow);
        assert_eq!(sock(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP), Verdict::Allow);
        assert_eq!(sock(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE), Verdict::Allow);
        assert_eq!(sock(libc::AF_NETLINK, libc::SOCK_DGRAM, libc::NETLINK_SOCK_DIAG), Verdict::Allow);
        assert_eq!(sock(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_NETFILTER), EPERM);
        assert_eq!(sock(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_XFRM), EPERM);
        assert_eq!(sock(libc::AF_PACKET, libc::SOCK_RAW, 0x0300), EPERM);
        assert_eq!(sock(libc::AF_ALG, libc::SOCK_SEQPACKET, 0), EPERM);
        assert_eq!(sock(libc::AF_VSOCK, libc::SOCK_STREAM, 0), EPERM);
        assert_eq!(sock(libc::AF_INET, libc::SOCK_SEQPACKET, libc::IPPROTO_SCTP), EPERM);
        assert_eq!(sock(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP), EPERM);
        assert_eq!(sock(libc::AF_INET, 6, 0), EPERM); // SOCK_DCCP
        assert_eq!(sock(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE), EPERM);
        // High bits of the family are ignored by the kernel and by the filter alike.
        assert_eq!(verdict(&p, nr::SYS_socket, [(1 << 32) | 16, 3, 12, 0, 0, 0]), EPERM);
    }

    #[test]
    fn setsockopt_refuses_netfilter_and_multicast_routing_only() {
        let p = prog();
        let opt = |level: i32, name: u64| verdict(&p, nr::SYS_setsockopt, [3, level as u64, name, 0, 0, 0]);
        assert_eq!(opt(libc::SOL_SOCKET, libc::SO_REUSEADDR as u64), Verdict::Allow);
        assert_eq!(opt(libc::IPPROTO_TCP, libc::TCP_NODELAY as u64), Verdict::Allow);
        assert_eq!(opt(libc::SOL_IP, libc::IP_TTL as u64), Verdict::Allow);
        assert_eq!(opt(libc::SOL_IPV6, libc::IPV6_V6ONLY as u64), Verdict::Allow);
        assert_eq!(opt(libc::SOL_IPV6, 78), Verdict::Allow); // IPV6_FREEBIND
        for name in [64, 65, 96, 97, 128, 129, 200, 1152] {
            assert_eq!(opt(libc::SOL_IP, name), EPERM, "SOL_IP {name}");
        }
        for name in [64, 65, 200, 204] {
            assert_eq!(opt(libc::SOL_IPV6, name), EPERM, "SOL_IPV6 {name}");
        }
    }

    #[test]
    fn nested_user_namespaces_follow_the_switch() {
        let newuser = libc::CLONE_NEWUSER as u64;
        let newns = libc::CLONE_NEWNS as u64;
        let on = prog();
        let off = program(&Options { nested_userns: false }).unwrap();
        for n in [nr::SYS_clone, nr::SYS_unshare] {
            assert_eq!(verdict(&on, n, [newuser | newns, 0, 0, 0, 0, 0]), Verdict::Allow);
            assert_eq!(verdict(&off, n, [newuser | newns, 0, 0, 0, 0, 0]), EPERM);
            assert_eq!(verdict(&off, n, [newns | libc::CLONE_NEWPID as u64, 0, 0, 0, 0, 0]), Verdict::Allow);
        }
        // A plain fork (glibc's clone with SIGCHLD) stays allowed.
        assert_eq!(verdict(&off, nr::SYS_clone, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]), Verdict::Allow);
        assert_eq!(verdict(&off, nr::SYS_clone3, [0; 6]), ENOSYS_V);
    }

    #[test]
    fn lesson_calls_are_allowed_and_dangerous_ones_refused() {
        let p = prog();
        for n in
            [nr::SYS_mount, nr::SYS_umount2, nr::SYS_pivot_root, nr::SYS_setns, nr::SYS_sethostname, nr::SYS_chroot]
        {
            assert_eq!(verdict(&p, n, [0; 6]), Verdict::Allow, "{n}");
        }
        for n in [
            nr::SYS_keyctl,
            nr::SYS_bpf,
            nr::SYS_io_uring_setup,
            nr::SYS_open_by_handle_at,
            nr::SYS_kexec_load,
            nr::SYS_userfaultfd,
        ] {
            assert_eq!(verdict(&p, n, [0; 6]), EPERM, "{n}");
        }
        for n in [nr::SYS_fsopen, nr::SYS_clone3, nr::SYS_mount_setattr] {
            assert_eq!(verdict(&p, n, [0; 6]), ENOSYS_V, "{n}");
        }
        let names = table(&Options::default());
        assert!(names.contains(&("io_uring_setup", nr::SYS_io_uring_setup, EPERM)));
    }
}
