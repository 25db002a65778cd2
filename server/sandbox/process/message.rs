//! Every message between the server, the spawner and the spawner's helpers, one enum per
//! direction:
//!
//! | enum | from → to | socket |
//! |---|---|---|
//! | [`Request`] | server → spawner | the control socket |
//! | [`ToServer`] | spawner → server (a [`Reply`] to a request, or an [`Event`]) | the control socket |
//! | [`FromHelper`] | keeper, init, joiner → spawner | the helper's set-up socket |
//! | [`ToKeeper`] | spawner → keeper | the keeper's set-up socket |
//!
//! The descriptors a message carries are fields of its variant (`#[serde(with = "fds::one")]` or
//! `"fd::option"`): on the wire each is its position among the datagram's `SCM_RIGHTS`
//! descriptors, an absent one is `null`. So a receiver knows from the message alone which
//! descriptors came with it, and [`super::channel`] refuses a message whose descriptors are
//! missing or more than it names. Errors cross the wire as text, once: each helper sends the
//! `Display` of its typed error (which includes its cause).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::fds;
use crate::limits::Limits;
use crate::pty;

/// A message type of one direction; its variant names appear in "expected X, got Y".
pub trait Message: Serialize + serde::de::DeserializeOwned {
    fn kind(&self) -> &'static str;
}

/// What a new session looks like (sent from the server to the spawner).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionSpec {
    pub hostname: String,
    pub limits: Limits,
    pub uid_base: u32,
    pub id_count: u32,
    /// `cgroup.procs` files of the session's cgroup (one per v1 hierarchy, one on v2).
    pub procs_files: Vec<PathBuf>,
    /// Where the keeper moves once init runs (empty: it stays in the session's group). See
    /// `CgroupDriver::helper_procs_files`.
    pub helper_procs_files: Vec<PathBuf>,
    /// Empty directory on the host where the session root is assembled (in a private mount
    /// namespace, so the host never sees it).
    pub stage: PathBuf,
    /// Build the root from an image of the store instead of the host's `/usr`.
    pub image: Option<crate::mounts::ImageRoot>,
}

/// A program to run on a new pty inside a running session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TerminalSpec {
    /// Empty: the default shell (bash if the session has it, else sh).
    pub argv: Vec<String>,
    pub cols: u16,
    pub rows: u16,
    pub procs_files: Vec<PathBuf>,
    /// Where the joiner moves once the program runs (empty: it stays in the session's group).
    pub helper_procs_files: Vec<PathBuf>,
    /// Seccomp filter and rlimits of the program.
    pub confinement: pty::Confinement,
    /// Hold the program just before its `execve` until a byte arrives on the terminal's start
    /// gate ([`TerminalFds::gate`]): everything up to the exec is then done ahead of time.
    pub parked: bool,
    /// Relay the terminal's output through the joiner into a pipe ([`TerminalFds::output`])
    /// instead of leaving the reader to read the pty master (see `relay`).
    pub relay: bool,
    /// Where the joiner goes once the program runs when it relays: the session's relay group,
    /// which has limits of its own (see `cgroups::RELAY_SUFFIX`).
    pub relay_procs_files: Vec<PathBuf>,
    /// `KEY=value` pairs added to (and overriding) the program's environment: an image's `Env`.
    pub env: Vec<String>,
    /// Where the program starts (else `/root`): an image's `WorkingDir`.
    pub working_dir: Option<String>,
}

/// Server → spawner. `req` pairs a request with its [`Reply`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    CreateSession {
        req: u64,
        session: u64,
        spec: SessionSpec,
    },
    OpenTerminal {
        req: u64,
        session: u64,
        terminal: u64,
        spec: TerminalSpec,
    },
    /// Kill the session's keeper (and so its init and PID namespace). Not answered.
    EndSession {
        session: u64,
    },
}

impl Message for Request {
    fn kind(&self) -> &'static str {
        match self {
            Request::CreateSession { .. } => "CreateSession",
            Request::OpenTerminal { .. } => "OpenTerminal",
            Request::EndSession { .. } => "EndSession",
        }
    }
}

/// Only the request id of a [`Request`]: read when the whole request cannot be, so that the
/// spawner can still answer it (with [`Reply::Failed`]) instead of leaving its caller waiting.
#[derive(Debug, Deserialize)]
pub enum RequestHead {
    CreateSession { req: u64 },
    OpenTerminal { req: u64 },
    EndSession(serde::de::IgnoredAny),
}

impl RequestHead {
    pub fn req(&self) -> Option<u64> {
        match self {
            RequestHead::CreateSession { req } | RequestHead::OpenTerminal { req } => Some(*req),
            RequestHead::EndSession(_) => None,
        }
    }
}

/// Spawner → server.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToServer {
    Reply { req: u64, reply: Reply },
    Event(Event),
}

