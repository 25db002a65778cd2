//! Classroom mode: rooms with join codes, their learners and what the host-side checks found,
//! and the instructor's access. The rules live here (what a room may be, who may join when, what
//! a learner's progress is); the rows live in [`crate::store`]; sessions and HTTP stay in the
//! web layer, which tags a learner's session with [`learner_mark`] and hands every check it
//! runs to [`Classroom::record_check`].

pub mod auth;
pub mod code;
pub mod progress;

#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::Deserialize;

use crate::store::{EventRow, LearnerRow, RoomRow, Store, StoreError, now_ms};
use nsplay_sandbox::Limits;

pub use auth::{AuthError, Instructor, SignIn};
pub use code::{display_name, normalize_code};
pub use progress::{Progress, csv};

/// Longest room title, in characters.
pub const MAX_TITLE: usize = 80;
/// Most lessons in a room.
pub const MAX_LESSONS: usize = 20;
/// Longest notice an instructor broadcasts, in characters.
pub const MAX_NOTICE: usize = 500;
/// Notices a learner's page shows (the newest).
pub const SHOWN_NOTICES: i64 = 5;
/// Longest one extension of a room's time, in minutes.
pub const MAX_EXTEND_MINUTES: i64 = 480;
/// How many times a new room draws a join code before giving up (a taken code is redrawn).
const CODE_DRAWS: usize = 8;

/// What the classroom needs of the server's settings.
#[derive(Debug, Clone)]
pub struct ClassroomConfig {
    /// The configured admin token (`None`: the stored one, or a new one).
    pub admin_token: Option<String>,
    /// Whether anyone may start a session without a room.
    pub open: bool,
    /// The server's session limits: a room may tighten them, never exceed them.
    pub limits: Limits,
    /// The server's session cap: no room holds more.
    pub max_sessions: usize,
    /// The lessons (as they read on the host's cgroup hierarchy): a room's lessons and steps.
    pub lessons: std::sync::Arc<crate::lessons::Catalog>,
    /// A learner with no passed step and no keystroke for this long is shown as stuck.
    pub stuck_after: Duration,
    /// This node's name (the first part of its session ids): this node alone knows whether
    /// its own sessions live, whatever an older report in a shared store says.
    pub node: String,
    /// The images a room may start its sessions on: the server's default and its
    /// `images_allowed` (what the create API accepts).
    pub images: Vec<String>,
}

/// The classroom: the store and the rules.
#[derive(Debug)]
pub struct Classroom {
    store: Store,
    cfg: ClassroomConfig,
    /// The current admin token's hash (the token itself is never kept).
    token_hash: String,
    /// Counts every change a dashboard shows (rooms, joins, checks): its event streams wait on it.
    changes: tokio::sync::watch::Sender<u64>,
}

/// Why a room cannot be created as asked (400 `invalid_room`; the text says which field).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RoomError {
    #[error("the title must be 1 to {MAX_TITLE} characters without control characters")]
    Title,
    #[error("a room needs 1 to {MAX_LESSONS} lessons, each once")]
    Lessons,
    #[error("there is no lesson called `{0}`")]
    UnknownLesson(String),
    #[error("`{0}` is not an image rooms may use (the server's image and images_allowed)")]
    UnknownImage(String),
    #[error("the capacity must be 1 to {max} (the server's max_sessions)")]
    Capacity { max: usize },
    #[error("the room's {what} limit must be at least {min} and at most the server's ({max})")]
    Limit { what: &'static str, min: String, max: String },
    #[error("`{0}` must be a time such as 2026-12-01T09:00:00Z, and the closing time after the opening time")]
    Time(&'static str),
    #[error("a notice must be 1 to {MAX_NOTICE} characters without control characters other than line breaks")]
    Notice,
    #[error(
        "an extension must be 1 to {MAX_EXTEND_MINUTES} minutes, of a room that has a closing time and has not ended"
    )]
    Extend,
}

