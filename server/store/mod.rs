//! The classroom's persistent store: rooms, learners, every check result with its time, room
//! events, signed-in instructors and server-wide settings. One `sqlx` `Any` pool speaks SQLite
//! (the default, a file under the data directory, in write-ahead-log mode) and PostgreSQL with
//! the same embedded, versioned migrations (`migrations/`) and the same SQL: `$N` parameters,
//! BIGINT integers and Unix-millisecond times, ids made by the server. Nothing here knows HTTP
//! or sessions; [`crate::classroom`] gives the rows their meaning.

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

/// The file of the default store, inside the data directory.
pub const DB_FILE: &str = "nsplay.db";

/// Connections of the pool: SQLite writes one at a time anyway; a few readers beside it.
const MAX_CONNECTIONS: u32 = 4;

/// How long a query waits for the database (a locked SQLite file, a far PostgreSQL) before it
/// fails with an error instead of holding a request forever.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {dir}: {source} (choose another with --data-dir)")]
    DataDir { dir: PathBuf, source: std::io::Error },
    #[error("cannot open the database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("cannot migrate the database schema: {0} (is this database from a newer nsplay?)")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    #[error("a stored row is malformed: {0}")]
    Malformed(String),
}

/// Now, in the store's unit (Unix milliseconds).
pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

