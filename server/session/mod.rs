//! Live sessions: who owns which sandbox, its terminals, its expiry, and the events that end
//! things. Knows nothing about HTTP; the web layer calls [`Manager`].

pub mod admission;
pub mod cast;
pub mod output;
pub mod pool;
mod reactor;
pub mod reserve;
pub mod terminal;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use serde::Serialize;

pub use admission::{Admission, Learner, Refusal, Requester};
use nsplay_sandbox::Event;
use nsplay_sandbox::Usage;
use nsplay_sandbox::{Limits, format_size};
use nsplay_sandbox::{Prepared, Sandbox, SandboxError, SandboxSession};
pub use terminal::{Output, Terminal, TerminalError};

/// Most terminals per session.
pub const MAX_TERMINALS: usize = 8;
/// Most terminals one session opens over its life. An ended terminal is freed at once (its two
/// server fds and its ring; only its index, exit code and recording stay, see
/// [`TerminalRef::Ended`]), so this bounds the tombstones and the spawner work one session can
/// ask for.
pub const MAX_TERMINALS_OPENED: u64 = 64;
/// Most bytes the recordings of a session's ended terminals keep together (each is at most
/// [`cast::CAST_BYTES`]); past it the oldest ended terminal's recording goes first.
pub const ENDED_CASTS_BYTES: usize = MAX_TERMINALS * cast::CAST_BYTES;
/// How long a closed terminal's program has to end after the hang-up before it is killed.
pub const HANGUP_GRACE: Duration = Duration::from_secs(2);
/// Terminals a session may open at once, and per minute after that.
pub const TERMINAL_BURST: u32 = 8;
pub const TERMINALS_PER_MINUTE: u32 = 30;
/// Host work for one session (the lessons' checks, which the host does outside the session's
/// cgroup): one at a time, at most this many at once and per minute after that, and a request
/// waits at most [`HOST_WORK_WAIT`] for the one running before it.
pub const HOST_WORK_BURST: u32 = 16;
pub const HOST_WORK_PER_MINUTE: u32 = 30;
pub const HOST_WORK_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no such session (it ended or never existed)")]
    NotFound,
    #[error("no such terminal in this session")]
    NoTerminal,
    #[error(
        "this terminal ended long ago and its recording was dropped to keep the newer ones (a session keeps {} KiB of its ended terminals' recordings); download a recording soon after its terminal ends",
        ENDED_CASTS_BYTES / 1024
    )]
    RecordingGone,
    /// In words: [`crate::text::render`] in the reader's language (English here, for logs).
    #[error("{}", crate::text::render("en", .0))]
    Refused(Refusal),
    #[error("a session has at most {MAX_TERMINALS} terminals")]
    TooManyTerminals,
    #[error("the terminal's program did not stop when the terminal was closed; end the session instead")]
    CloseFailed,
    #[error("this session has opened {MAX_TERMINALS_OPENED} terminals, the most one session may; start a new session")]
    TerminalBudgetSpent,
    #[error("terminals are being opened too quickly in this session; try again in {} s", .retry_after.as_secs().max(1))]
    TerminalRateLimited { retry_after: Duration },
    /// In words: `refused_check_busy` in `web/ui.toml` (English here, for logs).
    #[error("host work for this session (a check) is still running; try again in {} s", HOST_WORK_WAIT.as_secs())]
    HostWorkBusy,
    /// In words: `refused_check_rate` in `web/ui.toml`.
    #[error("host work (checks) is asked for too often in this session; try again in {} s", .retry_after.as_secs().max(1))]
    HostWorkRateLimited { retry_after: Duration },
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The node is draining (SIGTERM or the admin call): it takes no new sessions, another
    /// node may.
    #[error("this server is draining and takes no new sessions; another server can take you")]
    Draining,
    /// An undrain while the node stops (SIGTERM, or the shutdown): the process is going away.
    #[error("this server is stopping (SIGTERM or shutdown): its drain cannot be undone; start the node again instead")]
    Stopping,
    #[error("no session could be started within {} s; try again", START_TIMEOUT.as_secs())]
    StartTimeout,
    /// In words: `refused_unknown_image` in `web/ui.toml` (English here, for logs).
    #[error("there is no image `{0}` to start sessions on here")]
    UnknownImage(String),
    #[error(transparent)]
    Terminal(#[from] TerminalError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// Why a session ended (logged, and counted in metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// DELETE or the page's end button.
    Deleted,
    /// No input and no attached client for the idle timeout.
    Idle,
    /// Reached the maximum age.
    MaxAge,
    /// Every terminal's shell exited (after a short grace).
    Exited,
    /// The server is shutting down.
    Shutdown,
    /// The deadline of a drain asked for through the admin call passed.
    Drained,
    /// Set-up of its first terminal failed.
    Failed,
    /// It held more neighbour entries (or network namespaces) than the host allows
    /// ([`Manager::sweep_neighbours`]).
    NeighbourLimit,
    /// The host's file table was nearly full and it held the most open files
    /// ([`Manager::sweep_file_table`]).
    FileTable,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Deleted => "deleted",
            EndReason::Idle => "idle",
            EndReason::MaxAge => "max_age",
            EndReason::Exited => "exited",
            EndReason::Shutdown => "shutdown",
            EndReason::Drained => "drained",
            EndReason::Failed => "failed",
            EndReason::NeighbourLimit => "neighbour_limit",
            EndReason::FileTable => "file_table",
        }
    }
}

/// What a create call says about the image of its session.
#[derive(Debug, Clone, Default)]
pub struct ImageChoice {
    /// Asked for by name (the create API's `"image"`).
    pub requested: Option<String>,
    /// The lesson's `image`.
    pub lesson: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub limits: Limits,
    pub max_sessions: usize,
    /// Per learner, or per address for requests without a learner.
    pub max_sessions_per_client: usize,
    /// Per client address, every learner behind it together.
    pub max_sessions_per_address: usize,
    pub create_per_minute_per_address: u32,
    pub create_burst_per_address: u32,
    /// Refuse new sessions once all sessions together use this percent of their group's memory
    /// limit.
    pub admit_memory_percent: u8,
    /// Sessions kept built and ready (see [`pool`]).
    pub warm_pool: usize,
    pub create_per_minute: u32,
    pub create_burst: u32,
    pub max_age: Duration,
    pub idle_timeout: Duration,
    /// How long a session whose every terminal has ended is kept (a reconnecting page can still
    /// see the exit code and open a new terminal).
    pub grace: Duration,
    pub hostname: String,
    /// This node's name, the first part of every session id (`<node>.<random>`), which a proxy
    /// in front of many nodes routes by.
    pub node: String,
    /// Bytes per second all terminals together may print (shared fairly; 0: no limit). See
    /// [`output`].
    pub output_rate: u64,
    /// The image sessions start on unless asked otherwise (`None`: the host's `/usr`); its
    /// sessions are the ones the warm pool keeps ready.
    pub default_image: Option<String>,
    /// Every image this server may start sessions on (the default, the lessons', the allowed
    /// ones), read from the store at start.
    pub images: HashMap<String, nsplay_sandbox::ImageRoot>,
    /// Images a create call may ask for by name.
    pub images_allowed: Vec<String>,
    /// Sessions kept ready for each image other than the default (0: built when asked for).
    pub warm_pool_per_image: usize,
    /// How long a drain gives the sessions (SIGTERM's, and an admin call's unless it says).
    pub drain_timeout: Duration,
    /// Most neighbour (ARP/NDP) entries a session may hold in all its network namespaces
    /// together; past it the session is ended ([`Manager::sweep_neighbours`]).
    pub max_neighbours: usize,
    /// Percent of `fs.file-max` open host-wide past which the session holding the most files is
    /// ended ([`Manager::sweep_file_table`]).
    pub file_table_end_percent: u64,
}

/// How often the neighbour entries of every session are counted ([`Manager::sweep_neighbours`]).
pub const NEIGHBOUR_SWEEP: Duration = Duration::from_secs(3);

/// Longest a request waits for its session to be built.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long before the end of a drain the terminals are reminded.
pub const DRAIN_REMINDER: Duration = Duration::from_secs(10);

/// A drain under way (see [`Manager::begin_drain`]).
struct Drain {
    until: tokio::time::Instant,
    /// `until` on the wall clock (what learners and the admin call are told).
    deadline: SystemTime,
    /// Begun or joined by SIGTERM: the process stops after it, so it cannot be undone.
    stopping: bool,
    /// Stops its clock (an undrain, or a sooner SIGTERM drain replacing it).
    cancel: tokio_util::sync::CancellationToken,
}

/// What a drain call started or found.
#[derive(Debug, Clone, Copy)]
pub struct DrainStatus {
    /// This call began it (false: one was under way).
    pub begun: bool,
    /// When the sessions left end.
    pub deadline: SystemTime,
    until: tokio::time::Instant,
    /// Sessions live when asked.
    pub sessions: usize,
}