impl Message for ToServer {
    fn kind(&self) -> &'static str {
        match self {
            ToServer::Reply { reply, .. } => reply.kind(),
            ToServer::Event(_) => "Event",
        }
    }
}

/// Only the request id of a [`ToServer`]: read when the whole message cannot be, so the call
/// waiting for it fails instead of waiting forever.
#[derive(Debug, Deserialize)]
pub enum ToServerHead {
    Reply { req: u64 },
    Event(serde::de::IgnoredAny),
}

/// The answer to one [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    SessionReady {
        init_pid: i32,
        #[serde(with = "fds::one")]
        pidfd: OwnedFd,
    },
    TerminalReady {
        pid: i32,
        fds: TerminalFds,
    },
    /// `OpenTerminal` for a session the spawner does not know (any more).
    NoSuchSession,
    /// The session or terminal could not be set up.
    Failed {
        helper: Helper,
        message: String,
    },
    /// The spawner could not read the request (only its id).
    BadRequest {
        message: String,
    },
}

impl Reply {
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::SessionReady { .. } => "SessionReady",
            Reply::TerminalReady { .. } => "TerminalReady",
            Reply::NoSuchSession => "NoSuchSession",
            Reply::Failed { .. } => "Failed",
            Reply::BadRequest { .. } => "BadRequest",
        }
    }
}

/// Which process a set-up failure happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Helper {
    Spawner,
    Keeper,
    Init,
    Joiner,
}

impl std::fmt::Display for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Helper::Spawner => "the spawner",
            Helper::Keeper => "the session's keeper",
            Helper::Init => "the session's init",
            Helper::Joiner => "the terminal's joiner",
        })
    }
}

/// Things that happen on their own, reported to whoever started the spawner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// The session's init is gone (its keeper's exit status).
    SessionExited { session: u64, status: i32 },
    /// The program on a terminal exited (`code` is 128+signal when killed by a signal).
    TerminalExited { session: u64, terminal: u64, code: i32 },
    /// The spawner itself exited: nothing can be spawned any more. Never sent on the wire: the
    /// server's reader reports it when the socket closes.
    SpawnerGone,
}

/// The descriptors of a new terminal.
#[derive(Debug, Serialize, Deserialize)]
pub struct TerminalFds {
    /// Input and window size (and output, unless relayed).
    #[serde(with = "fds::one")]
    pub master: OwnedFd,
    /// For a parked terminal: writing one byte lets the program exec; closing it unwritten
    /// makes the program exit instead.
    #[serde(with = "fds::option")]
    pub gate: Option<OwnedFd>,
    /// For a relayed terminal: the read end of the pipe the joiner copies the output into, in
    /// chunks of up to [`crate::consts::RELAY_CHUNK`] bytes; end of file once the program has
    /// exited.
    #[serde(with = "fds::option")]
    pub output: Option<OwnedFd>,
}

/// Keeper, init or joiner → spawner, during set-up.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromHelper {
    /// Keeper: it has unshared its user namespace; write its id maps ([`ToKeeper::IdMapsWritten`]).
    WantIdMaps,
    /// Keeper: init is forked (its host pid and pidfd).
    InitStarted {
        pid: i32,
        #[serde(with = "fds::one")]
        pidfd: OwnedFd,
    },
    /// Init: the session is set up; init now only reaps and forwards signals. `devpts` is an
    /// `O_PATH` descriptor of the root of the session's own devpts instance, taken before any of
    /// the session's code ran: joiners open new ptys relative to it (see `pty::open_in_session`)
    /// and never by a path the session controls.
    InitReady {
        #[serde(with = "fds::one")]
        devpts: OwnedFd,
    },
    /// Joiner: the terminal's program is forked; here are its descriptors.
    TerminalReady(TerminalFds),
    /// Any of them: set-up failed, and the helper exits.
    Failed { helper: Helper, message: String },
}

impl Message for FromHelper {
    fn kind(&self) -> &'static str {
        match self {
            FromHelper::WantIdMaps => "WantIdMaps",
            FromHelper::InitStarted { .. } => "InitStarted",
            FromHelper::InitReady { .. } => "InitReady",
            FromHelper::TerminalReady(_) => "TerminalReady",
            FromHelper::Failed { .. } => "Failed",
        }
    }
}

/// Spawner → keeper.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToKeeper {
    /// `setgroups`, `uid_map` and `gid_map` are written: the keeper may become root inside.
    IdMapsWritten,
}

impl Message for ToKeeper {
    fn kind(&self) -> &'static str {
        match self {
            ToKeeper::IdMapsWritten => "IdMapsWritten",
        }
    }
}

/// Spawner → joiner: nothing (the joiner only reports).
#[derive(Debug, Serialize, Deserialize)]
pub enum ToJoiner {}

impl Message for ToJoiner {
    fn kind(&self) -> &'static str {
        match *self {}
    }
}