pub fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoomRow {
    pub id: String,
    pub code: String,
    pub title: String,
    pub lessons: Vec<String>,
    pub capacity: i64,
    pub memory_bytes: Option<i64>,
    pub pids: Option<i64>,
    pub cpu_millis: Option<i64>,
    pub opens_at: Option<i64>,
    pub closes_at: Option<i64>,
    pub created_at: i64,
    pub ended_at: Option<i64>,
    /// The image the room's sessions start on (`None`: the first lesson's, else the server's
    /// default).
    pub image: Option<String>,
    /// Sessions the instructor asked to have built ahead, on all nodes together (`None`: not
    /// asked; see [`Store::set_prepare`]).
    pub prepare_expected: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LearnerRow {
    pub id: String,
    pub room_id: String,
    pub name: Option<String>,
    pub session_id: Option<String>,
    pub joined_at: i64,
    pub last_seen_at: i64,
    /// What the node holding the session last reported ([`Store::report_sessions`]).
    pub report: Option<SessionReport>,
    pub end_requested_at: Option<i64>,
}

/// What a node saw of a learner's live session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionReport {
    pub at: i64,
    pub last_input_at: i64,
    pub memory_bytes: i64,
    pub pids: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckRow {
    pub learner_id: String,
    pub room_id: String,
    pub lesson: String,
    pub step: String,
    pub passed: bool,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub room_id: String,
    pub at: i64,
    pub kind: String,
    pub learner_id: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstructorRow {
    pub token_hash: String,
    pub csrf: String,
    pub expires_at: i64,
}

/// The store: a pool of connections, cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: &'static str,
}

const ROOM_COLUMNS: &str = "id, code, title, lessons, capacity, memory_bytes, pids, cpu_millis, opens_at, closes_at, \
                            created_at, ended_at, image, prepare_expected";
const LEARNER_COLUMNS: &str = "id, room_id, name, session_id, joined_at, last_seen_at, reported_at, last_input_at, \
                               memory_bytes, pids, end_requested_at";

impl Store {
    /// The default store: `<dir>/nsplay.db` (SQLite, WAL), the directory created (mode 0700) if
    /// it is missing, the schema migrated.
    pub async fn open_dir(dir: &Path) -> Result<Store, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::DataDir { dir: dir.to_path_buf(), source })?;
        let path = dir.join(DB_FILE);
        Store::connect(&format!("sqlite://{}?mode=rwc", path.display())).await
    }

    /// A store at `url` (`sqlite://…` or `postgres://…`), the schema migrated.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let opts: AnyConnectOptions = url.parse().map_err(|source| StoreError::Open { url: redact(url), source })?;
        let pool = AnyPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    if conn.backend_name() == "SQLite" {
                        // WAL: a commit is in the log before it returns, so a killed server loses
                        // nothing it acknowledged; FULL syncs the log too (power loss). Readers
                        // never wait for the writer; a writer waits up to 5 s for another.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Open { url: redact(url), source })?;
        MIGRATOR.run(&pool).await?;
        let backend = if url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" };
        Ok(Store { pool, backend })
    }

    /// The newest migration applied (the schema version).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success = $1")
            .bind(true)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("v")?.unwrap_or(0))
    }

    /// Which database this is ("SQLite", "PostgreSQL").
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- settings

    pub async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT value FROM settings WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get::<String, _>("value")).transpose()?)
    }

    pub async fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- rooms

    /// Adds a room; `Ok(false)` when its id or code is taken (the caller draws another).
    pub async fn insert_room(&self, r: &RoomRow) -> Result<bool, StoreError> {
        let lessons = serde_json::to_string(&r.lessons).map_err(|e| StoreError::Malformed(e.to_string()))?;
        let done = sqlx::query(
            "INSERT INTO rooms (id, code, title, lessons, capacity, memory_bytes, pids, cpu_millis, opens_at, \
             closes_at, created_at, ended_at, image, prepare_expected) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&r.id)
        .bind(&r.code)
        .bind(&r.title)
        .bind(lessons)
        .bind(r.capacity)
        .bind(r.memory_bytes)
        .bind(r.pids)
        .bind(r.cpu_millis)
        .bind(r.opens_at)
        .bind(r.closes_at)
        .bind(r.created_at)
        .bind(r.ended_at)
        .bind(&r.image)
        .bind(r.prepare_expected)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every room, newest first.
    pub async fn rooms(&self) -> Result<Vec<RoomRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {ROOM_COLUMNS} FROM rooms ORDER BY created_at DESC, id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(room_row).collect()
    }

    pub async fn room(&self, id: &str) -> Result<Option<RoomRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(room_row).transpose()
    }

    pub async fn room_by_code(&self, code: &str) -> Result<Option<RoomRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE code = $1"))
            .bind(code)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(room_row).transpose()
    }

    /// Asks for `expected` sessions built ahead for a room, on all nodes together (each node's
    /// sweep builds its share); `only_if_unset`: unless an instructor asked already (a room's
    /// opening time). `false` if there is no such room (or it was set).
    pub async fn set_prepare(&self, id: &str, expected: i64, only_if_unset: bool) -> Result<bool, StoreError> {
        let sql = if only_if_unset {
            "UPDATE rooms SET prepare_expected = $2 WHERE id = $1 AND prepare_expected IS NULL"
        } else {
            "UPDATE rooms SET prepare_expected = $2 WHERE id = $1"
        };
        let done = sqlx::query(sql).bind(id).bind(expected).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- nodes

    /// Records that `node` is up (its sweep ran at `at`).
    pub async fn heartbeat(&self, node: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO nodes (name, seen_at) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET seen_at = $2")
            .bind(node)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// What `node` has built ahead for each room now (room id, ready, wanted); a room it has
    /// nothing for is written as zeros, so that a total never counts an old row.
    pub async fn report_reserves(&self, node: &str, rows: &[(String, i64, i64)], at: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (room, ready, wanted) in rows {
            sqlx::query(
                "INSERT INTO reserves (room_id, node, ready, wanted, at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (room_id, node) DO UPDATE SET ready = $3, wanted = $4, at = $5",
            )
            .bind(room)
            .bind(node)
            .bind(ready)
            .bind(wanted)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A room's sessions built ahead on every node that reported since `since`: (ready, wanted,
    /// nodes reporting).
    pub async fn reserves_of(&self, room_id: &str, since: i64) -> Result<(i64, i64, i64), StoreError> {
        let row = sqlx::query(
            // PostgreSQL's SUM of BIGINT is NUMERIC: cast back, for both backends alike.
            "SELECT CAST(COALESCE(SUM(ready), 0) AS BIGINT) AS ready, CAST(COALESCE(SUM(wanted), 0) AS BIGINT) AS wanted, \
             COUNT(*) AS nodes FROM reserves WHERE room_id = $1 AND at >= $2",
        )
        .bind(room_id)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("ready")?, row.try_get("wanted")?, row.try_get("nodes")?))
    }

    /// Nodes seen since `since` (at least the caller, once it has beaten).
    pub async fn live_nodes(&self, since: i64) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM nodes WHERE seen_at >= $1")
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Ends a room (no more joins); `false` if there is no such room or it had ended.
    pub async fn end_room(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE rooms SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL")
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- learners

    /// Adds a learner unless the room holds `capacity` already (one statement, so two joins at
    /// once cannot both take the last place on SQLite); `Ok(false)`: the room is full.
    pub async fn insert_learner(&self, l: &LearnerRow, capacity: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO learners (id, room_id, name, session_id, joined_at, last_seen_at) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE (SELECT COUNT(*) FROM learners WHERE room_id = $2) < $7",
        )
        .bind(&l.id)
        .bind(&l.room_id)
        .bind(&l.name)
        .bind(&l.session_id)
        .bind(l.joined_at)
        .bind(l.last_seen_at)
        .bind(capacity)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn learner(&self, id: &str) -> Result<Option<LearnerRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {LEARNER_COLUMNS} FROM learners WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(learner_row).transpose()
    }

    /// A room's learners in the order they joined.
    pub async fn learners(&self, room_id: &str) -> Result<Vec<LearnerRow>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {LEARNER_COLUMNS} FROM learners WHERE room_id = $1 ORDER BY joined_at, id"))
                .bind(room_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(learner_row).collect()
    }

    pub async fn count_learners(&self, room_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM learners WHERE room_id = $1")
            .bind(room_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// The learner's new session (a rejoin after the old one ended).
    pub async fn set_learner_session(&self, id: &str, session_id: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE learners SET session_id = $2, last_seen_at = $3, end_requested_at = NULL, reported_at = NULL \
             WHERE id = $1",
        )
        .bind(id)
        .bind(session_id)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Asks the node holding the learner's session to end it (see [`Store::report_sessions`]);
    /// `false`: no such learner in this room.
    pub async fn request_end(&self, room_id: &str, learner_id: &str, at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE learners SET end_requested_at = $3 WHERE id = $1 AND room_id = $2")
            .bind(learner_id)
            .bind(room_id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// What a node saw of its learners' live sessions, in one transaction: `(learner, session,
    /// report)`; a learner whose current session is another is left alone.
    pub async fn report_sessions(&self, reports: &[(String, String, SessionReport)]) -> Result<(), StoreError> {
        if reports.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (learner, session, r) in reports {
            sqlx::query(
                "UPDATE learners SET reported_at = $3, last_input_at = $4, memory_bytes = $5, pids = $6 \
                 WHERE id = $1 AND session_id = $2",
            )
            .bind(learner)
            .bind(session)
            .bind(r.at)
            .bind(r.last_input_at)
            .bind(r.memory_bytes)
            .bind(r.pids)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A room's newest `limit` events of `kind`, newest first.
    pub async fn events_of(&self, room_id: &str, kind: &str, limit: i64) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT room_id, at, kind, learner_id, detail FROM room_events WHERE room_id = $1 AND kind = $2 \
             ORDER BY at DESC LIMIT $3",
        )
        .bind(room_id)
        .bind(kind)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_row).collect()
    }

    /// A number that changes whenever a room's learners, checks or events do (a dashboard on
    /// another node polls it: the shared database is the only link between nodes).
    pub async fn room_fingerprint(&self, room_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM learners WHERE room_id = $1) * 1000003 \
             + (SELECT COUNT(*) FROM check_results WHERE room_id = $1) * 1009 \
             + (SELECT COUNT(*) FROM room_events WHERE room_id = $1) AS f",
        )
        .bind(room_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("f")?)
    }

    /// Moves a live room's closing time (an extension); `false` if it has ended or has none.
    pub async fn set_closes_at(&self, id: &str, closes_at: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE rooms SET closes_at = $2 WHERE id = $1 AND ended_at IS NULL AND closes_at IS NOT NULL")
                .bind(id)
                .bind(closes_at)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- check results

    /// Records a check and the learner's activity, in one transaction.
    pub async fn insert_check(&self, c: &CheckRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO check_results (learner_id, room_id, lesson, step, passed, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.learner_id)
        .bind(&c.room_id)
        .bind(&c.lesson)
        .bind(&c.step)
        .bind(i64::from(c.passed))
        .bind(c.at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE learners SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2")
            .bind(&c.learner_id)
            .bind(c.at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A room's check results, oldest first.
    pub async fn checks(&self, room_id: &str) -> Result<Vec<CheckRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT learner_id, room_id, lesson, step, passed, at FROM check_results WHERE room_id = $1 ORDER BY at",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CheckRow {
                    learner_id: r.try_get("learner_id")?,
                    room_id: r.try_get("room_id")?,
                    lesson: r.try_get("lesson")?,
                    step: r.try_get("step")?,
                    passed: r.try_get::<i64, _>("passed")? != 0,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    // ---- room events

    pub async fn insert_event(&self, e: &EventRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO room_events (room_id, at, kind, learner_id, detail) VALUES ($1, $2, $3, $4, $5)")
            .bind(&e.room_id)
            .bind(e.at)
            .bind(&e.kind)
            .bind(&e.learner_id)
            .bind(&e.detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A room's newest `limit` events, oldest first.
    pub async fn events(&self, room_id: &str, limit: i64) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT room_id, at, kind, learner_id, detail FROM room_events WHERE room_id = $1 ORDER BY at DESC LIMIT $2",
        )
        .bind(room_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows.iter().map(event_row).collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }

    // ---- instructor sign-ins

    pub async fn insert_instructor(&self, id_hash: &str, row: &InstructorRow, at: i64) -> Result<(), StoreError> {
        // Expired sign-ins go as new ones come: the table stays as small as its live rows.
        sqlx::query("DELETE FROM instructor_sessions WHERE expires_at < $1").bind(at).execute(&self.pool).await?;
        sqlx::query(
            "INSERT INTO instructor_sessions (id_hash, token_hash, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_hash)
        .bind(&row.token_hash)
        .bind(&row.csrf)
        .bind(at)
        .bind(row.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn instructor(&self, id_hash: &str) -> Result<Option<InstructorRow>, StoreError> {
        let row = sqlx::query("SELECT token_hash, csrf, expires_at FROM instructor_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(InstructorRow {
                token_hash: r.try_get("token_hash")?,
                csrf: r.try_get("csrf")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    pub async fn delete_instructor(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM instructor_sessions WHERE id_hash = $1").bind(id_hash).execute(&self.pool).await?;
        Ok(())
    }
}

fn room_row(r: &AnyRow) -> Result<RoomRow, StoreError> {
    let lessons: String = r.try_get("lessons")?;
    Ok(RoomRow {
        id: r.try_get("id")?,
        code: r.try_get("code")?,
        title: r.try_get("title")?,
        lessons: serde_json::from_str(&lessons).map_err(|e| StoreError::Malformed(format!("rooms.lessons: {e}")))?,
        capacity: r.try_get("capacity")?,
        memory_bytes: r.try_get("memory_bytes")?,
        pids: r.try_get("pids")?,
        cpu_millis: r.try_get("cpu_millis")?,
        opens_at: r.try_get("opens_at")?,
        closes_at: r.try_get("closes_at")?,
        created_at: r.try_get("created_at")?,
        ended_at: r.try_get("ended_at")?,
        image: r.try_get("image")?,
        prepare_expected: r.try_get("prepare_expected")?,
    })
}

fn event_row(r: &AnyRow) -> Result<EventRow, StoreError> {
    Ok(EventRow {
        room_id: r.try_get("room_id")?,
        at: r.try_get("at")?,
        kind: r.try_get("kind")?,
        learner_id: r.try_get("learner_id")?,
        detail: r.try_get("detail")?,
    })
}

fn learner_row(r: &AnyRow) -> Result<LearnerRow, StoreError> {
    let report = match r.try_get::<Option<i64>, _>("reported_at")? {
        None => None,
        Some(at) => Some(SessionReport {
            at,
            last_input_at: r.try_get::<Option<i64>, _>("last_input_at")?.unwrap_or(at),
            memory_bytes: r.try_get::<Option<i64>, _>("memory_bytes")?.unwrap_or(0),
            pids: r.try_get::<Option<i64>, _>("pids")?.unwrap_or(0),
        }),
    };
    Ok(LearnerRow {
        report,
        end_requested_at: r.try_get("end_requested_at")?,
        id: r.try_get("id")?,
        room_id: r.try_get("room_id")?,
        name: r.try_get("name")?,
        session_id: r.try_get("session_id")?,
        joined_at: r.try_get("joined_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
    })
}

/// A database URL for the log: without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}