/// Why a join is refused (the join page explains it in the reader's language).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JoinError {
    #[error("there is no room with this code")]
    NotFound,
    #[error("this room has not opened yet")]
    NotOpen { opens_at: i64 },
    #[error("this room is closed")]
    Closed,
    #[error("this room is full ({capacity} learners)")]
    Full { capacity: i64 },
    #[error("the name is not valid")]
    Name(#[from] code::NameError),
}

#[derive(Debug, thiserror::Error)]
pub enum ClassroomError {
    #[error(transparent)]
    Room(#[from] RoomError),
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl crate::text::Message for RoomError {
    fn key(&self) -> &'static str {
        match self {
            RoomError::Title => "room_bad_title",
            RoomError::Lessons => "room_bad_lessons",
            RoomError::UnknownLesson(_) => "room_unknown_lesson",
            RoomError::UnknownImage(_) => "room_unknown_image",
            RoomError::Capacity { .. } => "room_bad_capacity",
            RoomError::Limit { .. } => "room_bad_limit",
            RoomError::Time(_) => "room_bad_time",
            RoomError::Notice => "room_bad_notice",
            RoomError::Extend => "room_bad_extend",
        }
    }
    fn args(&self) -> Vec<(&'static str, String)> {
        match self {
            RoomError::Title => vec![("max", MAX_TITLE.to_string())],
            RoomError::Lessons => vec![("max", MAX_LESSONS.to_string())],
            RoomError::UnknownLesson(l) => vec![("lesson", l.clone())],
            RoomError::UnknownImage(i) => vec![("image", i.clone())],
            RoomError::Capacity { max } => vec![("max", max.to_string())],
            RoomError::Limit { what, min, max } => {
                vec![("what", what.to_string()), ("min", min.clone()), ("max", max.clone())]
            }
            RoomError::Time(field) => vec![("field", field.to_string())],
            RoomError::Notice => vec![("max", MAX_NOTICE.to_string())],
            RoomError::Extend => vec![("max", MAX_EXTEND_MINUTES.to_string())],
        }
    }
}

impl crate::text::Message for JoinError {
    fn key(&self) -> &'static str {
        match self {
            JoinError::NotFound => "join_not_found",
            JoinError::NotOpen { .. } => "join_not_open",
            JoinError::Closed => "join_closed",
            JoinError::Full { .. } => "join_full",
            JoinError::Name(_) => "join_bad_name",
        }
    }
    fn args(&self) -> Vec<(&'static str, String)> {
        match self {
            JoinError::NotOpen { opens_at } => vec![("time", rfc3339(*opens_at))],
            JoinError::Full { capacity } => vec![("capacity", capacity.to_string())],
            JoinError::Name(_) => vec![("max", code::MAX_NAME.to_string())],
            _ => Vec::new(),
        }
    }
}

/// Room limits as an instructor asks for them (sizes as in the settings: `128M`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomLimits {
    pub memory: Option<String>,
    pub pids: Option<u64>,
    pub cpu: Option<f64>,
}

/// A room as an instructor asks for it (the body of `POST /api/rooms`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRoom {
    pub title: String,
    pub lessons: Vec<String>,
    pub capacity: Option<usize>,
    #[serde(default)]
    pub limits: RoomLimits,
    /// RFC 3339; unset: open now.
    pub opens_at: Option<String>,
    /// RFC 3339; unset: open until ended.
    pub closes_at: Option<String>,
    /// One of the server's images (the default or an allowed one); unset or empty: the first
    /// lesson's image, else the server's default.
    pub image: Option<String>,
}

/// A learner admitted into a room.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub room: RoomRow,
    pub learner: LearnerRow,
    /// Whether this is a learner who had joined before (same browser).
    pub returning: bool,
}

/// What a learner's page shows of their room (`GET /api/join/{code}/status`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LearnerStatus {
    pub title: String,
    /// Ended by the instructor or past its closing time.
    pub ended: bool,
    pub closes_at: Option<String>,
    pub seconds_left: Option<i64>,
    /// Newest first.
    pub notices: Vec<StatusNotice>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusNotice {
    pub at: String,
    pub text: String,
}

