//! What the handlers ask of the session layer, as a trait. [`Manager`] is the one the server
//! runs; the router's tests put a fake behind it and need neither root nor a sandbox.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::session::{
    Details, DrainStatus, EndReason, HostView, ImageChoice, Learner, Manager, NsPair, Requester, Session, SessionError,
    Terminal, Within, reserve::ReserveState,
};
use nsplay_sandbox::Usage;

/// The session calls of the handlers in [`super::api`] (each as on [`Manager`]).
pub trait Sessions: Clone + Send + Sync + 'static {
    /// A new session for `who`, its first terminal started.
    fn create(
        &self,
        label: Option<String>,
        who: Requester,
    ) -> impl Future<Output = Result<Arc<Session>, SessionError>> + Send;
    /// [`Sessions::create`] on the image `choice` picks (docs/images.md). The default refuses
    /// every image (a fake with no image store).
    fn create_on(
        &self,
        label: Option<String>,
        choice: ImageChoice,
        who: Requester,
    ) -> impl Future<Output = Result<Arc<Session>, SessionError>> + Send {
        async move {
            match choice.requested.or(choice.lesson) {
                None => self.create(label, who).await,
                Some(image) => Err(SessionError::UnknownImage(image)),
            }
        }
    }
    /// [`Sessions::create`] for a group of requests (a room): its reserve's session first, the
    /// group's limits applied ([`Manager::create_within`]). The default ignores the group (a
    /// fake with no cgroups).
    fn create_within(
        &self,
        label: Option<String>,
        choice: ImageChoice,
        who: Requester,
        within: Within,
    ) -> impl Future<Output = Result<Arc<Session>, SessionError>> + Send {
        let _ = within;
        self.create_on(label, choice, who)
    }
    /// Builds sessions ahead for a group ([`Manager::prepare_reserve`]); the default builds none.
    fn prepare_reserve(
        &self,
        key: &str,
        count: usize,
        limits: nsplay_sandbox::Limits,
        choice: &ImageChoice,
    ) -> Result<(), SessionError> {
        let _ = (key, count, limits, choice);
        Ok(())
    }
    /// How far a group's reserve is.
    fn reserve_state(&self, key: &str) -> ReserveState {
        let _ = key;
        ReserveState::default()
    }
    /// Ends a group's reserve.
    fn end_reserve(&self, key: &str) {
        let _ = key;
    }
    /// A live session.
    fn get(&self, id: &str) -> Result<Arc<Session>, SessionError>;
    /// A learner's live sessions, oldest first.
    fn learner_sessions(&self, learner: Learner) -> Vec<Arc<Session>>;
    /// How many live sessions carry each mark that starts with `prefix`
    /// ([`crate::session::count_marks`]).
    fn marked(&self, prefix: &str) -> std::collections::HashMap<String, usize>;
    /// Ends a session (every process, its cgroup and mounts gone once this completes).
    fn end(&self, id: &str, reason: EndReason) -> impl Future<Output = Result<(), SessionError>> + Send;
    /// Another shell in the session.
    fn open_terminal(&self, s: &Arc<Session>) -> impl Future<Output = Result<Arc<Terminal>, SessionError>> + Send;
    /// Closes a terminal as closing its window does (hang-up, then kill); done once it ended.
    fn close_terminal(&self, s: &Arc<Session>, n: u64) -> impl Future<Output = Result<(), SessionError>> + Send;
    /// Kills everything in the session but its init and shells; how many processes went.
    fn reset(&self, s: &Arc<Session>) -> impl Future<Output = Result<usize, SessionError>> + Send;
    /// What the kernel counts for the session.
    fn usage(&self, s: &Session) -> Usage;
    /// The session's namespace identities next to the server's.
    fn namespaces(&self, s: &Session) -> BTreeMap<&'static str, NsPair>;
    /// Namespaces created inside the session: (kind, inode, host pid).
    fn nested(&self, s: &Session) -> Vec<(&'static str, u64, i32)>;
    /// The session as the host sees it (blocking: the checks call it off the runtime).
    fn host_view(&self, s: &Session) -> HostView;
    /// Usage, namespaces and nested namespaces together, off the runtime's workers where reading
    /// them walks host files ([`Manager::details`]).
    fn details(&self, s: &Arc<Session>) -> impl Future<Output = Details> + Send {
        let d = Details { usage: self.usage(s), namespaces: self.namespaces(s), nested: self.nested(s) };
        async move { d }
    }
    /// Whether this node takes new sessions (`/readyz`; false while draining).
    fn ready(&self) -> bool {
        true
    }
    /// Drains the node for `timeout` (`None`: the configured `drain_timeout`), or finds the
    /// drain under way ([`Manager::begin_drain`]). The default: a node that cannot drain.
    fn begin_drain(&self, _timeout: Option<std::time::Duration>) -> Result<DrainStatus, SessionError> {
        Err(SessionError::Stopping)
    }
    /// Calls a drain off ([`Manager::undrain`]): whether one was under way.
    fn undrain(&self) -> Result<bool, SessionError> {
        Err(SessionError::Stopping)
    }
    /// The drain under way, if any.
    fn drain_status(&self) -> Option<DrainStatus> {
        None
    }
}