/// How long before the maximum age the terminals get a warning.
pub const MAX_AGE_WARNING: Duration = Duration::from_secs(5 * 60);

pub struct Session {
    pub id: String,
    /// What the session was started for, as the caller named it (the web layer's lesson
    /// topic); opaque here, shown in logs and the API.
    pub label: Option<String>,
    pub created_at: SystemTime,
    pub expires_at: SystemTime,
    pub sandbox: SandboxSession,
    /// The address that created it (for the per-address cap and the logs).
    pub client: IpAddr,
    /// The learner who created it, when the request carried an identity (for the per-learner
    /// cap, and to find a learner's session again).
    pub learner: Option<Learner>,
    created: Instant,
    warned: AtomicBool,
    all_ended_since: Mutex<Option<Instant>>,
    /// Live terminals, and those whose program exited until every client has its exit code.
    terminals: Mutex<Vec<Arc<Terminal>>>,
    /// Terminals that ended and were freed: index → exit code and when (for the idle clock).
    ended: Mutex<std::collections::BTreeMap<u64, (i32, Instant)>>,
    /// The recordings of ended terminals, oldest first, at most [`ENDED_CASTS_BYTES`] together
    /// (kept under the `terminals` lock, with `ended`).
    ended_casts: Mutex<std::collections::VecDeque<(u64, cast::Recording)>>,
    /// Terminals opened so far (the next one's index; bounded by [`MAX_TERMINALS_OPENED`]).
    opened: std::sync::atomic::AtomicU64,
    /// How fast new terminals may be opened ([`TERMINAL_BURST`], [`TERMINALS_PER_MINUTE`]).
    terminal_rate: governor::DefaultDirectRateLimiter,
    /// One piece of host work at a time ([`Session::host_work`]).
    host_work: Arc<tokio::sync::Semaphore>,
    host_work_rate: governor::DefaultDirectRateLimiter,
    last_usage: Mutex<Usage>,
    /// Facts the layers above record about the session (the lessons' passed checks); opaque
    /// here, gone with the session.
    marks: Mutex<std::collections::BTreeSet<String>>,
    /// Recent limit events (the inspector lists them).
    events: Mutex<std::collections::VecDeque<LimitEvent>>,
    /// A reset is running (one at a time per session: each is bounded host work).
    resetting: AtomicBool,
}

/// What a session tells the person at its terminals. Typed, so that each reader gets it in
/// their own language ([`crate::text`], `notice_*` and `event_*` in `web/ui.toml`).
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The session reached its maximum age and ends now.
    MaxAgeReached,
    /// The session ends at its maximum age in about this many minutes.
    MaxAgeSoon { minutes: u64 },
    /// The server is shutting down and ends every session.
    ShuttingDown,
    /// The server is draining: the session ends in `seconds`, at `at` (a UTC clock time).
    Draining { seconds: u64, at: String },
    /// The drain was called off (the admin call): the session goes on.
    DrainCancelled,
    /// The drain's deadline passed: the session ends now.
    Drained,
    /// The kernel killed a process at the memory limit (the limit in words, e.g. "256 MiB").
    MemoryKill { limit: String },
    /// The kernel killed a process at the smaller memory limit of a child cgroup the learner
    /// made (that limit in words).
    ChildMemoryKill { limit: String },
    /// A fork was refused at the pids limit.
    PidsLimit { max: u64 },
    /// The session held more than `max` neighbour entries and was ended.
    NeighbourLimit { max: usize },
    /// The session held more than `max` network namespaces and was ended.
    NetnsLimit { max: usize },
    /// The host's file table was `percent` full and the session, holding the most (`files`),
    /// was ended.
    FileTable { files: usize, percent: u64 },
}

impl crate::text::Message for Notice {
    fn key(&self) -> &'static str {
        match self {
            Notice::MaxAgeReached => "notice_max_age_reached",
            Notice::MaxAgeSoon { .. } => "notice_max_age_soon",
            Notice::ShuttingDown => "notice_shutdown",
            Notice::Draining { .. } => "notice_draining",
            Notice::DrainCancelled => "notice_drain_cancelled",
            Notice::Drained => "notice_drained",
            Notice::MemoryKill { .. } => "event_memory_kill",
            Notice::ChildMemoryKill { .. } => "event_child_memory_kill",
            Notice::PidsLimit { .. } => "event_pids_limit",
            Notice::NeighbourLimit { .. } => "notice_neighbour_limit",
            Notice::NetnsLimit { .. } => "notice_netns_limit",
            Notice::FileTable { .. } => "notice_file_table",
        }
    }

    fn args(&self) -> Vec<(&'static str, String)> {
        match self {
            Notice::MaxAgeReached | Notice::ShuttingDown | Notice::DrainCancelled | Notice::Drained => Vec::new(),
            Notice::MaxAgeSoon { minutes } => vec![("minutes", minutes.to_string())],
            Notice::Draining { seconds, at } => vec![("seconds", seconds.to_string()), ("at", at.clone())],
            Notice::MemoryKill { limit } | Notice::ChildMemoryKill { limit } => vec![("limit", limit.clone())],
            Notice::PidsLimit { max } => vec![("max", max.to_string())],
            Notice::NeighbourLimit { max } | Notice::NetnsLimit { max } => vec![("max", max.to_string())],
            Notice::FileTable { files, percent } => {
                vec![("files", files.to_string()), ("percent", percent.to_string())]
            }
        }
    }
}

/// A limit that bit, and when.
#[derive(Debug, Clone)]
pub struct LimitEvent {
    pub at: SystemTime,
    pub notice: Notice,
}

/// Limit events kept per session.
const MAX_EVENTS: usize = 20;

/// A terminal of a session as a client finds it.
pub enum TerminalRef {
    Live(Arc<Terminal>),
    /// It ended and was freed; only its exit code (and, for a while, its recording) is kept.
    Ended(i32),
}

