//! Pseudo-terminals of a session. The pty is allocated on the session's own devpts instance
//! (so `tty` inside says `/dev/pts/N` and the host's devpts is never touched), its peer is opened
//! with `TIOCGPTPEER` (no path lookup the sandbox could redirect), and the program becomes a
//! session leader with the pty as controlling terminal (so TIOCSTI cannot reach any other).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::resource::{Resource, setrlimit};
use serde::{Deserialize, Serialize};

use super::limits::Limits;
use super::{seccomp, sys};

/// What confines a terminal's program besides its namespaces and cgroup: rlimits as a second
/// layer under the cgroup limits (the session's root cannot raise a hard limit: that takes
/// CAP_SYS_RESOURCE in the host's user namespace), and the seccomp filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// RLIMIT_FSIZE: no single file beyond the session's disk (or /dev/shm) cap, also on file
    /// systems that have no cap of their own, such as a tmpfs mounted inside or a memfd.
    pub max_file_bytes: u64,
    /// RLIMIT_NPROC: the pids limit again, counted per user instead of per cgroup, with some
    /// headroom so that the cgroup refuses first (and counts the refusal in pids.events, which
    /// the lessons and the limit notices read).
    pub max_processes: u64,
    /// Whether `unshare`/`clone` may create nested user namespaces.
    pub nested_userns: bool,
    /// RLIMIT_NOFILE: per process, so a session holds at most (pids + 1) times this many open
    /// files (the one more: descriptors in flight over unix sockets, which the kernel bounds by
    /// the sender's RLIMIT_NOFILE per user). At most [`MAX_OPEN_FILES`].
    pub max_open_files: u64,
}

impl Confinement {
    pub fn new(limits: &Limits, nested_userns: bool, max_open_files: u64) -> Confinement {
        Confinement {
            max_file_bytes: limits.disk_bytes.max(limits.shm_bytes),
            max_processes: limits.pids + 16,
            nested_userns,
            max_open_files: max_open_files.min(MAX_OPEN_FILES),
        }
    }

    /// Sets the rlimits of the calling process (hard and soft alike, so they stay).
    fn apply_rlimits(&self) -> nix::Result<()> {
        // No core dumps: a crashing program would fill the session's disk with its memory.
        setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
        setrlimit(Resource::RLIMIT_NOFILE, self.max_open_files, self.max_open_files)?;
        setrlimit(Resource::RLIMIT_FSIZE, self.max_file_bytes, self.max_file_bytes)?;
        setrlimit(Resource::RLIMIT_NPROC, self.max_processes, self.max_processes)?;
        Ok(())
    }
}

/// Open files per process at most: plenty for a shell and the lessons, bounded for a descriptor
/// bomb (the common soft limit of desktop systems).
pub const MAX_OPEN_FILES: u64 = 1024;

/// Opens a new pty pair on the session's devpts instance, whose root init took before any of the
/// session's code ran (`devpts`, see `mounts::session_devpts`). Nothing the session controls is
/// looked up by path: `ptmx` is resolved beneath that root without crossing a mount (a file the
/// session bind-mounts over it is refused with EXDEV), a symlink or a magic link, and opened
/// with O_NONBLOCK, so that no lease, FIFO or device can hold the open (and with it the joiner).
pub fn open_in_session(devpts: BorrowedFd<'_>, cols: u16, rows: u16) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new().flags(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_XDEV
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    let master = nix::fcntl::openat2(devpts, "ptmx", how)?;
    // Blocking again for its readers (`nsplay run`, the server sets its own mode).
    let flags = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_retain(flags) - OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    crate::term::pty_pair_from_master(master, cols, rows)
}

