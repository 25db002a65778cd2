//! Live sessions: who owns which sandbox, its terminals, its expiry, and the events that end
//! things. Knows nothing about HTTP; the web layer calls [`Manager`].

pub mod terminal;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use serde::Serialize;

use crate::sandbox::cgroups::Usage;
use crate::sandbox::limits::{Limits, format_size};
use crate::sandbox::spawn::Event;
use crate::sandbox::{Sandbox, SandboxError, SandboxSession, namespaces};
pub use terminal::{Attachment, Output, Terminal, TerminalError};

/// Most terminals per session.
pub const MAX_TERMINALS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no such session (it ended or never existed)")]
    NotFound,
    #[error("no such terminal in this session")]
    NoTerminal,
    #[error("the playground is full ({0} sessions); try again shortly")]
    Full(usize),
    #[error("a session has at most {MAX_TERMINALS} terminals")]
    TooManyTerminals,
    #[error("unknown lesson `{0}`")]
    UnknownLesson(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Terminal(#[from] TerminalError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub limits: Limits,
    pub max_sessions: usize,
    pub max_age: Duration,
    pub hostname: String,
    /// Lessons a session may be started for (validated names).
    pub lessons: Vec<String>,
}

pub struct Session {
    pub id: String,
    pub lesson: Option<String>,
    pub created_at: SystemTime,
    pub expires_at: SystemTime,
    pub sandbox: SandboxSession,
    terminals: Mutex<Vec<Arc<Terminal>>>,
    last_usage: Mutex<Usage>,
    passed_checks: Mutex<std::collections::BTreeSet<String>>,
}

impl Session {
    pub fn terminal(&self, n: u64) -> Option<Arc<Terminal>> {
        self.terminals.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|t| t.index == n).cloned()
    }

    fn notice_all(&self, message: &str) {
        for t in self.terminals.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            t.notice(message);
        }
    }
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
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    by_key: Mutex<HashMap<u64, Arc<Session>>>,
    shutting_down: std::sync::atomic::AtomicBool,
}

fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Manager {
    pub fn new(sandbox: Sandbox, cfg: ManagerConfig) -> Arc<Manager> {
        Arc::new(Manager {
            sandbox,
            cfg,
            sessions: Mutex::default(),
            by_key: Mutex::default(),
            shutting_down: false.into(),
        })
    }

    pub fn config(&self) -> &ManagerConfig {
        &self.cfg
    }

    pub fn live(&self) -> usize {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn get(&self, id: &str) -> Result<Arc<Session>, SessionError> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned().ok_or(SessionError::NotFound)
    }

    /// Creates a session with its first terminal (index 0).
    pub async fn create(self: &Arc<Self>, lesson: Option<String>) -> Result<Arc<Session>, SessionError> {
        if self.shutting_down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(SessionError::ShuttingDown);
        }
        if let Some(l) = &lesson
            && !self.cfg.lessons.iter().any(|x| x == l)
        {
            return Err(SessionError::UnknownLesson(l.clone()));
        }
        if self.live() >= self.cfg.max_sessions {
            return Err(SessionError::Full(self.cfg.max_sessions));
        }
        let this = self.clone();
        let sb = tokio::task::spawn_blocking(move || this.sandbox.create(&this.cfg.hostname, &this.cfg.limits))
            .await
            .map_err(|_| SessionError::ShuttingDown)??;
        let now = SystemTime::now();
        let session = Arc::new(Session {
            id: new_id(),
            lesson,
            created_at: now,
            expires_at: now + self.cfg.max_age,
            sandbox: sb,
            terminals: Mutex::default(),
            last_usage: Mutex::default(),
            passed_checks: Mutex::default(),
        });
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(session.id.clone(), session.clone());
        self.by_key.lock().unwrap_or_else(|e| e.into_inner()).insert(session.sandbox.key, session.clone());
        if let Err(e) = self.open_terminal(&session).await {
            self.end(&session.id).await.ok();
            return Err(e);
        }
        Ok(session)
    }

    /// Starts another shell in every namespace and the cgroup of the session.
    pub async fn open_terminal(self: &Arc<Self>, session: &Arc<Session>) -> Result<Arc<Terminal>, SessionError> {
        let index = {
            let terms = session.terminals.lock().unwrap_or_else(|e| e.into_inner());
            if terms.iter().filter(|t| t.exit_code().is_none()).count() >= MAX_TERMINALS {
                return Err(SessionError::TooManyTerminals);
            }
            terms.last().map(|t| t.index + 1).unwrap_or(0)
        };
        let this = self.clone();
        let s = session.clone();
        let handle =
            tokio::task::spawn_blocking(move || this.sandbox.open_terminal(&s.sandbox, index, Vec::new(), 80, 24))
                .await
                .map_err(|_| SessionError::ShuttingDown)??;
        let term = Terminal::start(index, handle.master, 80, 24).map_err(|e| {
            SessionError::Sandbox(SandboxError::Spawn(crate::sandbox::spawn::SpawnError::Setup(e.to_string())))
        })?;
        session.terminals.lock().unwrap_or_else(|e| e.into_inner()).push(term.clone());
        Ok(term)
    }

    /// Ends a session: every process, its cgroup and mounts gone when this returns.
    pub async fn end(self: &Arc<Self>, id: &str) -> Result<(), SessionError> {
        let session =
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(id).ok_or(SessionError::NotFound)?;
        self.by_key.lock().unwrap_or_else(|e| e.into_inner()).remove(&session.sandbox.key);
        for t in session.terminals.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            t.mark_exited(t.exit_code().unwrap_or(128 + 9));
        }
        let this = self.clone();
        let s = session.clone();
        tokio::task::spawn_blocking(move || this.sandbox.destroy(&s.sandbox))
            .await
            .map_err(|_| SessionError::ShuttingDown)??;
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
        let mine = namespaces::inodes(std::process::id() as i32);
        namespaces::inodes(s.sandbox.init_pid)
            .into_iter()
            .map(|(k, v)| (k, NsPair { session: v, host: mine.get(k).copied().unwrap_or(0) }))
            .collect()
    }

    /// Runs a lesson check against the session (blocking: call from `spawn_blocking`).
    pub fn check(
        &self,
        s: &Session,
        kind: &str,
        args: &std::collections::BTreeMap<String, String>,
        lang: &str,
    ) -> crate::lessons::checks::Outcome {
        let probe = crate::lessons::checks::Probe {
            init_pid: s.sandbox.init_pid,
            pids: self.sandbox.pids(&s.sandbox),
            hostname: &s.sandbox.hostname,
            uid_base: s.sandbox.ids.base,
            usage: self.usage(s),
            cgroup_dir: self.sandbox.cgroups().dir(&s.sandbox.name),
            passed: s.passed_checks.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        };
        let outcome = crate::lessons::checks::run(kind, args, &probe, lang);
        if outcome.passed {
            s.passed_checks.lock().unwrap_or_else(|e| e.into_inner()).insert(kind.to_string());
        }
        outcome
    }

    /// Namespaces the learner created inside the session: (kind, inode, host pid).
    pub fn nested(&self, s: &Session) -> Vec<(&'static str, u64, i32)> {
        crate::lessons::checks::nested(s.sandbox.init_pid, &self.sandbox.pids(&s.sandbox))
    }

    /// Periodic work: expire old sessions, explain limit events, end sessions whose terminals
    /// are all gone.
    pub async fn tick(self: &Arc<Self>) {
        let sessions: Vec<Arc<Session>> =
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let now = SystemTime::now();
        for s in sessions {
            if now >= s.expires_at {
                s.notice_all("This session reached its maximum age and has ended.");
                let _ = self.end(&s.id).await;
                continue;
            }
            let all_gone = {
                let terms = s.terminals.lock().unwrap_or_else(|e| e.into_inner());
                !terms.is_empty() && terms.iter().all(|t| t.exit_code().is_some() && t.clients() == 0)
            };
            if all_gone {
                let _ = self.end(&s.id).await;
                continue;
            }
            let u = self.usage(&s);
            let prev = std::mem::replace(&mut *s.last_usage.lock().unwrap_or_else(|e| e.into_inner()), u.clone());
            if u.oom_kills > prev.oom_kills {
                s.notice_all(&format!(
                    "A process was killed: the memory limit ({}) was reached.",
                    format_size(s.sandbox.limits.memory_bytes)
                ));
            }
            if u.pids_limit_hits > prev.pids_limit_hits {
                s.notice_all(&format!(
                    "A fork was refused: the limit of {} processes was reached.",
                    s.sandbox.limits.pids
                ));
            }
        }
    }

    /// Ends every session (on shutdown).
    pub async fn shutdown(self: &Arc<Self>) {
        self.shutting_down.store(true, std::sync::atomic::Ordering::Relaxed);
        let ids: Vec<String> = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        for id in &ids {
            if let Ok(s) = self.get(id) {
                s.notice_all("The server is shutting down; this session ends now.");
            }
        }
        for id in ids {
            let _ = self.end(&id).await;
        }
    }
}