/// A node that has not beaten ([`Classroom::beat`], every sweep: 5 s) for this long is taken to
/// be gone: the others build its share of a room's prepared sessions.
pub const NODE_ALIVE_MS: i64 = 15_000;

/// One node's share of `expected` prepared sessions when `nodes` share the work: the proxy
/// spreads a class's joins over the nodes, so each builds an even part, rounded up (a room of
/// 30 on 4 nodes: 8 each).
pub fn node_share(expected: usize, nodes: usize) -> usize {
    expected.div_ceil(nodes.max(1))
}

/// The session mark that ties a session to its learner.
pub fn learner_mark(learner_id: &str) -> String {
    format!("learner:{learner_id}")
}

/// The session mark that ties a session to its room.
pub fn room_mark(room_id: &str) -> String {
    format!("{ROOM_MARK}{room_id}")
}

/// What every [`room_mark`] starts with.
pub const ROOM_MARK: &str = "room:";

/// The learner a session's marks name, if it is a room's.
pub fn learner_of(marks: &std::collections::BTreeSet<String>) -> Option<&str> {
    marks.iter().find_map(|m| m.strip_prefix("learner:"))
}

pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn parse_time(field: &'static str, v: Option<&str>) -> Result<Option<i64>, RoomError> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map_err(|_| RoomError::Time(field))?;
    Ok(Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

/// Opens the store — SQLite `nsplay.db` in `data_dir`, or the database at `database_url`
/// (PostgreSQL, shared by many nodes) — and starts the classroom. A new admin token is written
/// to the log this once; later starts (on any node of a shared database) find its hash.
pub async fn open(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    cfg: ClassroomConfig,
) -> Result<std::sync::Arc<Classroom>, StoreError> {
    let store = match database_url {
        Some(url) => Store::connect(url).await?,
        None => Store::open_dir(data_dir).await?,
    };
    let (c, new_token) = Classroom::start(store, cfg).await?;
    if let Some(token) = new_token {
        tracing::warn!(
            "a new instructor admin token was made; it is shown this once and stored only as a hash. Sign in at \
             /instructor/login with: {token}"
        );
    }
    match database_url {
        Some(_) => tracing::info!(backend = c.store.backend(), open = c.open(), "classroom store ready"),
        None => tracing::info!(data_dir = %data_dir.display(), open = c.open(), "classroom store ready"),
    }
    Ok(std::sync::Arc::new(c))
}

impl Classroom {
    /// The classroom over `store`, and the new admin token when one had to be made (the caller
    /// prints it once; only its hash is kept).
    pub async fn start(store: Store, cfg: ClassroomConfig) -> Result<(Classroom, Option<String>), StoreError> {
        let (token_hash, new_token) = auth::resolve_token(&store, cfg.admin_token.as_deref()).await?;
        let changes = tokio::sync::watch::channel(0).0;
        Ok((Classroom { store, cfg, token_hash, changes }, new_token))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Changes as they happen (the value only counts them): what the dashboard's stream waits on.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether anyone may start a session without a room.
    pub fn open(&self) -> bool {
        self.cfg.open
    }

    /// Asks every node sharing the store for `expected` sessions built ahead for the room, in
    /// all (each builds [`node_share`] of them); `only_if_unset`: unless an instructor asked.
    pub async fn ask_prepare(&self, room_id: &str, expected: usize, only_if_unset: bool) -> Result<bool, StoreError> {
        self.store.set_prepare(room_id, i64::try_from(expected).unwrap_or(i64::MAX), only_if_unset).await
    }

    /// Records that this node is up, and returns how many nodes are (at least this one): the
    /// nodes that share the store split a room's prepared sessions between them.
    pub async fn beat(&self) -> Result<usize, StoreError> {
        self.store.heartbeat(&self.cfg.node, now_ms()).await?;
        self.live_nodes().await
    }

    /// Writes what this node has built ahead for each room: (room id, ready, wanted).
    pub async fn report_reserves(&self, rows: &[(String, usize, usize)]) -> Result<(), StoreError> {
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        let rows: Vec<(String, i64, i64)> =
            rows.iter().map(|(r, ready, wanted)| (r.clone(), n(*ready), n(*wanted))).collect();
        self.store.report_reserves(&self.cfg.node, &rows, now_ms()).await
    }

    /// A room's sessions built ahead on every node that reported lately: (ready, wanted, nodes).
    pub async fn reserves_of(&self, room_id: &str) -> Result<(i64, i64, i64), StoreError> {
        self.store.reserves_of(room_id, now_ms() - NODE_ALIVE_MS).await
    }

    /// How many nodes have beaten lately (at least one).
    pub async fn live_nodes(&self) -> Result<usize, StoreError> {
        let n = self.store.live_nodes(now_ms() - NODE_ALIVE_MS).await?;
        Ok(usize::try_from(n).unwrap_or(1).max(1))
    }

    /// The images a room may start its sessions on.
    pub fn room_images(&self) -> &[String] {
        &self.cfg.images
    }

    /// The largest capacity a room may have (the server's session cap).
    pub fn max_capacity(&self) -> usize {
        self.cfg.max_sessions
    }

    /// Checks `new` against the server's settings and stores it with a fresh join code.
    pub async fn create_room(&self, new: NewRoom) -> Result<RoomRow, ClassroomError> {
        let mut row = self.validate(new)?;
        for _ in 0..CODE_DRAWS {
            row.id = code::random_id(12);
            row.code = code::join_code();
            if self.store.insert_room(&row).await? {
                self.event(&row.id, "room_created", None, &row.title).await?;
                self.changed();
                return Ok(row);
            }
        }
        Err(StoreError::Malformed("no free join code after several draws".into()).into())
    }

    fn validate(&self, new: NewRoom) -> Result<RoomRow, RoomError> {
        let title = new.title.trim().to_string();
        if title.is_empty() || title.chars().count() > MAX_TITLE || title.chars().any(char::is_control) {
            return Err(RoomError::Title);
        }
        let mut lessons: Vec<String> = Vec::new();
        for l in &new.lessons {
            let l = l.trim();
            if self.cfg.lessons.get().find(l).is_none() {
                return Err(RoomError::UnknownLesson(l.chars().take(40).collect()));
            }
            if lessons.iter().any(|x| x == l) {
                return Err(RoomError::Lessons);
            }
            lessons.push(l.to_string());
        }
        if lessons.is_empty() || lessons.len() > MAX_LESSONS {
            return Err(RoomError::Lessons);
        }
        let max = self.cfg.max_sessions;
        let capacity = new.capacity.unwrap_or(max.min(30));
        if capacity == 0 || capacity > max {
            return Err(RoomError::Capacity { max });
        }
        let server = &self.cfg.limits;
        // At least what a session needs to work (the sandbox's minimum), at most the server's.
        let memory_bytes = match &new.limits.memory {
            None => None,
            Some(m) => {
                let out_of_range = || RoomError::Limit {
                    what: "memory",
                    min: nsplay_sandbox::format_size(nsplay_sandbox::MIN_MEMORY_BYTES),
                    max: nsplay_sandbox::format_size(server.memory_bytes),
                };
                let v = nsplay_sandbox::parse_size("memory", m).map_err(|_| out_of_range())?;
                if v < nsplay_sandbox::MIN_MEMORY_BYTES || v > server.memory_bytes {
                    return Err(out_of_range());
                }
                Some(v as i64)
            }
        };
        let pids = match new.limits.pids {
            Some(p) if !(nsplay_sandbox::MIN_PIDS..=server.pids).contains(&p) => {
                return Err(RoomError::Limit {
                    what: "pids",
                    min: nsplay_sandbox::MIN_PIDS.to_string(),
                    max: server.pids.to_string(),
                });
            }
            p => p.map(|p| p as i64),
        };
        let cpu_millis = match new.limits.cpu {
            Some(c) if !(c >= nsplay_sandbox::MIN_CPU && c <= server.cpu) => {
                return Err(RoomError::Limit {
                    what: "cpu",
                    min: nsplay_sandbox::MIN_CPU.to_string(),
                    max: server.cpu.to_string(),
                });
            }
            c => c.map(|c| (c * 1000.0).round() as i64),
        };
        let image = match new.image.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
            None => None,
            Some(i) if self.cfg.images.iter().any(|x| x == i) => Some(i.to_string()),
            Some(i) => return Err(RoomError::UnknownImage(i.chars().take(40).collect())),
        };
        let opens_at = parse_time("opens_at", new.opens_at.as_deref())?;
        let closes_at = parse_time("closes_at", new.closes_at.as_deref())?;
        if let (Some(o), Some(c)) = (opens_at, closes_at)
            && c <= o
        {
            return Err(RoomError::Time("closes_at"));
        }
        Ok(RoomRow {
            id: String::new(),
            code: String::new(),
            title,
            lessons,
            capacity: capacity as i64,
            memory_bytes,
            pids,
            cpu_millis,
            opens_at,
            closes_at,
            created_at: now_ms(),
            ended_at: None,
            image,
            prepare_expected: None,
        })
    }

    /// The limits of a room's sessions: the server's, tightened to the room's.
    pub fn limits_for(&self, room: &RoomRow) -> Limits {
        let server = self.cfg.limits;
        server.tightened(&Limits {
            memory_bytes: room.memory_bytes.map_or(server.memory_bytes, |m| m as u64),
            pids: room.pids.map_or(server.pids, |p| p as u64),
            cpu: room.cpu_millis.map_or(server.cpu, |c| c as f64 / 1000.0),
            ..server
        })
    }

    pub async fn rooms(&self) -> Result<Vec<RoomRow>, StoreError> {
        self.store.rooms().await
    }

    pub async fn room(&self, id: &str) -> Result<Option<RoomRow>, StoreError> {
        self.store.room(id).await
    }

    /// Ends a room: no more joins (the learners' sessions are the web layer's to end).
    pub async fn end_room(&self, id: &str) -> Result<bool, StoreError> {
        let ended = self.store.end_room(id, now_ms()).await?;
        if ended {
            self.event(id, "room_ended", None, "").await?;
            self.changed();
        }
        Ok(ended)
    }

    /// The room a join code names, if it takes learners now.
    pub async fn joinable(&self, code: &str) -> Result<RoomRow, ClassroomError> {
        let code = normalize_code(code).ok_or(JoinError::NotFound)?;
        let room = self.store.room_by_code(&code).await?.ok_or(JoinError::NotFound)?;
        let now = now_ms();
        if room.ended_at.is_some() || room.closes_at.is_some_and(|c| now >= c) {
            return Err(JoinError::Closed.into());
        }
        if let Some(o) = room.opens_at
            && now < o
        {
            return Err(JoinError::NotOpen { opens_at: o }.into());
        }
        Ok(room)
    }

    /// Admits a learner into the room of `code`: the learner `returning` names if it is one of
    /// this room's (a rejoin from the same browser keeps its progress), else a new one named
    /// `name` (validated), while the room has room.
    pub async fn admit(&self, code: &str, name: &str, returning: Option<&str>) -> Result<Admitted, ClassroomError> {
        let room = self.joinable(code).await?;
        if let Some(id) = returning
            && let Some(learner) = self.store.learner(id).await?
            && learner.room_id == room.id
        {
            return Ok(Admitted { room, learner, returning: true });
        }
        let name = display_name(name).map_err(JoinError::from)?;
        let now = now_ms();
        let learner = LearnerRow {
            id: code::random_id(16),
            room_id: room.id.clone(),
            name,
            session_id: None,
            joined_at: now,
            last_seen_at: now,
            report: None,
            end_requested_at: None,
        };
        if !self.store.insert_learner(&learner, room.capacity).await? {
            return Err(JoinError::Full { capacity: room.capacity }.into());
        }
        Ok(Admitted { room, learner, returning: false })
    }

    /// The learner's session is `session_id` (just created, or found alive on a rejoin).
    pub async fn seat(&self, a: &Admitted, session_id: &str) -> Result<(), StoreError> {
        self.store.set_learner_session(&a.learner.id, session_id, now_ms()).await?;
        let kind = if a.returning { "rejoined" } else { "joined" };
        self.event(&a.room.id, kind, Some(&a.learner.id), session_id).await?;
        self.changed();
        Ok(())
    }

    /// Records a check a room learner's session ran (only the host's verdict reaches here).
    pub async fn record_check(
        &self,
        learner_id: &str,
        lesson: &str,
        step: &str,
        passed: bool,
    ) -> Result<(), StoreError> {
        let Some(learner) = self.store.learner(learner_id).await? else { return Ok(()) };
        let row = crate::store::CheckRow {
            learner_id: learner.id,
            room_id: learner.room_id,
            lesson: lesson.into(),
            step: step.into(),
            passed,
            at: now_ms(),
        };
        self.store.insert_check(&row).await?;
        self.changed();
        Ok(())
    }

    /// Broadcasts a notice to a room's learners (their pages show the newest few, in the words
    /// the instructor wrote; see [`Classroom::learner_status`]).
    pub async fn notice(&self, room_id: &str, text: &str) -> Result<(), ClassroomError> {
        let text = text.trim();
        let bad = |c: char| c.is_control() && c != '\n';
        if text.is_empty() || text.chars().count() > MAX_NOTICE || text.chars().any(bad) {
            return Err(RoomError::Notice.into());
        }
        self.event(room_id, "notice", None, text).await?;
        self.changed();
        Ok(())
    }

    /// Gives a room `minutes` more (from its closing time, or from now if that has passed);
    /// the new closing time.
    pub async fn extend(&self, room: &RoomRow, minutes: i64) -> Result<i64, ClassroomError> {
        let Some(closes) = room.closes_at else { return Err(RoomError::Extend.into()) };
        if !(1..=MAX_EXTEND_MINUTES).contains(&minutes) {
            return Err(RoomError::Extend.into());
        }
        let new = closes.max(now_ms()) + minutes * 60_000;
        if !self.store.set_closes_at(&room.id, new).await? {
            return Err(RoomError::Extend.into());
        }
        self.event(&room.id, "extended", None, &rfc3339(new)).await?;
        self.changed();
        Ok(new)
    }

    /// Asks for a learner's session to end (the node holding it ends it; see
    /// [`Classroom::sweep_orders`]); `false`: no such learner in the room.
    pub async fn request_end(&self, room_id: &str, learner_id: &str) -> Result<bool, StoreError> {
        let found = self.store.request_end(room_id, learner_id, now_ms()).await?;
        if found {
            self.event(room_id, "session_ended", Some(learner_id), "").await?;
            self.changed();
        }
        Ok(found)
    }

    /// What a learner's page shows of their room: the state, the time left, the newest notices.
    /// `None` unless `learner_id` is a learner of the room of `code` (the id is the learner's
    /// secret).
    pub async fn learner_status(&self, code: &str, learner_id: &str) -> Result<Option<LearnerStatus>, StoreError> {
        let Some(code) = normalize_code(code) else { return Ok(None) };
        let Some(room) = self.store.room_by_code(&code).await? else { return Ok(None) };
        let Some(learner) = self.store.learner(learner_id).await? else { return Ok(None) };
        if learner.room_id != room.id {
            return Ok(None);
        }
        let notices = self.store.events_of(&room.id, "notice", SHOWN_NOTICES).await?;
        let now = now_ms();
        let ended = room.ended_at.is_some() || room.closes_at.is_some_and(|c| now >= c);
        Ok(Some(LearnerStatus {
            title: room.title,
            ended,
            closes_at: room.closes_at.map(rfc3339),
            seconds_left: if ended { None } else { room.closes_at.map(|c| (c - now) / 1000) },
            notices: notices.into_iter().map(|e| StatusNotice { at: rfc3339(e.at), text: e.detail }).collect(),
        }))
    }

    /// What this node does about its room sessions, from the shared store: given the live
    /// sessions it holds as `(session, learner)`, those to end (their room ended or closed, or
    /// the instructor asked) — every node runs this, so a request made on any node reaches the
    /// session wherever it is.
    pub async fn sweep_orders(&self, local: &[(String, String)]) -> Result<Vec<String>, StoreError> {
        let mut rooms: std::collections::BTreeMap<String, Option<RoomRow>> = Default::default();
        let mut end = Vec::new();
        let now = now_ms();
        for (session, learner_id) in local {
            let Some(l) = self.store.learner(learner_id).await? else { continue };
            if !rooms.contains_key(&l.room_id) {
                let r = self.store.room(&l.room_id).await?;
                rooms.insert(l.room_id.clone(), r);
            }
            let closed = rooms
                .get(&l.room_id)
                .and_then(|r| r.as_ref())
                .is_some_and(|r| r.ended_at.is_some() || r.closes_at.is_some_and(|c| now >= c));
            let asked = l.end_requested_at.is_some() && l.session_id.as_deref() == Some(session.as_str());
            if closed || asked {
                end.push(session.clone());
            }
        }
        Ok(end)
    }

    /// Stores what this node saw of its learners' sessions (the dashboard of any node reads it).
    pub async fn report(&self, reports: &[(String, String, crate::store::SessionReport)]) -> Result<(), StoreError> {
        self.store.report_sessions(reports).await
    }

    /// A number that changes with a room's joins, checks and events, read from the store (a
    /// dashboard follows changes made on other nodes through it).
    pub async fn fingerprint(&self, room_id: &str) -> Result<i64, StoreError> {
        self.store.room_fingerprint(room_id).await
    }

    /// Whether `session` (an id) is one of this node's.
    pub fn is_local(&self, session: &str) -> bool {
        session.strip_prefix(self.cfg.node.as_str()).is_some_and(|rest| rest.starts_with('.'))
    }

    /// How long without a passed step or a keystroke makes a learner stuck.
    pub fn stuck_after(&self) -> Duration {
        self.cfg.stuck_after
    }

    /// A room's progress: its steps, and per learner which of them the host saw done.
    pub async fn progress(&self, room_id: &str) -> Result<Option<Progress>, StoreError> {
        let Some(room) = self.store.room(room_id).await? else { return Ok(None) };
        let learners = self.store.learners(room_id).await?;
        let checks = self.store.checks(room_id).await?;
        Ok(Some(Progress::build(room, learners, &checks, &self.cfg.lessons.get(), now_ms(), self.cfg.stuck_after)))
    }

    async fn event(&self, room_id: &str, kind: &str, learner: Option<&str>, detail: &str) -> Result<(), StoreError> {
        let e = EventRow {
            room_id: room_id.into(),
            at: now_ms(),
            kind: kind.into(),
            learner_id: learner.map(str::to_string),
            detail: detail.into(),
        };
        self.store.insert_event(&e).await
    }

    // ---- instructor access (see [`auth`])

    /// Signs an instructor in with the admin token: a new cookie value and its CSRF token.
    pub async fn sign_in(&self, token: &str) -> Result<SignIn, ClassroomError> {
        if !auth::token_matches(token, &self.token_hash) {
            return Err(AuthError::BadToken.into());
        }
        Ok(auth::sign_in(&self.store, &self.token_hash).await?)
    }

    /// The instructor a cookie value belongs to, if its sign-in is live and was made with the
    /// current admin token.
    pub async fn instructor(&self, cookie: &str) -> Result<Option<Instructor>, StoreError> {
        auth::instructor(&self.store, cookie, &self.token_hash).await
    }

    /// Whether `token` is the admin token (an `Authorization: Bearer` request).
    pub fn bearer_ok(&self, token: &str) -> bool {
        auth::token_matches(token, &self.token_hash)
    }

    pub async fn sign_out(&self, cookie: &str) -> Result<(), StoreError> {
        self.store.delete_instructor(&auth::hash("cookie", cookie)).await
    }

    /// How long an instructor's sign-in lasts.
    pub fn sign_in_lifetime(&self) -> Duration {
        auth::SIGN_IN_LIFETIME
    }
}