impl Sessions for Arc<Manager> {
    fn create(
        &self,
        label: Option<String>,
        who: Requester,
    ) -> impl Future<Output = Result<Arc<Session>, SessionError>> + Send {
        Manager::create(self, label, who)
    }
    fn create_on(
        &self,
        label: Option<String>,
        choice: ImageChoice,
        who: Requester,
    ) -> impl Future<Output = Result<Arc<Session>, SessionError>> + Send {
        Manager::create_on(self, label, choice, who)
    }
    fn create_within(
        &self,
        label: Option<String>,
        choice: ImageChoice,
        who: Requester,
        within: Within,
    ) -> impl Future<Output = Result<Arc<Session>, SessionError>> + Send {
        Manager::create_within(self, label, choice, who, within)
    }
    fn prepare_reserve(
        &self,
        key: &str,
        count: usize,
        limits: nsplay_sandbox::Limits,
        choice: &ImageChoice,
    ) -> Result<(), SessionError> {
        Manager::prepare_reserve(self, key, count, limits, choice)
    }
    fn reserve_state(&self, key: &str) -> ReserveState {
        Manager::reserve_state(self, key)
    }
    fn end_reserve(&self, key: &str) {
        Manager::end_reserve(self, key)
    }
    fn get(&self, id: &str) -> Result<Arc<Session>, SessionError> {
        Manager::get(self, id)
    }
    fn learner_sessions(&self, learner: Learner) -> Vec<Arc<Session>> {
        Manager::learner_sessions(self, learner)
    }
    fn marked(&self, prefix: &str) -> std::collections::HashMap<String, usize> {
        Manager::marked(self, prefix)
    }
    fn end(&self, id: &str, reason: EndReason) -> impl Future<Output = Result<(), SessionError>> + Send {
        Manager::end(self, id, reason)
    }
    fn open_terminal(&self, s: &Arc<Session>) -> impl Future<Output = Result<Arc<Terminal>, SessionError>> + Send {
        Manager::open_terminal(self, s)
    }
    fn close_terminal(&self, s: &Arc<Session>, n: u64) -> impl Future<Output = Result<(), SessionError>> + Send {
        Manager::close_terminal(self, s, n)
    }
    fn reset(&self, s: &Arc<Session>) -> impl Future<Output = Result<usize, SessionError>> + Send {
        Manager::reset(self, s)
    }
    fn usage(&self, s: &Session) -> Usage {
        Manager::usage(self, s)
    }
    fn namespaces(&self, s: &Session) -> BTreeMap<&'static str, NsPair> {
        Manager::namespaces(self, s)
    }
    fn nested(&self, s: &Session) -> Vec<(&'static str, u64, i32)> {
        Manager::nested(self, s)
    }
    fn host_view(&self, s: &Session) -> HostView {
        Manager::host_view(self, s)
    }
    fn details(&self, s: &Arc<Session>) -> impl Future<Output = Details> + Send {
        Manager::details(self, s)
    }
    fn ready(&self) -> bool {
        Manager::ready(self)
    }
    fn begin_drain(&self, timeout: Option<std::time::Duration>) -> Result<DrainStatus, SessionError> {
        Ok(Manager::begin_drain(self, timeout.unwrap_or(self.drain_timeout())))
    }
    fn undrain(&self) -> Result<bool, SessionError> {
        Manager::undrain(self)
    }
    fn drain_status(&self) -> Option<DrainStatus> {
        Manager::drain_status(self)
    }
}