/// One variant per step before a terminal's program runs; the joiner's child prints it to the
/// pty, so the person sees why their program did not start.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("setsid: {0}")]
    Setsid(#[source] nix::errno::Errno),
    #[error("TIOCSCTTY: {0}")]
    ControllingTty(#[source] std::io::Error),
    #[error("dup2: {0}")]
    Dup(#[source] nix::errno::Errno),
    #[error(transparent)]
    Harden(#[from] crate::harden::HardenError),
    #[error("the command contains a NUL byte")]
    NulByte,
    #[error("setrlimit: {0}")]
    Rlimits(#[source] nix::errno::Errno),
    #[error("prctl(NO_NEW_PRIVS): {0}")]
    NoNewPrivs(#[source] nix::errno::Errno),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("cannot run {program}: {source}")]
    Exec { program: String, source: nix::errno::Errno },
}

/// Becomes a session leader on `slave` and execs `argv` (empty: bash, else sh) with a clean
/// environment, confined by `confinement`. Returns only on error, and never execs unconfined.
///
/// With a `gate`, everything is done (confinement included) and the process then waits, just
/// before `execve`, for one byte on it: the warm pool parks shells there, so that starting one
/// costs only the exec. If the gate closes instead, the process exits.
pub fn exec_on_pty(
    slave: OwnedFd,
    argv: &[String],
    extra_env: &[String],
    working_dir: Option<&str>,
    confinement: &Confinement,
    gate: Option<OwnedFd>,
) -> ExecError {
    match exec_steps(slave, argv, extra_env, working_dir, confinement, gate) {
        Err(e) => e,
    }
}

fn exec_steps(
    slave: OwnedFd,
    argv: &[String],
    extra_env: &[String],
    working_dir: Option<&str>,
    confinement: &Confinement,
    gate: Option<OwnedFd>,
) -> Result<std::convert::Infallible, ExecError> {
    nix::unistd::setsid().map_err(ExecError::Setsid)?;
    sys::set_controlling_tty(slave.as_fd()).map_err(ExecError::ControllingTty)?;
    for dup in [nix::unistd::dup2_stdin, nix::unistd::dup2_stdout, nix::unistd::dup2_stderr] {
        dup(&slave).map_err(ExecError::Dup)?;
    }
    drop(slave);
    // Only fds 0-2 enter the sandbox (the gate is closed before the exec).
    match &gate {
        Some(g) => crate::harden::keep_only_fds(&[0, 1, 2, g.as_raw_fd()])?,
        None => crate::harden::keep_only_fds(&[0, 1, 2])?,
    }
    sys::reset_signals();
    // Inside the session's mount namespace: the path is resolved in the session's own root.
    if working_dir.is_none_or(|w| std::env::set_current_dir(w).is_err()) {
        let _ = std::env::set_current_dir("/root");
    }
    let argv: Vec<String> = if argv.is_empty() {
        let shell = if std::path::Path::new("/bin/bash").exists() { "/bin/bash" } else { "/bin/sh" };
        vec![shell.to_string()]
    } else {
        argv.to_vec()
    };
    let cargs =
        argv.iter().map(|a| CString::new(a.as_str())).collect::<Result<Vec<_>, _>>().map_err(|_| ExecError::NulByte)?;
    let shell = if argv[0].ends_with("bash") { "/bin/bash" } else { "/bin/sh" };
    let mut env: Vec<String> = [
        format!("PATH={}", crate::consts::SANDBOX_PATH),
        "TERM=xterm-256color".into(),
        "HOME=/root".into(),
        "LANG=C.UTF-8".into(),
        "USER=root".into(),
        "LOGNAME=root".into(),
        format!("SHELL={shell}"),
    ]
    .into();
    // An image's Env: a key it sets replaces nsplay's (its PATH, say).
    for kv in extra_env {
        let Some((key, _)) = kv.split_once('=') else { continue };
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(kv.clone());
    }
    let env = env.into_iter().map(CString::new).collect::<Result<Vec<_>, _>>().map_err(|_| ExecError::NulByte)?;
    confinement.apply_rlimits().map_err(ExecError::Rlimits)?;
    // Not `process::harden`: this module sits below the processes, which import it.
    crate::harden::die_with_parent()?;
    nix::sys::prctl::set_no_new_privs().map_err(ExecError::NoNewPrivs)?;
    // Last: from here on only the calls the filter allows are possible, and execve is one.
    let opts = seccomp::Options { nested_userns: confinement.nested_userns };
    seccomp::install(&opts)?;
    if let Some(gate) = gate {
        let mut go = [0u8; 1];
        let n = loop {
            match nix::unistd::read(&gate, &mut go) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r,
            }
        };
        drop(gate);
        if n != Ok(1) {
            // The pool let go of this sandbox: nobody will ever see this terminal.
            std::process::exit(0);
        }
    }
    let Err(source) = nix::unistd::execvpe(&cargs[0], &cargs, &env);
    Err(ExecError::Exec { program: argv[0].clone(), source })
}
