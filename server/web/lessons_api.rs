//! `GET /api/lessons` and `GET /api/lessons/<topic>` (docs/api.md): the catalog as JSON for
//! tools and embedding scripts — lessons with their steps, commands, check kinds, hint counts
//! and languages, and the lessons that did not load. What a check compares against (paths,
//! patterns, quiz answers) and the solutions stay on the server.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::error::ApiError;
use crate::lessons::{Catalog, Lesson, Source};

fn source(l: &Lesson) -> &'static str {
    match l.source {
        Source::Builtin => "builtin",
        Source::Dir { .. } => "directory",
    }
}

fn summary(l: &Lesson) -> Value {
    json!({
        "topic": l.topic,
        "order": l.order,
        "title": l.title.json(),
        "summary": l.summary.json(),
        "languages": l.languages(),
        "source": source(l),
        "steps": l.steps.len(),
        "checks": l.steps.iter().filter(|s| s.check.is_some()).count(),
        "page": format!("/learn/{}", l.topic),
        "url": format!("/api/lessons/{}", l.topic),
    })
}

/// `GET /api/lessons`: every lesson in the order of /learn, and the broken ones.
pub async fn list(State(catalog): State<Arc<Catalog>>) -> Json<Value> {
    let loaded = catalog.get();
    let lessons: Vec<Value> = loaded.lessons.iter().map(|l| summary(l)).collect();
    Json(json!({"lessons": lessons, "broken": loaded.broken}))
}

/// `GET /api/lessons/<topic>`: one lesson with its steps (text as the author wrote it, in
/// Markdown).
pub async fn get(State(catalog): State<Arc<Catalog>>, Path(topic): Path<String>) -> Result<Json<Value>, ApiError> {
    let loaded = catalog.get();
    let l = loaded.find(&topic).ok_or_else(|| ApiError::not_found(format!("there is no lesson called `{topic}`")))?;
    let steps: Vec<Value> = l
        .steps
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "title": s.title.json(),
                "text": s.text.json(),
                "commands": s.commands,
                "check": s.check.as_ref().map(|c| json!({
                    "kinds": c.kinds(),
                    "quiz": c.is_quiz(),
                    "url": format!("/api/sessions/{{id}}/checks/{}/{}", l.topic, s.id),
                })),
                "hints": s.hints.len(),
                "needs": s.needs,
            })
        })
        .collect();
    let mut v = summary(l);
    v["intro"] = l.intro.json();
    v["files"] = json!(super::pages::files_base(l));
    v["steps"] = json!(steps);
    Ok(Json(v))
}
