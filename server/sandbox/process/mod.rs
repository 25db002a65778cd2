//! Every process nsplay starts besides the server, one module per role, and the one protocol
//! they speak. The multi-threaded server never forks: it sends requests to the spawner, a
//! single-threaded helper, over a `SOCK_SEQPACKET` socket and gets back file descriptors (a
//! pidfd per session, a pty master per terminal) and exit events.
//!
//! Process tree of one session (host view):
//!
//! ```text
//! spawner ── C1 (keeper: joins the cgroup, builds the root, unshares, waits) ── init (PID 1)
//!        └── J (joiner: setns into init's namespaces, opens a pty; then relays its output) ── shell
//! ```
//! A terminal may be *parked* (its program confined and waiting just before `execve` for a byte
//! on a start gate: the warm pool) and *relayed* (its joiner copies the pty's output into a pipe
//! to the server: see [`relay`]).
//! Every helper is non-dumpable and has `PR_SET_PDEATHSIG` (see [`crate::harden`]), so killing the
//! server kills the spawner, which kills every keeper and joiner, which kills every init; an
//! init's death ends its whole PID namespace.
//!
//! - `message`: every message, one enum per direction, with the descriptors it carries.
//! - `channel`: the typed channel those messages travel on; `fds`: descriptors as message fields.
//! - `client`: the server's handle on the spawner ([`Spawner`]) and its reader thread.
//! - `spawner`: the spawner's loop, its side of each set-up, and reaping.
//! - `keeper`, `init`, `joiner`, `relay`: the helpers.
//! - `cgroup_join`: entering and leaving a session's cgroup. The hardening steps they share
//!   (and a terminal's program with them, in `pty`) are in [`crate::harden`].

mod cgroup_join;
mod channel;
mod client;
mod fds;
mod init;
mod joiner;
mod keeper;
mod message;
mod relay;
mod spawner;

pub use client::{SpawnError, Spawner, TerminalHandle};
pub use message::{Event, Helper, SessionSpec, TerminalSpec};
pub use spawner::run_spawner;
