//! A room's progress as the dashboard shows it: the room's checked steps in order (its lessons'
//! steps that have a host-side check), and per learner which of them a check passed, the
//! lesson they are on and their last activity. Only check results count: nothing a learner
//! prints reaches the store.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::rfc3339;
use crate::store::{CheckRow, LearnerRow, RoomRow};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepColumn {
    pub lesson: String,
    pub step: String,
    pub title_en: String,
    pub title_ja: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LearnerProgress {
    pub id: String,
    pub name: Option<String>,
    pub session: Option<String>,
    pub joined_at: String,
    pub last_activity: String,
    /// The lesson of their latest check, else the room's first.
    pub current_lesson: String,
    /// The first checked step of that lesson not passed yet (`None`: all passed).
    pub current_step: Option<String>,
    /// Whether the node holding their session reported on it lately ([`REPORT_FRESH_MS`]).
    pub online: bool,
    /// No passed step and no keystroke for the room's `stuck_after` (meaningful while online).
    pub stuck: bool,
    /// What the node holding the session last saw (0 before its first report).
    pub memory_bytes: i64,
    pub pids: i64,
    /// One per [`Progress::steps`]: whether a check of that step passed.
    pub passed: Vec<bool>,
    pub passed_count: usize,
    /// Checks run (passed or not).
    pub checks: usize,
}

/// A report older than this (milliseconds) no longer counts a learner's session as live: three
/// sweeps of the node that holds it (see `server/web/rooms.rs`).
pub const REPORT_FRESH_MS: i64 = 15_000;

#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    #[serde(skip)]
    pub room: RoomRow,
    pub steps: Vec<StepColumn>,
    pub learners: Vec<LearnerProgress>,
}

impl Progress {
    pub fn build(
        room: RoomRow,
        learners: Vec<LearnerRow>,
        checks: &[CheckRow],
        lessons: &crate::lessons::Loaded,
        now: i64,
        stuck_after: std::time::Duration,
    ) -> Progress {
        let steps: Vec<StepColumn> = room
            .lessons
            .iter()
            .filter_map(|t| lessons.find(t))
            .flat_map(|l| {
                l.steps.iter().filter(|s| s.check.is_some()).map(|s| StepColumn {
                    lesson: l.topic.clone(),
                    step: s.id.clone(),
                    title_en: s.title.get("en").to_string(),
                    title_ja: s.title.get("ja").to_string(),
                })
            })
            .collect();
        let mut passed: BTreeMap<&str, BTreeSet<(&str, &str)>> = BTreeMap::new();
        let mut latest: BTreeMap<&str, &CheckRow> = BTreeMap::new();
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        let mut last_pass: BTreeMap<&str, i64> = BTreeMap::new();
        for c in checks {
            if c.passed {
                last_pass.insert(c.learner_id.as_str(), c.at);
                passed.entry(c.learner_id.as_str()).or_default().insert((c.lesson.as_str(), c.step.as_str()));
            }
            *count.entry(c.learner_id.as_str()).or_default() += 1;
            // Checks come oldest first: the last one seen is the latest.
            if room.lessons.contains(&c.lesson) {
                latest.insert(c.learner_id.as_str(), c);
            }
        }
        let first = room.lessons.first().cloned().unwrap_or_default();
        let learners = learners
            .into_iter()
            .map(|l| {
                let done = passed.get(l.id.as_str());
                let row: Vec<bool> = steps
                    .iter()
                    .map(|s| done.is_some_and(|d| d.contains(&(s.lesson.as_str(), s.step.as_str()))))
                    .collect();
                let current_lesson =
                    latest.get(l.id.as_str()).map(|c| c.lesson.clone()).unwrap_or_else(|| first.clone());
                let current_step = steps
                    .iter()
                    .zip(&row)
                    .find(|(s, ok)| s.lesson == current_lesson && !**ok)
                    .map(|(s, _)| s.step.clone());
                let input = l.report.as_ref().map(|r| r.last_input_at);
                let progress_at = last_pass.get(l.id.as_str()).copied().unwrap_or(l.joined_at);
                let quiet_since = progress_at.max(input.unwrap_or(l.joined_at));
                let stuck_ms = i64::try_from(stuck_after.as_millis()).unwrap_or(i64::MAX);
                LearnerProgress {
                    current_lesson,
                    current_step,
                    online: l.report.as_ref().is_some_and(|r| now - r.at <= REPORT_FRESH_MS),
                    stuck: now - quiet_since >= stuck_ms,
                    memory_bytes: l.report.as_ref().map_or(0, |r| r.memory_bytes),
                    pids: l.report.as_ref().map_or(0, |r| r.pids),
                    passed_count: row.iter().filter(|p| **p).count(),
                    passed: row,
                    checks: count.get(l.id.as_str()).copied().unwrap_or(0),
                    joined_at: rfc3339(l.joined_at),
                    last_activity: rfc3339(l.last_seen_at.max(input.unwrap_or(0))),
                    id: l.id,
                    name: l.name,
                    session: l.session_id,
                }
            })
            .collect();
        Progress { room, steps, learners }
    }
}

/// One CSV field: always quoted, quotes doubled, and a leading `= + - @` (or tab, CR) defused
/// with an apostrophe so a spreadsheet shows a name as text instead of running it as a formula.
fn field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{v}") } else { v.to_string() };
    format!("\"{}\"", v.replace('"', "\"\""))
}

/// The progress as CSV (RFC 4180, CRLF): one row per learner, one column per checked step
/// (`1` passed, `0` not yet).
pub fn csv(p: &Progress) -> String {
    let mut head = vec!["learner".to_string(), "name".into(), "joined_at".into(), "last_activity".into()];
    head.push("current_lesson".into());
    head.push("passed".into());
    head.extend(p.steps.iter().map(|s| format!("{}/{}", s.lesson, s.step)));
    let mut out = head.iter().map(|h| field(h)).collect::<Vec<_>>().join(",") + "\r\n";
    for l in &p.learners {
        let mut row = vec![
            field(&l.id),
            field(l.name.as_deref().unwrap_or("")),
            field(&l.joined_at),
            field(&l.last_activity),
            field(&l.current_lesson),
            field(&l.passed_count.to_string()),
        ];
        row.extend(l.passed.iter().map(|p| field(if *p { "1" } else { "0" })));
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}