impl Session {
    /// A terminal still held (running, or ended with a client still being told).
    pub fn terminal(&self, n: u64) -> Option<Arc<Terminal>> {
        self.terminals.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|t| t.index == n).cloned()
    }

    /// A terminal, or the exit code of one that ended and was freed.
    pub fn terminal_ref(&self, n: u64) -> Option<TerminalRef> {
        let terms = self.terminals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = terms.iter().find(|t| t.index == n) {
            return Some(TerminalRef::Live(t.clone()));
        }
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).get(&n).map(|(code, _)| TerminalRef::Ended(*code))
    }

    /// A terminal's recording as an asciicast v2 file: a live terminal's, or the one an ended
    /// terminal left (kept while the session lives, within [`ENDED_CASTS_BYTES`]).
    pub fn asciicast(&self, n: u64, title: &str) -> Result<String, SessionError> {
        let recording = {
            let terms = self.terminals.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = terms.iter().find(|t| t.index == n) {
                t.recording()
            } else if let Some((_, r)) =
                self.ended_casts.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(i, _)| *i == n)
            {
                r.clone()
            } else if self.ended.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&n) {
                return Err(SessionError::RecordingGone);
            } else {
                return Err(SessionError::NoTerminal);
            }
        };
        // Rendered outside the locks (the chunks are shared, not copied).
        Ok(recording.asciicast(title))
    }

    /// Holds a new terminal, and frees it once its program has exited and its clients have the
    /// exit code: its descriptors and ring must not wait for the session's end (its recording,
    /// which holds no descriptor, stays).
    fn adopt(self: &Arc<Self>, term: Arc<Terminal>) {
        self.terminals.lock().unwrap_or_else(|e| e.into_inner()).push(term.clone());
        let session = Arc::downgrade(self);
        tokio::spawn(async move {
            term.finished().await;
            let (index, code, recording) = (term.index, term.exit_code().unwrap_or(-1), term.recording());
            drop(term);
            if let Some(s) = session.upgrade() {
                s.bury(index, code, recording);
            }
        });
    }

    fn bury(&self, index: u64, code: i32, recording: cast::Recording) {
        let mut terms = self.terminals.lock().unwrap_or_else(|e| e.into_inner());
        terms.retain(|t| t.index != index);
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).insert(index, (code, Instant::now()));
        let mut casts = self.ended_casts.lock().unwrap_or_else(|e| e.into_inner());
        casts.push_back((index, recording));
        let mut kept: usize = casts.iter().map(|(_, r)| r.cost()).sum();
        while kept > ENDED_CASTS_BYTES {
            let Some((_, old)) = casts.pop_front() else { break };
            kept -= old.cost();
        }
    }

    /// Whether the session had terminals and every one has ended.
    fn all_ended(&self) -> bool {
        let terms = self.terminals.lock().unwrap_or_else(|e| e.into_inner());
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        (!terms.is_empty() || !ended.is_empty()) && terms.iter().all(|t| t.exit_code().is_some())
    }

    /// The numbers of the terminals whose program still runs, in order (a page reopens their tabs).
    pub fn live_terminals(&self) -> Vec<u64> {
        let terms = self.terminals.lock().unwrap_or_else(|e| e.into_inner());
        let mut live: Vec<u64> = terms.iter().filter(|t| t.exit_code().is_none()).map(|t| t.index).collect();
        live.sort_unstable();
        live
    }

    /// The first terminal whose program still runs (the one a page attaches to).
    pub fn live_terminal(&self) -> Option<Arc<Terminal>> {
        self.terminals.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|t| t.exit_code().is_none()).cloned()
    }

    fn requester(&self) -> Requester {
        Requester { address: self.client, learner: self.learner }
    }

    /// The last moment someone typed, attached or detached (for the idle timeout), or `None`
    /// while a client is attached.
    fn idle_since(&self) -> Option<Instant> {
        let terms = self.terminals.lock().unwrap_or_else(|e| e.into_inner());
        if terms.iter().any(|t| t.clients() > 0) {
            return None;
        }
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        let last_end = ended.values().map(|(_, at)| *at).max();
        terms
            .iter()
            .map(|t| *t.last_active.lock().unwrap_or_else(|e| e.into_inner()))
            .chain(last_end)
            .max()
            .or(Some(self.created))
    }

    pub fn events(&self) -> Vec<LimitEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// Records a limit event and tells every attached terminal.
    fn limit_event(&self, notice: Notice) {
        self.notice_all(&notice);
        let mut ev = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if ev.len() == MAX_EVENTS {
            ev.pop_front();
        }
        ev.push_back(LimitEvent { at: SystemTime::now(), notice });
    }

    fn notice_all(&self, notice: &Notice) {
        for t in self.terminals.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            t.notice(notice);
        }
    }

    /// Leave to do work on the host for this session (a check): held until dropped, one at a
    /// time per session (waiting at most [`HOST_WORK_WAIT`] for the one before), and rate
    /// limited ([`HOST_WORK_BURST`], [`HOST_WORK_PER_MINUTE`]).
    pub async fn host_work(&self) -> Result<tokio::sync::OwnedSemaphorePermit, SessionError> {
        let permit = tokio::time::timeout(HOST_WORK_WAIT, self.host_work.clone().acquire_owned())
            .await
            .map_err(|_| SessionError::HostWorkBusy)?
            .map_err(|_| SessionError::ShuttingDown)?;
        if let Err(not_until) = self.host_work_rate.check() {
            use governor::clock::{Clock, DefaultClock};
            let retry_after = not_until.wait_time_from(DefaultClock::default().now());
            return Err(SessionError::HostWorkRateLimited { retry_after });
        }
        Ok(permit)
    }

    /// Records a fact about the session for the layers above (see `marks`).
    /// When someone last typed into any of the session's terminals (a classroom's "stuck").
    pub fn last_input(&self) -> Instant {
        let terms = self.terminals.lock().unwrap_or_else(|e| e.into_inner());
        terms.iter().map(|t| t.last_input()).max().unwrap_or(self.created)
    }

    pub fn mark(&self, fact: &str) {
        self.marks.lock().unwrap_or_else(|e| e.into_inner()).insert(fact.to_string());
    }

    pub fn marks(&self) -> std::collections::BTreeSet<String> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How many of `sessions` carry each mark that starts with `prefix`, in one pass: the one
/// definition of, say, a room's learners seated on this node (every session a room hands out
/// carries its room's mark), for the instructor's "prepare" and the rooms' sweep alike.
pub fn count_marks(sessions: &[Arc<Session>], prefix: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for s in sessions {
        for mark in s.marks().into_iter().filter(|m| m.starts_with(prefix)) {
            *counts.entry(mark).or_default() += 1;
        }
    }
    counts
}

/// A session as the host sees it (see [`Manager::host_view`]).
#[derive(Debug, Clone)]
pub struct HostView {
    /// Host pid of the session's init.
    pub init_pid: i32,
    /// Host pids of the processes inside the session's PID namespace.
    pub pids: Vec<i32>,
    pub hostname: String,
    /// Host uid that is root inside.
    pub uid_base: u32,
    pub usage: Usage,
    /// The session's cgroup directory (v2) or its memory-controller directory (v1).
    pub cgroup_dir: std::path::PathBuf,
    /// The `cgroup.procs` files of the session's relay group (host-owned, beside the session's
    /// group, bounded like it): the programs a check runs for the session go there, so the
    /// session's own quota pays for the host's work on its behalf.
    pub charge_to: Vec<std::path::PathBuf>,
}

/// The kernel's view of a session that `GET /api/sessions/<id>` shows.
#[derive(Debug, Clone, Default)]
pub struct Details {
    pub usage: Usage,
    pub namespaces: std::collections::BTreeMap<&'static str, NsPair>,
    /// Namespaces created inside the session: (kind, inode, host pid).
    pub nested: Vec<(&'static str, u64, i32)>,
}

/// Namespace identities of a session next to the host's (what the API and inspector show).
#[derive(Debug, Clone, Serialize)]
pub struct NsPair {
    pub session: u64,
    pub host: u64,
}

pub struct Manager {
    sandbox: Sandbox,
    cfg: ManagerConfig,
    admission: Admission,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    by_key: Mutex<HashMap<u64, Arc<Session>>>,
    shutting_down: std::sync::atomic::AtomicBool,
    /// Set at the start of a drain: no new sessions, `/readyz` answers 503.
    draining: AtomicBool,
    /// The drain under way, if any (`draining` is set with it, under this lock).
    drain_state: Mutex<Option<Drain>>,
    pool: Arc<pool::Pool<Manager>>,
    /// A smaller warm pool per image other than the default (`warm_pool_per_image` each).
    image_pools: HashMap<String, Arc<pool::Pool<OnImage>>>,
    /// Sandboxes that exist: live sessions, ready ones in the pool, the one being built, and
    /// those being handed over. At most `max_sessions`.
    existing: AtomicUsize,
    /// Requesters of admitted requests whose session is not live yet (admission counts them,
    /// so a burst cannot overshoot the caps).
    pending: Mutex<Vec<Requester>>,
    /// Each learner's live sessions, oldest first. Bounded: an entry exists only while its
    /// learner has a live session (at most `max_sessions` entries), and admission holds each to
    /// `max_sessions_per_client` sessions.
    by_learner: Mutex<HashMap<Learner, Vec<Arc<Session>>>>,
    /// What every terminal's output draws from.
    output: Arc<output::Budget>,
    /// Sandboxes whose teardown failed (still counted in `existing`): the tick tries again,
    /// and so does the shutdown, so a teardown that met a busy kernel is not left for good.
    leftovers: Mutex<Vec<Leftover>>,
    /// Sessions built ahead for named groups (classroom rooms), by key ([`reserve`]).
    reserves: Mutex<HashMap<String, reserve::Reserve>>,
}

/// Where a session for a group of requests (a classroom room) comes from and what it may use:
/// its [`reserve`] first, else the warm pool's, tightened to `limits` before its shell runs.
#[derive(Debug, Clone)]
pub struct Within {
    pub reserve: String,
    /// Tighten the server's limits to these (never raised: [`Limits::tightened`]).
    pub limits: Limits,
}

/// A sandbox whose teardown failed, kept to be torn down again.
enum Leftover {
    Session(Arc<Session>),
    Pooled(Prepared),
}

impl Leftover {
    fn sandbox(&self) -> &SandboxSession {
        match self {
            Leftover::Session(s) => &s.sandbox,
            Leftover::Pooled(p) => &p.session,
        }
    }
}

/// Most leftovers one tick tries again (each try may wait seconds for the kernel).
const LEFTOVER_RETRIES_PER_TICK: usize = 4;

/// Counts an admitted request as pending until it is dropped.
struct PendingGuard<'a> {
    manager: &'a Manager,
    who: Requester,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let mut p = self.manager.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = p.iter().position(|c| *c == self.who) {
            p.swap_remove(i);
        }
    }
}

/// The warm pool builds prepared sandboxes through the manager, which keeps the count of
/// sandboxes under `max_sessions`.
impl pool::Builder for Manager {
    type Item = Prepared;
    type Error = SandboxError;

    fn has_room(&self) -> bool {
        self.existing.load(Ordering::SeqCst) < self.cfg.max_sessions
    }

    fn build(&self) -> Result<Prepared, SandboxError> {
        let image = self.cfg.default_image.as_ref().and_then(|n| self.cfg.images.get(n));
        self.build_image(image)
    }

    fn is_alive(&self, p: &Prepared) -> bool {
        p.is_alive()
    }

    fn discard(&self, p: Prepared) {
        self.discard_prepared(p)
    }
}

