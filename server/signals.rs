//! SIGINT and SIGTERM for the commands that own sessions (`nsplay serve`, `nsplay lessons
//! test`): blocked from the first step, before anything a stop must clean up exists, and
//! delivered to tokio handlers once those are installed. A signal that comes in between waits,
//! pending, instead of killing the process with the default action and leaving sessions and
//! cgroups behind. The spawner and every sandboxed process start with an empty mask (std's
//! `Command` and the sandbox's `reset_signals` clear it).

use nix::sys::signal::{SigSet, Signal};

/// SIGINT and SIGTERM, blocked on this thread (and on the threads it starts later).
pub struct Blocked(SigSet);

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("blocking SIGINT and SIGTERM: {0}")]
    Block(nix::Error),
    #[error("installing the {name} handler: {source}")]
    Install { name: &'static str, source: std::io::Error },
    #[error("unblocking SIGINT and SIGTERM: {0}")]
    Unblock(nix::Error),
}

/// Blocks SIGINT and SIGTERM on the calling thread: call it first, before any other thread
/// exists, so every thread inherits the mask.
pub fn block() -> Result<Blocked, SignalError> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block().map_err(SignalError::Block)?;
    Ok(Blocked(set))
}

/// The handlers of SIGTERM and SIGINT.
pub struct StopSignals {
    pub term: tokio::signal::unix::Signal,
    pub int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (inside a tokio runtime), then unblocks the signals on the calling
    /// thread, which receives those that came meanwhile.
    pub fn install(blocked: Blocked) -> Result<StopSignals, SignalError> {
        use tokio::signal::unix::{SignalKind, signal};
        let handler = |kind, name| signal(kind).map_err(|source| SignalError::Install { name, source });
        let signals = StopSignals {
            term: handler(SignalKind::terminate(), "SIGTERM")?,
            int: handler(SignalKind::interrupt(), "SIGINT")?,
        };
        blocked.0.thread_unblock().map_err(SignalError::Unblock)?;
        Ok(signals)
    }

    /// Completes at the first of either signal.
    pub async fn either(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
