//! Constants more than one process role needs. They live here, apart from every role, so that
//! no two modules have to import each other for a number.

/// PATH inside the sandbox, and of the spawner itself (its environment is replaced at exec).
pub const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Largest chunk a terminal's relay writes at once (and so the largest read the server needs).
pub const RELAY_CHUNK: usize = 32 * 1024;

/// How long a session or terminal may take to come up before the spawner gives up on it.
pub const SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Ptys one session's devpts instance holds at most (its `max=` mount option): the server's
/// terminals (at most 8 live) and whatever the learner opens (`script`, `tmux`), with room to
/// spare. All non-host devpts instances share `kernel.pty.max` minus `kernel.pty.reserve`
/// (see `pty_budget` and docs/security.md, "Round two").
pub const SESSION_PTYS: u32 = 32;