/// The builder of one image's warm pool (an image other than the default): the manager's
/// bookkeeping, that image's root.
pub struct OnImage {
    manager: Arc<Manager>,
    image: nsplay_sandbox::ImageRoot,
}

impl pool::Builder for OnImage {
    type Item = Prepared;
    type Error = SandboxError;

    fn has_room(&self) -> bool {
        pool::Builder::has_room(&*self.manager)
    }

    fn build(&self) -> Result<Prepared, SandboxError> {
        self.manager.build_image(Some(&self.image))
    }

    fn is_alive(&self, p: &Prepared) -> bool {
        p.is_alive()
    }

    fn discard(&self, p: Prepared) {
        self.manager.discard_prepared(p)
    }
}

/// The first characters of an id's random part: enough to follow a session in the logs (which
/// name the node anyway), useless to take it over.
pub fn short(id: &str) -> &str {
    let random = id.split_once('.').map_or(id, |(_, r)| r);
    &random[..random.len().min(6)]
}

/// `<node>.<22 base64url characters>`: the node name first, so that a proxy's plain prefix rule
/// sends every request of the session to its node. The dot cannot occur in either part (a node
/// name is a DNS label, base64url has no dot), so `node-a.` never matches a session of `node-a-b`.
fn new_id(node: &str) -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    format!("{node}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A UTC clock time for a notice ("14:05:30 UTC").
fn utc_clock(t: SystemTime) -> String {
    let f = time::macros::format_description!("[hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from(t).format(f).unwrap_or_default()
}

fn terminal_rate() -> governor::DefaultDirectRateLimiter {
    let per_minute = std::num::NonZeroU32::new(TERMINALS_PER_MINUTE).expect("not zero");
    let burst = std::num::NonZeroU32::new(TERMINAL_BURST).expect("not zero");
    governor::RateLimiter::direct(governor::Quota::per_minute(per_minute).allow_burst(burst))
}

/// Wraps a new terminal's descriptors in a [`Terminal`] (80×24, as the spawner opened it).
fn host_work_rate() -> governor::DefaultDirectRateLimiter {
    let per_minute = std::num::NonZeroU32::new(HOST_WORK_PER_MINUTE).expect("nonzero");
    let burst = std::num::NonZeroU32::new(HOST_WORK_BURST).expect("nonzero");
    governor::RateLimiter::direct(governor::Quota::per_minute(per_minute).allow_burst(burst))
}

fn start_terminal(
    index: u64,
    handle: nsplay_sandbox::TerminalHandle,
    pace: output::Pace,
) -> Result<Arc<Terminal>, SandboxError> {
    let term = Terminal::start(index, handle.master, handle.output, 80, 24, Some(pace))
        .map_err(|e| SandboxError::Spawn(nsplay_sandbox::SpawnError::Terminal(e)))?;
    term.set_joiner(handle.pid);
    Ok(term)
}

impl Manager {
    /// Creates the manager and starts filling its warm pool (needs a tokio runtime).
    pub fn new(sandbox: Sandbox, cfg: ManagerConfig) -> Arc<Manager> {
        let m = Arc::new(Manager {
            sandbox,
            admission: Admission::new(admission::Rules {
                max_sessions: cfg.max_sessions,
                per_client: cfg.max_sessions_per_client,
                per_minute: cfg.create_per_minute,
                burst: cfg.create_burst,
                per_address: cfg.max_sessions_per_address,
                address_per_minute: cfg.create_per_minute_per_address,
                address_burst: cfg.create_burst_per_address,
                memory_percent: cfg.admit_memory_percent,
            }),
            pool: pool::Pool::new(cfg.warm_pool),
            output: output::Budget::new(cfg.output_rate),
            image_pools: cfg
                .images
                .keys()
                .filter(|n| Some(*n) != cfg.default_image.as_ref() && cfg.warm_pool_per_image > 0)
                .map(|n| (n.clone(), pool::Pool::new(cfg.warm_pool_per_image)))
                .collect(),
            cfg,
            sessions: Mutex::default(),
            by_key: Mutex::default(),
            shutting_down: false.into(),
            draining: false.into(),
            drain_state: Mutex::default(),
            existing: AtomicUsize::new(0),
            leftovers: Mutex::default(),
            pending: Mutex::default(),
            by_learner: Mutex::default(),
            reserves: Mutex::default(),
        });
        tokio::spawn(m.pool.clone().run(m.clone()));
        for (name, p) in &m.image_pools {
            let image = m.cfg.images[name].clone();
            tokio::spawn(p.clone().run(Arc::new(OnImage { manager: m.clone(), image })));
        }
        m
    }

    /// Builds one prepared session (blocking), counted in `max_sessions` while it exists.
    fn build_image(&self, image: Option<&nsplay_sandbox::ImageRoot>) -> Result<Prepared, SandboxError> {
        self.existing.fetch_add(1, Ordering::SeqCst);
        let r = self.sandbox.prepare_on(&self.cfg.hostname, &self.cfg.limits, image);
        if r.is_err() {
            self.existing.fetch_sub(1, Ordering::SeqCst);
        }
        r
    }

    fn discard_prepared(&self, p: Prepared) {
        let r = self.sandbox.destroy(&p.session);
        if let Err(e) = &r {
            tracing::error!(cgroup = %p.session.name, error = %e, "a pooled session could not be removed completely; trying again later");
        }
        self.release(r.is_ok());
        if r.is_err() {
            self.leftovers.lock().unwrap_or_else(|e| e.into_inner()).push(Leftover::Pooled(p));
        }
    }

    /// Counts a sandbox as gone once its teardown succeeded (one that failed keeps its id
    /// range and stays counted), and lets the pool use the room.
    fn release(&self, destroyed: bool) {
        if destroyed {
            self.existing.fetch_sub(1, Ordering::SeqCst);
        }
        self.pool.poke();
        for p in self.image_pools.values() {
            p.poke();
        }
    }

    /// The host's cgroup hierarchy (the lessons adapt to it).
    pub fn cgroup_version(&self) -> nsplay_sandbox::Version {
        self.sandbox.cgroup_version()
    }

    /// Tears down again up to `most` sandboxes whose teardown failed; returns how many are
    /// still left.
    async fn retry_leftovers(self: &Arc<Self>, most: usize) -> usize {
        let batch: Vec<Leftover> = {
            let mut l = self.leftovers.lock().unwrap_or_else(|e| e.into_inner());
            let n = l.len().min(most);
            l.drain(..n).collect()
        };
        if !batch.is_empty() {
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for left in batch {
                    match this.sandbox.destroy(left.sandbox()) {
                        Ok(()) => {
                            tracing::info!(cgroup = %left.sandbox().name, "removed a sandbox whose teardown had failed");
                            this.release(true);
                        }
                        Err(e) => {
                            tracing::warn!(cgroup = %left.sandbox().name, error = %e, "a sandbox still could not be removed");
                            this.leftovers.lock().unwrap_or_else(|e| e.into_inner()).push(left);
                        }
                    }
                }
            })
            .await;
        }
        self.leftovers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Sandboxes that exist now: live sessions, the warm pools' and those being built (a
    /// clean stop leaves none).
    pub fn sandboxes(&self) -> usize {
        self.existing.load(Ordering::SeqCst)
    }

    pub fn live(&self) -> usize {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Every live session (the classroom's sweep reports on its learners').
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// How many live sessions carry each mark that starts with `prefix` ([`count_marks`]).
    pub fn marked(&self, prefix: &str) -> HashMap<String, usize> {
        count_marks(&self.sessions(), prefix)
    }

    pub fn get(&self, id: &str) -> Result<Arc<Session>, SessionError> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned().ok_or(SessionError::NotFound)
    }

    /// A learner's live sessions, oldest first (at most `max_sessions_per_client`).
    pub fn learner_sessions(&self, learner: Learner) -> Vec<Arc<Session>> {
        self.by_learner.lock().unwrap_or_else(|e| e.into_inner()).get(&learner).cloned().unwrap_or_default()
    }

    /// Creates a session with its first terminal (index 0) for `who`; `label` says what for
    /// (see [`Session::label`]).
    pub async fn create(self: &Arc<Self>, label: Option<String>, who: Requester) -> Result<Arc<Session>, SessionError> {
        self.create_on(label, ImageChoice::default(), who).await
    }

    /// [`Manager::create`] for a group ([`Within`]): a session of its reserve if one is ready,
    /// else the warm pool's with its cgroup limits tightened to the group's before the shell
    /// runs. Admission is the same as for any session.
    pub async fn create_within(
        self: &Arc<Self>,
        label: Option<String>,
        choice: ImageChoice,
        who: Requester,
        within: Within,
    ) -> Result<Arc<Session>, SessionError> {
        self.create_full(label, choice, who, Some(within)).await
    }

    /// Which image a create call gets: the one it asks for (only an allowed one, or the
    /// default), else its lesson's, else the default; `None` is the host's `/usr`.
    pub(super) fn pick_image(&self, choice: &ImageChoice) -> Result<Option<String>, SessionError> {
        if let Some(asked) = &choice.requested {
            let ok = self.cfg.default_image.as_ref() == Some(asked) || self.cfg.images_allowed.contains(asked);
            if !ok || !self.cfg.images.contains_key(asked) {
                return Err(SessionError::UnknownImage(asked.clone()));
            }
            return Ok(Some(asked.clone()));
        }
        if let Some(lesson) = &choice.lesson {
            if !self.cfg.images.contains_key(lesson) {
                return Err(SessionError::UnknownImage(lesson.clone()));
            }
            return Ok(Some(lesson.clone()));
        }
        Ok(self.cfg.default_image.clone())
    }

    /// Builds a session on an image the warm pool does not keep (cold: the whole build runs
    /// now, counted in `max_sessions` like the pool's).
    async fn build_on(self: &Arc<Self>, image: nsplay_sandbox::ImageRoot) -> Result<Prepared, SessionError> {
        use pool::Builder as _;
        if !self.has_room() {
            return Err(SessionError::StartTimeout);
        }
        self.existing.fetch_add(1, Ordering::SeqCst);
        let m = self.clone();
        let r = tokio::task::spawn_blocking(move || m.sandbox.prepare_on(&m.cfg.hostname, &m.cfg.limits, Some(&image)))
            .await
            .unwrap_or_else(|e| Err(SandboxError::Spawn(nsplay_sandbox::SpawnError::Protocol(e.to_string()))));
        if r.is_err() {
            self.existing.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(r?)
    }

    /// [`Manager::create`] on the image `choice` picks (see [`Manager::pick_image`]); an
    /// unknown or not allowed image is refused before anything starts.
    pub async fn create_on(
        self: &Arc<Self>,
        label: Option<String>,
        choice: ImageChoice,
        who: Requester,
    ) -> Result<Arc<Session>, SessionError> {
        self.create_full(label, choice, who, None).await
    }

    async fn create_full(
        self: &Arc<Self>,
        label: Option<String>,
        choice: ImageChoice,
        who: Requester,
        within: Option<Within>,
    ) -> Result<Arc<Session>, SessionError> {
        let image = self.pick_image(&choice)?;
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(SessionError::ShuttingDown);
        }
        if self.draining.load(Ordering::Relaxed) {
            metrics::counter!("nsplay_refusals_total", "reason" => "draining").increment(1);
            return Err(SessionError::Draining);
        }
        let started = Instant::now();
        // A few small file reads, outside the lock.
        let memory = self.sandbox.sessions_memory();
        let files = admission::HostFiles::read();
        let _pending = {
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let all = || sessions.values().map(|s| s.requester()).chain(pending.iter().copied());
            let counts = admission::Counts {
                live: sessions.len() + pending.len(),
                mine: all().filter(|r| r.same(&who)).count(),
                address: all().filter(|r| r.address == who.address).count(),
            };
            if let Err(r) = self.admission.admit(&who, counts, memory, files) {
                metrics::counter!("nsplay_refusals_total", "reason" => r.reason()).increment(1);
                if let Refusal::Memory { .. } = r {
                    tracing::warn!(
                        used_bytes = memory.used_bytes,
                        limit_bytes = memory.limit_bytes,
                        "refusing a new session: the sessions' group is near its memory limit"
                    );
                }
                return Err(SessionError::Refused(r));
            }
            pending.push(who);
            PendingGuard { manager: self, who }
        };
        // The group's own reserve first (built with its limits, on the image its requests get).
        let reserved = within.as_ref().and_then(|w| self.take_reserved(&w.reserve, &image));
        let mut prepared = match (reserved, image.filter(|i| Some(i) != self.cfg.default_image.as_ref())) {
            (Some(p), _) => p,
            (None, Some(name)) => {
                let root =
                    self.cfg.images.get(&name).cloned().ok_or_else(|| SessionError::UnknownImage(name.clone()))?;
                let built = match self.image_pools.get(&name) {
                    Some(p) => {
                        let builder = OnImage { manager: self.clone(), image: root };
                        match tokio::time::timeout(START_TIMEOUT, p.take(&builder)).await {
                            Ok(Ok(p)) => Ok(p),
                            Ok(Err(pool::TakeError::Build(e))) => Err(e.into()),
                            Ok(Err(pool::TakeError::Closed)) => Err(SessionError::ShuttingDown),
                            Err(_) => Err(SessionError::StartTimeout),
                        }
                    }
                    None => match tokio::time::timeout(START_TIMEOUT, self.build_on(root)).await {
                        Ok(r) => r,
                        Err(_) => Err(SessionError::StartTimeout),
                    },
                };
                built?
            }
            (None, None) => self.take_pooled().await?,
        };
        // A group's limits on whatever it got (a pooled session or one on its lesson's image).
        // Nothing awaits between the take and the registration (a dropped request cannot lose
        // the sandbox): a few cgroup files, written here.
        if let Some(w) = &within
            && let Err(e) = self.sandbox.tighten(&mut prepared.session, &w.limits)
        {
            tracing::error!(cgroup = %prepared.session.name, error = %e, "cannot apply a room's limits");
            let m = self.clone();
            tokio::task::spawn_blocking(move || m.discard_prepared(prepared));
            return Err(e.into());
        }
        self.register(label, who, prepared, started).await
    }

    async fn take_pooled(self: &Arc<Self>) -> Result<Prepared, SessionError> {
        Ok(match tokio::time::timeout(START_TIMEOUT, self.pool.take(self)).await {
            Ok(Ok(p)) => p,
            Ok(Err(pool::TakeError::Build(e))) => return Err(e.into()),
            Ok(Err(pool::TakeError::Closed)) => return Err(SessionError::ShuttingDown),
            Err(_) => return Err(SessionError::StartTimeout),
        })
    }

    async fn register(
        self: &Arc<Self>,
        label: Option<String>,
        who: Requester,
        prepared: Prepared,
        started: Instant,
    ) -> Result<Arc<Session>, SessionError> {
        // From here on nothing awaits until the session is registered: a request dropped
        // half-way cannot lose the sandbox.
        let (sb, handle, gate) = prepared.split();
        let now = SystemTime::now();
        let session = Arc::new(Session {
            id: new_id(&self.cfg.node),
            label,
            created_at: now,
            expires_at: now + self.cfg.max_age,
            sandbox: sb,
            client: who.address,
            learner: who.learner,
            created: Instant::now(),
            warned: AtomicBool::new(false),
            all_ended_since: Mutex::default(),
            terminals: Mutex::default(),
            ended: Mutex::default(),
            ended_casts: Mutex::default(),
            opened: 1.into(),
            terminal_rate: terminal_rate(),
            host_work: Arc::new(tokio::sync::Semaphore::new(1)),
            host_work_rate: host_work_rate(),
            last_usage: Mutex::default(),
            marks: Mutex::default(),
            events: Mutex::default(),
            resetting: AtomicBool::new(false),
        });
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(session.id.clone(), session.clone());
        self.by_key.lock().unwrap_or_else(|e| e.into_inner()).insert(session.sandbox.key, session.clone());
        if let Some(l) = who.learner {
            self.by_learner.lock().unwrap_or_else(|e| e.into_inner()).entry(l).or_default().push(session.clone());
        }
        // The terminal exists before its shell runs, so not even the shell's first byte or its
        // exit can be missed.
        let started_shell = start_terminal(0, handle, self.output.pace()).and_then(|term| {
            session.adopt(term);
            gate.open()
        });
        if let Err(e) = started_shell {
            self.end(&session.id, EndReason::Failed).await.ok();
            return Err(e.into());
        }
        // A shutdown that began while this one was built may have listed the sessions
        // already: it waits for this request (still pending), and this session ends itself.
        if self.shutting_down.load(Ordering::SeqCst) {
            self.end(&session.id, EndReason::Shutdown).await.ok();
            return Err(SessionError::ShuttingDown);
        }
        // A drain (the admin call) that began while this one was built — its create was past
        // the draining check — and whose deadline has passed has ended the sessions it found;
        // this one ends as they did. (One that still runs reaches it with its reminder; a
        // SIGTERM's drain ends in the shutdown above.)
        let passed = self
            .drain_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|d| !d.stopping && d.until <= tokio::time::Instant::now());
        if passed {
            self.end(&session.id, EndReason::Drained).await.ok();
            return Err(SessionError::Draining);
        }
        metrics::counter!("nsplay_sessions_created_total").increment(1);
        metrics::histogram!("nsplay_spawn_seconds").record(started.elapsed().as_secs_f64());
        metrics::gauge!("nsplay_sessions_live").set(self.live() as f64);
        tracing::info!(
            session = short(&session.id),
            client = %who.address,
            learner = who.learner.is_some(),
            label = session.label.as_deref().unwrap_or("-"),
            cgroup = %session.sandbox.name,
            spawn_ms = started.elapsed().as_millis() as u64,
            "session started"
        );
        Ok(session)
    }

    /// Starts another shell in every namespace and the cgroup of the session.
    pub async fn open_terminal(self: &Arc<Self>, session: &Arc<Session>) -> Result<Arc<Terminal>, SessionError> {
        let index = {
            let terms = session.terminals.lock().unwrap_or_else(|e| e.into_inner());
            if terms.iter().filter(|t| t.exit_code().is_none()).count() >= MAX_TERMINALS {
                return Err(SessionError::TooManyTerminals);
            }
            if session.opened.load(Ordering::SeqCst) >= MAX_TERMINALS_OPENED {
                return Err(SessionError::TerminalBudgetSpent);
            }
            if let Err(not_until) = session.terminal_rate.check() {
                use governor::clock::{Clock, DefaultClock};
                let retry_after = not_until.wait_time_from(DefaultClock::default().now());
                return Err(SessionError::TerminalRateLimited { retry_after });
            }
            // Taken under the lock: two requests at once get two indices.
            session.opened.fetch_add(1, Ordering::SeqCst)
        };
        let this = self.clone();
        let s = session.clone();
        let handle = tokio::task::spawn_blocking(move || {
            this.sandbox.open_terminal(&s.sandbox, index, Vec::new(), (80, 24), true)
        })
        .await
        .map_err(|_| SessionError::ShuttingDown)??;
        let term = start_terminal(index, handle, self.output.pace())?;
        session.adopt(term.clone());
        Ok(term)
    }

    /// Closes terminal `n` of the session as closing a terminal window does: the pty is hung up,
    /// so its shell and foreground job get SIGHUP; a program still running [`HANGUP_GRACE`] later
    /// (one that ignores the hang-up) is killed. Returns once the terminal has ended (an ended
    /// one at once). What the shell left running in the background lives on, as after `exit`;
    /// closing the session's last terminal ends the session as `exit` there does.
    pub async fn close_terminal(self: &Arc<Self>, session: &Arc<Session>, n: u64) -> Result<(), SessionError> {
        let term = match session.terminal_ref(n).ok_or(SessionError::NoTerminal)? {
            TerminalRef::Ended(_) => return Ok(()),
            TerminalRef::Live(t) => t,
        };
        if term.exit_code().is_some() {
            return Ok(());
        }
        if let Err(e) = term.hang_up() {
            tracing::warn!(session = short(&session.id), terminal = n, error = %e, "hang-up failed; killing the terminal's program");
        } else if tokio::time::timeout(HANGUP_GRACE, term.finished()).await.is_ok() {
            return Ok(());
        }
        if let Some(joiner) = term.joiner() {
            let (this, s) = (self.clone(), session.clone());
            let killed = tokio::task::spawn_blocking(move || this.sandbox.kill_terminal_program(&s.sandbox, joiner))
                .await
                .map_err(|_| SessionError::ShuttingDown)?;
            tracing::info!(
                session = short(&session.id),
                terminal = n,
                killed,
                "closed terminal's program outlived its hang-up"
            );
        }
        match tokio::time::timeout(HANGUP_GRACE * 3, term.finished()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(SessionError::CloseFailed),
        }
    }

    /// Stops everything the learner started in the session (a fork bomb included) but its init
    /// and the terminals' shells ([`nsplay_sandbox::Sandbox::reset`]); returns how many processes
    /// were killed. A second reset while one runs waits for nothing and kills nothing.
    pub async fn reset(self: &Arc<Self>, session: &Arc<Session>) -> Result<usize, SessionError> {
        if session.resetting.swap(true, Ordering::SeqCst) {
            return Ok(0);
        }
        let this = self.clone();
        let s = session.clone();
        let killed = tokio::task::spawn_blocking(move || this.sandbox.reset(&s.sandbox)).await;
        session.resetting.store(false, Ordering::SeqCst);
        let killed = killed.map_err(|_| SessionError::ShuttingDown)?;
        tracing::info!(session = short(&session.id), killed, "session reset");
        Ok(killed)
    }

    /// Ends a session: every process, its cgroup and mounts gone when this returns.
    pub async fn end(self: &Arc<Self>, id: &str, reason: EndReason) -> Result<(), SessionError> {
        let session =
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(id).ok_or(SessionError::NotFound)?;
        // Read the peaks before the group goes away: they go into the session's last log line.
        let usage = self.usage(&session);
        self.by_key.lock().unwrap_or_else(|e| e.into_inner()).remove(&session.sandbox.key);
        if let Some(l) = session.learner {
            let mut by_learner = self.by_learner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = by_learner.get_mut(&l) {
                list.retain(|s| s.id != session.id);
                if list.is_empty() {
                    by_learner.remove(&l);
                }
            }
        }
        for t in session.terminals.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            t.mark_exited(t.exit_code().unwrap_or(128 + 9));
        }
        let this = self.clone();
        let s = session.clone();
        let result = tokio::task::spawn_blocking(move || {
            let r = this.sandbox.destroy(&s.sandbox);
            if let Err(e) = &r {
                tracing::error!(cgroup = %s.sandbox.name, error = %e, "a session could not be removed completely; trying again later");
                this.leftovers.lock().unwrap_or_else(|e| e.into_inner()).push(Leftover::Session(s.clone()));
            }
            this.release(r.is_ok());
            r
        })
        .await
        .map_err(|_| SessionError::ShuttingDown)?;
        metrics::counter!("nsplay_sessions_ended_total", "reason" => reason.as_str()).increment(1);
        metrics::gauge!("nsplay_sessions_live").set(self.live() as f64);
        tracing::info!(
            session = short(&session.id),
            client = %session.client,
            reason = reason.as_str(),
            age_s = session.created.elapsed().as_secs(),
            peak_memory_bytes = usage.memory_peak_bytes.max(usage.memory_bytes),
            pids = usage.pids,
            oom_kills = usage.oom_kills,
            "session ended"
        );
        result?;
        Ok(())
    }

    /// Reacts to what the spawner reports.
    pub fn handle_event(&self, ev: Event) {
        match ev {
            Event::TerminalExited { session, terminal, code } => {
                if let Some(s) = self.by_key.lock().unwrap_or_else(|e| e.into_inner()).get(&session)
                    && let Some(t) = s.terminal(terminal)
                {
                    t.mark_exited(code);
                }
            }
            Event::SessionExited { session, status } => {
                if let Some(s) = self.by_key.lock().unwrap_or_else(|e| e.into_inner()).get(&session) {
                    for t in s.terminals.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                        t.mark_exited(t.exit_code().unwrap_or(status));
                    }
                }
            }
            Event::SpawnerGone => tracing::error!("the spawner helper exited; no new sessions can start"),
        }
    }

    pub fn usage(&self, s: &Session) -> Usage {
        self.sandbox.usage(&s.sandbox).unwrap_or_default()
    }

    /// Namespace inodes of the session's init next to the server's own.
    pub fn namespaces(&self, s: &Session) -> std::collections::BTreeMap<&'static str, NsPair> {
        let mine = nsplay_sandbox::namespace_inodes(std::process::id() as i32);
        nsplay_sandbox::namespace_inodes(s.sandbox.init_pid)
            .into_iter()
            .map(|(k, v)| (k, NsPair { session: v, host: mine.get(k).copied().unwrap_or(0) }))
            .collect()
    }

    /// What the host sees of the session, for checks that read its kernel state from outside
    /// (blocking: reads /proc and cgroup files).
    pub fn host_view(&self, s: &Session) -> HostView {
        HostView {
            init_pid: s.sandbox.init_pid,
            pids: nsplay_sandbox::inside_session(self.sandbox.pids(&s.sandbox)),
            hostname: s.sandbox.hostname.clone(),
            uid_base: s.sandbox.ids.base,
            usage: self.usage(s),
            cgroup_dir: self.sandbox.cgroups().dir(&s.sandbox.name),
            charge_to: self.sandbox.cgroups().relay_procs_files(&s.sandbox.name),
        }
    }

    /// Usage, namespaces and nested namespaces of the session, read on a blocking thread: that
    /// walks the session's cgroup tree (bounded: `cgroup.max.descendants`, and a capped walk)
    /// and the `/proc` of each of its processes, work that must never hold up the runtime's
    /// workers (and with them `/healthz` and every other session's terminal).
    pub async fn details(self: &Arc<Self>, s: &Arc<Session>) -> Details {
        let (m, s) = (self.clone(), s.clone());
        tokio::task::spawn_blocking(move || Details {
            usage: m.usage(&s),
            namespaces: m.namespaces(&s),
            nested: m.nested(&s),
        })
        .await
        .unwrap_or_default()
    }

    /// Namespaces the learner created inside the session: (kind, inode, host pid).
    pub fn nested(&self, s: &Session) -> Vec<(&'static str, u64, i32)> {
        let pids = nsplay_sandbox::inside_session(self.sandbox.pids(&s.sandbox));
        nsplay_sandbox::nested(s.sandbox.init_pid, &pids)
    }

    /// Periodic work: warn and end sessions at their maximum age, end idle ones and those whose
    /// terminals have all ended, and explain limit events to the person at the terminal.
    pub async fn tick(self: &Arc<Self>) {
        // Apart from the tick's own work: a retry may wait seconds for the kernel.
        let m = self.clone();
        tokio::spawn(async move { m.retry_leftovers(LEFTOVER_RETRIES_PER_TICK).await });
        self.resume_reserves();
        let sessions: Vec<Arc<Session>> =
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let now = SystemTime::now();
        for s in sessions {
            if now >= s.expires_at {
                s.notice_all(&Notice::MaxAgeReached);
                let _ = self.end(&s.id, EndReason::MaxAge).await;
                continue;
            }
            if !s.warned.load(Ordering::Relaxed)
                && s.expires_at.duration_since(now).unwrap_or_default() <= MAX_AGE_WARNING
            {
                s.warned.store(true, Ordering::Relaxed);
                let minutes = s.expires_at.duration_since(now).unwrap_or_default().as_secs().div_ceil(60);
                s.notice_all(&Notice::MaxAgeSoon { minutes });
            }
            if let Some(since) = s.idle_since()
                && since.elapsed() >= self.cfg.idle_timeout
            {
                let _ = self.end(&s.id, EndReason::Idle).await;
                continue;
            }
            let all_ended = s.all_ended();
            let ended_for = {
                let mut since = s.all_ended_since.lock().unwrap_or_else(|e| e.into_inner());
                if all_ended {
                    Some(since.get_or_insert_with(Instant::now).elapsed())
                } else {
                    *since = None;
                    None
                }
            };
            if ended_for.is_some_and(|d| d >= self.cfg.grace) {
                let _ = self.end(&s.id, EndReason::Exited).await;
                continue;
            }
            let u = self.usage(&s);
            let prev = std::mem::replace(&mut *s.last_usage.lock().unwrap_or_else(|e| e.into_inner()), u.clone());
            if u.oom_kills > prev.oom_kills {
                metrics::counter!("nsplay_oom_kills_total").increment(u.oom_kills - prev.oom_kills);
                // Which limit bit: the session's own, or a child group's the learner made (whose
                // kills count in the session's totals too).
                let child = (u.oom_at_own_limit == prev.oom_at_own_limit)
                    .then(|| self.sandbox.child_oom_limit(&s.sandbox))
                    .flatten();
                s.limit_event(match child {
                    Some(limit) => Notice::ChildMemoryKill { limit: format_size(limit) },
                    None => Notice::MemoryKill { limit: format_size(s.sandbox.limits.memory_bytes) },
                });
            }
            if u.pids_limit_hits > prev.pids_limit_hits {
                metrics::counter!("nsplay_pids_limit_hits_total").increment(u.pids_limit_hits - prev.pids_limit_hits);
                s.limit_event(Notice::PidsLimit { max: s.sandbox.limits.pids });
            }
        }
    }

    /// How long a drain lasts unless told otherwise (`drain_timeout`).
    pub fn drain_timeout(&self) -> Duration {
        self.cfg.drain_timeout
    }

    /// Counts the neighbour (ARP/NDP, proxy included) entries in every network namespace each
    /// session holds, and ends the sessions past `max_neighbours` (or past
    /// [`nsplay_sandbox::MAX_NET_NAMESPACES`] namespaces) with a notice. The kernel charges
    /// these entries to no cgroup and never collects a permanent one (docs/security.md, item
    /// 7). The count runs on one blocking thread, never on the runtime's workers, and is
    /// bounded per session by the cap (at most `max_neighbours + 1` entries read) and the
    /// namespace bound; the caller runs it every [`NEIGHBOUR_SWEEP`], one sweep at a time.
    pub async fn sweep_neighbours(self: &Arc<Self>) {
        let sessions = self.sessions();
        if sessions.is_empty() {
            return;
        }
        let cap = self.cfg.max_neighbours;
        let this = self.clone();
        let Ok((over, host_total)) = tokio::task::spawn_blocking(move || {
            let over: Vec<(Arc<Session>, nsplay_sandbox::NeighbourCount)> = sessions
                .into_iter()
                .filter_map(|s| {
                    let c = this.sandbox.neighbours(&s.sandbox, cap);
                    (c.entries > cap || c.namespaces_over).then_some((s, c))
                })
                .collect();
            (over, nsplay_sandbox::host_neighbour_entries())
        })
        .await
        else {
            return;
        };
        if let Some(total) = host_total {
            metrics::gauge!("nsplay_host_neighbour_entries").set(total as f64);
        }
        for (s, c) in over {
            let notice = if c.namespaces_over {
                Notice::NetnsLimit { max: nsplay_sandbox::MAX_NET_NAMESPACES }
            } else {
                Notice::NeighbourLimit { max: cap }
            };
            tracing::warn!(
                session = short(&s.id),
                client = %s.client,
                entries_at_least = c.entries,
                namespaces = c.namespaces,
                max_neighbours = cap,
                "session held too many neighbour entries or network namespaces; ending it"
            );
            metrics::counter!("nsplay_neighbour_limit_hits_total").increment(1);
            s.notice_all(&notice);
            let _ = self.end(&s.id, EndReason::NeighbourLimit).await;
        }
    }

    /// Ends the session holding the most open files while the host's file table is past
    /// `file_table_end_percent` of `fs.file-max` — one per call, so the caller (every
    /// [`NEIGHBOUR_SWEEP`]) frees the table a session at a time until it is back under. New
    /// sessions are refused from [`admission::FILES_ADMIT_PERCENT`] already; this is for the
    /// sessions that fill the rest (docs/security.md, item 10). Only when the table is that
    /// full are the sessions' descriptors counted (on a blocking thread: `/proc/<pid>/fd` of
    /// each of their processes, at most pids × RLIMIT_NOFILE entries per session).
    pub async fn sweep_file_table(self: &Arc<Self>) {
        let Some(files) = admission::HostFiles::read() else { return };
        metrics::gauge!("nsplay_host_open_files").set(files.open as f64);
        let percent = self.cfg.file_table_end_percent;
        if (files.open as u128) * 100 < files.max as u128 * percent as u128 {
            return;
        }
        let sessions = self.sessions();
        let this = self.clone();
        let Ok(top) = tokio::task::spawn_blocking(move || {
            sessions.into_iter().map(|s| (this.sandbox.open_files(&s.sandbox), s)).max_by_key(|(n, _)| *n)
        })
        .await
        else {
            return;
        };
        // The table is full of the host's own files, not a session's: nothing to end.
        let Some((held, s)) = top.filter(|(n, _)| *n > 0) else { return };
        tracing::warn!(
            session = short(&s.id),
            client = %s.client,
            open_files = held,
            host_open = files.open,
            file_max = files.max,
            "the host's file table is nearly full; ending the session that holds the most files"
        );
        metrics::counter!("nsplay_file_table_ends_total").increment(1);
        s.notice_all(&Notice::FileTable { files: held, percent });
        let _ = self.end(&s.id, EndReason::FileTable).await;
    }

    /// Whether this node takes new sessions (`/readyz`): not while draining or shutting down.
    pub fn ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && !self.shutting_down.load(Ordering::Relaxed)
    }

    /// Drains this node for SIGTERM: as [`Manager::begin_drain`] (a drain already under way
    /// keeps its deadline unless this one ends sooner), and waits until every session has ended
    /// on its own or the deadline passed. The sessions left are ended by
    /// [`Manager::shutdown`], which follows; a drain begun for SIGTERM cannot be undone.
    pub async fn drain(self: &Arc<Self>, timeout: Duration) {
        let status = self.start_drain(timeout, true);
        while self.live() > 0 {
            let left = status.until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(Duration::from_millis(250))).await;
        }
    }

    /// Drains this node (the admin call): refuses new sessions from now on (a proxy sends them
    /// to another node; `/readyz` answers 503), tells every terminal when its session will end
    /// (again shortly before), and at `timeout` ends the sessions left; the process goes on
    /// until it is stopped or [`Manager::undrain`]ed. A drain under way keeps its deadline.
    pub fn begin_drain(self: &Arc<Self>, timeout: Duration) -> DrainStatus {
        self.start_drain(timeout, false)
    }

    fn start_drain(self: &Arc<Self>, timeout: Duration, stopping: bool) -> DrainStatus {
        let until = tokio::time::Instant::now() + timeout;
        let mut state = self.drain_state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = state.as_mut() {
            d.stopping |= stopping;
            if !stopping || d.until <= until {
                if stopping {
                    let left = d.until.saturating_duration_since(tokio::time::Instant::now());
                    tracing::info!(
                        left_s = left.as_secs(),
                        "SIGTERM: the drain under way goes on to its deadline, then the node stops"
                    );
                }
                return DrainStatus { begun: false, deadline: d.deadline, until: d.until, sessions: self.live() };
            }
            // A SIGTERM whose drain ends sooner than the one under way: its deadline counts.
            d.cancel.cancel();
        }
        let deadline = SystemTime::now() + timeout;
        let cancel = tokio_util::sync::CancellationToken::new();
        *state = Some(Drain { until, deadline, stopping, cancel: cancel.clone() });
        self.draining.store(true, Ordering::SeqCst);
        drop(state);
        let at = utc_clock(deadline);
        let sessions = self.live();
        tracing::info!(sessions, timeout_s = timeout.as_secs(), by_signal = stopping, "draining: no new sessions");
        self.notice_every_session(&Notice::Draining { seconds: timeout.as_secs(), at: at.clone() });
        tokio::spawn(self.clone().run_drain(until, timeout, at, cancel));
        DrainStatus { begun: true, deadline, until, sessions }
    }

    /// A drain's clock: the reminder, then, for a drain not begun by SIGTERM (whose shutdown
    /// ends the sessions), the end of every session left. Stops when the drain is undone.
    async fn run_drain(
        self: Arc<Self>,
        until: tokio::time::Instant,
        timeout: Duration,
        at: String,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        // A reminder shortly before the end, for a learner who missed the first notice.
        if timeout > DRAIN_REMINDER * 2 {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(until - DRAIN_REMINDER) => {}
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            self.notice_every_session(&Notice::Draining { seconds: left.as_secs().max(1), at });
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(until) => {}
        }
        let stopping = self.drain_state.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_none_or(|d| d.stopping);
        if stopping || self.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let sessions = self.sessions();
        tracing::info!(sessions = sessions.len(), "drain deadline: ending the sessions left");
        for s in &sessions {
            s.notice_all(&Notice::Drained);
        }
        futures_util::future::join_all(sessions.iter().map(|s| self.end(&s.id, EndReason::Drained))).await;
    }

    /// Takes new sessions again after [`Manager::begin_drain`] (the sessions still running
    /// go on, their learners told). Returns whether the node was draining; refused while the
    /// node stops (a drain for SIGTERM, or the shutdown).
    pub fn undrain(&self) -> Result<bool, SessionError> {
        let mut state = self.drain_state.lock().unwrap_or_else(|e| e.into_inner());
        if self.shutting_down.load(Ordering::SeqCst) || state.as_ref().is_some_and(|d| d.stopping) {
            return Err(SessionError::Stopping);
        }
        let Some(d) = state.take() else { return Ok(false) };
        d.cancel.cancel();
        self.draining.store(false, Ordering::SeqCst);
        drop(state);
        tracing::info!(sessions = self.live(), "drain called off: taking new sessions again");
        self.notice_every_session(&Notice::DrainCancelled);
        Ok(true)
    }

    /// The drain under way, if any.
    pub fn drain_status(&self) -> Option<DrainStatus> {
        let state = self.drain_state.lock().unwrap_or_else(|e| e.into_inner());
        state.as_ref().map(|d| DrainStatus {
            begun: false,
            deadline: d.deadline,
            until: d.until,
            sessions: self.live(),
        })
    }

    fn notice_every_session(&self, notice: &Notice) {
        let sessions: Vec<Arc<Session>> =
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for s in sessions {
            s.notice_all(notice);
        }
    }

    /// Ends every session and empties the warm pool (on shutdown).
    /// Ends every live session, in parallel: each teardown mostly waits for the kernel.
    async fn end_all_for_shutdown(self: &Arc<Self>) {
        let ids: Vec<String> = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        futures_util::future::join_all(ids.iter().map(|id| self.end(id, EndReason::Shutdown))).await;
    }

    pub async fn shutdown(self: &Arc<Self>) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.pool.close();
        self.end_reserves().await;
        for p in self.image_pools.values() {
            p.close();
        }
        for s in self.sessions() {
            s.notice_all(&Notice::ShuttingDown);
        }
        self.end_all_for_shutdown().await;
        self.pool.finished().await;
        for p in self.image_pools.values() {
            p.finished().await;
        }
        // Requests that were building a session when the shutdown began end it themselves
        // (see `register`); the caller's deadline bounds this wait.
        while !self.pending.lock().unwrap_or_else(|e| e.into_inner()).is_empty() || self.live() > 0 {
            self.end_all_for_shutdown().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Teardowns that failed (a kernel still busy with the last exiting task): a few more
        // tries, within the caller's deadline.
        for _ in 0..20 {
            if self.retry_leftovers(usize::MAX).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if self.sandboxes() == 0 {
            // Every sandbox is gone: the parent groups nsplay made at start go too.
            for left in self.sandbox.release_cgroups() {
                tracing::warn!(cgroup = %left.display(), "a parent cgroup nsplay created is not empty and stays");
            }
        }
    }
}

