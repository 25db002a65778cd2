//! Lessons: the interactive pages that teach each namespace and cgroups on the live shell.
//! Content lives in `lessons/<topic>.toml` (English and Japanese side by side; authors edit
//! those files, not Rust) and is embedded in the binary. Each step may name a *check* — Rust code
//! in [`checks`] that reads the kernel's view of the session from the host, so printing text in
//! the terminal never passes one.

pub mod checks;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// Text in both languages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub en: String,
    pub ja: String,
}

impl Text {
    pub fn get(&self, lang: &str) -> &str {
        if lang == "ja" { &self.ja } else { &self.en }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: String,
    pub commands: Vec<String>,
    pub check: Option<String>,
    #[serde(default)]
    pub check_args: BTreeMap<String, String>,
    pub title: Text,
    pub text: Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    pub topic: String,
    pub order: u32,
    pub title: Text,
    pub summary: Text,
    pub intro: Text,
    pub steps: Vec<Step>,
}

impl Lesson {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
}

#[derive(rust_embed::Embed)]
#[folder = "lessons/"]
#[include = "*.toml"]
struct Files;

#[derive(Debug, thiserror::Error)]
pub enum LessonError {
    #[error("lessons/{file}: {message}")]
    Invalid { file: String, message: String },
}

fn invalid(file: &str, message: impl Into<String>) -> LessonError {
    LessonError::Invalid { file: file.to_string(), message: message.into() }
}

/// Parses and validates every lesson file; errors name the file and what is wrong.
pub fn load() -> Result<Vec<Lesson>, LessonError> {
    let mut lessons = Vec::new();
    for name in Files::iter() {
        let file = Files::get(&name).expect("listed file exists");
        let text = std::str::from_utf8(&file.data).map_err(|_| invalid(&name, "not UTF-8"))?;
        let lesson: Lesson = toml::from_str(text).map_err(|e| invalid(&name, e.to_string()))?;
        if format!("{}.toml", lesson.topic) != name {
            return Err(invalid(&name, format!("topic `{}` does not match the file name", lesson.topic)));
        }
        let mut ids = std::collections::BTreeSet::new();
        for step in &lesson.steps {
            if step.id.is_empty() || !step.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(invalid(&name, format!("step id `{}` must be [a-z0-9-]+", step.id)));
            }
            if !ids.insert(step.id.clone()) {
                return Err(invalid(&name, format!("step id `{}` is used twice", step.id)));
            }
            if let Some(c) = &step.check {
                checks::validate(c, &step.check_args)
                    .map_err(|m| invalid(&name, format!("step `{}`: {m}", step.id)))?;
            }
            for t in [&step.title, &step.text] {
                if t.en.trim().is_empty() || t.ja.trim().is_empty() {
                    return Err(invalid(&name, format!("step `{}` lacks English or Japanese text", step.id)));
                }
            }
        }
        lessons.push(lesson);
    }
    lessons.sort_by_key(|l| l.order);
    Ok(lessons)
}

/// The catalog, loaded once (the files are embedded; a unit test proves they load).
pub fn catalog() -> &'static [Lesson] {
    static CATALOG: OnceLock<Vec<Lesson>> = OnceLock::new();
    CATALOG.get_or_init(|| load().expect("embedded lessons are valid (checked by a unit test)"))
}

pub fn find(topic: &str) -> Option<&'static Lesson> {
    catalog().iter().find(|l| l.topic == topic)
}

/// Lesson prose to HTML: paragraphs on blank lines, `code` in backticks; everything escaped.
pub fn prose_html(text: &str) -> String {
    let mut out = String::new();
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        out.push_str("<p>");
        for (i, part) in para.split('`').enumerate() {
            let esc = escape(part);
            if i % 2 == 1 {
                out.push_str(&format!("<code>{esc}</code>"));
            } else {
                out.push_str(&esc);
            }
        }
        out.push_str("</p>\n");
    }
    out
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lesson_loads_with_both_languages_and_known_checks() {
        let lessons = load().unwrap();
        let topics: Vec<&str> = lessons.iter().map(|l| l.topic.as_str()).collect();
        for t in ["mnt", "uts", "pid", "ipc", "user", "net", "cgroup", "time", "cgroups"] {
            assert!(topics.contains(&t), "lesson {t} is missing");
        }
        for l in &lessons {
            for t in [&l.title, &l.summary, &l.intro] {
                assert!(!t.en.trim().is_empty() && !t.ja.trim().is_empty(), "{}", l.topic);
            }
            assert!(l.steps.iter().any(|s| s.check.is_some()), "{} has no check", l.topic);
        }
    }

    #[test]
    fn uts_lesson_is_the_tutorial_verbatim() {
        let uts = find("uts").unwrap();
        let cmds: Vec<&str> = uts.steps.iter().flat_map(|s| s.commands.iter().map(String::as_str)).collect();
        assert_eq!(cmds, ["unshare -u /bin/sh", "hostname my-new-hostname", "uname -n", "exit", "uname -n"]);
    }

    #[test]
    fn prose_is_escaped() {
        assert_eq!(prose_html("a `<b>` c\n\nd"), "<p>a <code>&lt;b&gt;</code> c</p>\n<p>d</p>\n");
    }
}