#[cfg(test)]
impl Session {
    /// A session with no sandbox behind it, for tests of the layers above: its "init" is the
    /// test process, it holds a throw-away id range, and its terminals are the given ones.
    pub fn detached(id: &str, terminals: Vec<Arc<Terminal>>) -> Arc<Session> {
        Session::detached_for(id, terminals, None)
    }

    /// [`Session::detached`], started by `learner`.
    pub fn detached_for(id: &str, terminals: Vec<Arc<Terminal>>, learner: Option<Learner>) -> Arc<Session> {
        let ids = nsplay_sandbox::IdAllocator::new(1_000_000_000, 1).and_then(|a| a.allocate()).expect("one id range");
        let now = SystemTime::now();
        Arc::new(Session {
            id: id.to_string(),
            label: None,
            created_at: now,
            expires_at: now + Duration::from_secs(3600),
            sandbox: SandboxSession {
                key: 0,
                name: format!("nsplay-test-{id}"),
                ids,
                hostname: "nsplay".into(),
                limits: Limits {
                    memory_bytes: 256 << 20,
                    pids: 128,
                    cpu: 0.5,
                    disk_bytes: 64 << 20,
                    shm_bytes: 16 << 20,
                },
                init_pid: std::process::id() as i32,
                pidfd: std::fs::File::open("/dev/null").expect("/dev/null").into(),
                image: None,
            },
            client: IpAddr::from([127, 0, 0, 1]),
            learner,
            created: Instant::now(),
            warned: AtomicBool::new(false),
            all_ended_since: Mutex::default(),
            opened: (terminals.len() as u64).into(),
            terminals: Mutex::new(terminals),
            ended: Mutex::default(),
            ended_casts: Mutex::default(),
            terminal_rate: terminal_rate(),
            host_work: Arc::new(tokio::sync::Semaphore::new(1)),
            host_work_rate: host_work_rate(),
            last_usage: Mutex::default(),
            marks: Mutex::default(),
            events: Mutex::default(),
            resetting: AtomicBool::new(false),
        })
    }
}

#[cfg(test)]
mod cast_tests {
    use super::*;

    /// The recordings ended terminals leave are bounded per session, the oldest going first.
    #[test]
    fn ended_terminals_keep_their_recordings_within_a_budget() {
        let s = Session::detached("casts", Vec::new());
        let chunk = bytes::Bytes::from(vec![b'x'; 200 * 1024]);
        let n = (ENDED_CASTS_BYTES / (200 * 1024)) as u64 + 3;
        for i in 0..n {
            let mut r = cast::Recording::new(80, 24);
            r.record(&chunk);
            s.bury(i, 0, r);
        }
        let kept: usize = s.ended_casts.lock().unwrap().iter().map(|(_, r)| r.cost()).sum();
        assert!(kept <= ENDED_CASTS_BYTES, "{kept}");
        assert!(matches!(s.asciicast(0, "t"), Err(SessionError::RecordingGone)));
        let newest = s.asciicast(n - 1, "t").unwrap();
        assert!(newest.lines().count() == 2 && newest.contains("xxxx"), "{:.100}", newest);
        assert!(matches!(s.asciicast(n, "t"), Err(SessionError::NoTerminal)));
        assert!(matches!(s.terminal_ref(0), Some(TerminalRef::Ended(0))));
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn ids_name_their_node_before_a_dot_and_the_log_form_is_the_random_part() {
        let id = new_id("node-a");
        let (node, random) = id.split_once('.').unwrap();
        assert_eq!(node, "node-a");
        assert_eq!(random.len(), 22, "128 bits of base64url: {id}");
        assert!(!random.contains('.'), "{id}");
        assert_eq!(short(&id), &random[..6]);
        // A prefix rule for one node never matches another node's sessions.
        assert!(!new_id("node-a-b").starts_with("node-a."));
        assert_ne!(new_id("n"), new_id("n"));
    }
}
