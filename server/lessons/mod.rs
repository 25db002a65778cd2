//! Lessons: the interactive pages that teach each namespace and cgroups on the live shell.
//! Content lives in `lessons/<topic>.toml` (English and Japanese side by side; authors edit
//! those files, not Rust) and is embedded in the binary. Each step may name a *check* — Rust code
//! in [`checks`] that reads the kernel's view of the session from the host, so printing text in
//! the terminal never passes one.

pub mod checks;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

pub use nsplay_sandbox::Version as Hierarchy;

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
    /// What changes on a cgroup v1 host (`[steps.v1]`).
    #[serde(default)]
    pub v1: Option<StepVariant>,
    /// What changes on a cgroup v2 host (`[steps.v2]`).
    #[serde(default)]
    pub v2: Option<StepVariant>,
}

/// A step on one hierarchy: every field given replaces the step's own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepVariant {
    /// The step does not exist on this hierarchy.
    #[serde(default)]
    pub skip: bool,
    pub commands: Option<Vec<String>>,
    pub check: Option<String>,
    pub check_args: Option<BTreeMap<String, String>>,
    pub title: Option<Text>,
    pub text: Option<Text>,
}

/// A lesson's intro on one hierarchy (`[v1.intro]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LessonVariant {
    pub intro: Option<Text>,
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
    #[serde(default)]
    pub v1: Option<LessonVariant>,
    #[serde(default)]
    pub v2: Option<LessonVariant>,
    /// The image of the store its sessions start on (docs/images.md); none: the server's default.
    #[serde(default)]
    pub image: Option<String>,
}

impl Lesson {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The lesson as it reads on hierarchy `h`: its variants applied and gone.
    pub fn on(&self, h: Hierarchy) -> Lesson {
        fn pick<T: Clone>(h: Hierarchy, v1: &Option<T>, v2: &Option<T>) -> Option<T> {
            if h == Hierarchy::V1 { v1.clone() } else { v2.clone() }
        }
        let mut l = self.clone();
        if let Some(LessonVariant { intro: Some(intro) }) = pick(h, &self.v1, &self.v2) {
            l.intro = intro;
        }
        l.v1 = None;
        l.v2 = None;
        l.steps = self
            .steps
            .iter()
            .filter_map(|s| {
                let mut s = s.clone();
                let variant: Option<StepVariant> = pick(h, &s.v1, &s.v2);
                s.v1 = None;
                s.v2 = None;
                let Some(v) = variant else { return Some(s) };
                if v.skip {
                    return None;
                }
                if let Some(c) = v.commands {
                    s.commands = c;
                }
                if let Some(c) = v.check {
                    s.check = Some(c).filter(|c| !c.is_empty());
                }
                if let Some(a) = v.check_args {
                    s.check_args = a;
                }
                if let Some(t) = v.title {
                    s.title = t;
                }
                if let Some(t) = v.text {
                    s.text = t;
                }
                Some(s)
            })
            .collect();
        l
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
            if !ids.insert(step.id.clone()) {
                return Err(invalid(&name, format!("step id `{}` is used twice", step.id)));
            }
        }
        for h in [Hierarchy::V1, Hierarchy::V2] {
            validate(&name, &lesson.on(h)).map_err(|e| match e {
                LessonError::Invalid { file, message } => {
                    LessonError::Invalid { file, message: format!("on cgroup {h:?}: {message}") }
                }
            })?;
        }
        lessons.push(lesson);
    }
    lessons.sort_by_key(|l| l.order);
    Ok(lessons)
}

/// One resolved lesson: step ids, known checks with their arguments, both languages.
fn validate(name: &str, lesson: &Lesson) -> Result<(), LessonError> {
    for step in &lesson.steps {
        if step.id.is_empty() || !step.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(invalid(name, format!("step id `{}` must be [a-z0-9-]+", step.id)));
        }
        if let Some(c) = &step.check {
            checks::validate(c, &step.check_args).map_err(|m| invalid(name, format!("step `{}`: {m}", step.id)))?;
        }
        for t in [&step.title, &step.text] {
            if t.en.trim().is_empty() || t.ja.trim().is_empty() {
                return Err(invalid(name, format!("step `{}` lacks English or Japanese text", step.id)));
            }
        }
    }
    Ok(())
}

/// The catalog as it reads on hierarchy `h`, resolved once (the files are embedded; a unit test
/// proves they load on both).
pub fn catalog(h: Hierarchy) -> &'static [Lesson] {
    static V1: OnceLock<Vec<Lesson>> = OnceLock::new();
    static V2: OnceLock<Vec<Lesson>> = OnceLock::new();
    let cell = if h == Hierarchy::V1 { &V1 } else { &V2 };
    cell.get_or_init(|| {
        load().expect("embedded lessons are valid (checked by a unit test)").iter().map(|l| l.on(h)).collect()
    })
}

pub fn find(topic: &str, h: Hierarchy) -> Option<&'static Lesson> {
    catalog(h).iter().find(|l| l.topic == topic)
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
        let lessons: Vec<Lesson> = load().unwrap().iter().map(|l| l.on(Hierarchy::V2)).collect();
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
        let uts = find("uts", Hierarchy::V2).unwrap();
        let cmds: Vec<&str> = uts.steps.iter().flat_map(|s| s.commands.iter().map(String::as_str)).collect();
        assert_eq!(cmds, ["unshare -u /bin/sh", "hostname my-new-hostname", "uname -n", "exit", "uname -n"]);
    }

    #[test]
    fn lessons_adapt_to_the_hierarchy() {
        let cmds = |topic: &str, h| -> Vec<String> {
            find(topic, h).unwrap().steps.iter().flat_map(|s| s.commands.clone()).collect()
        };
        // v1: the controllers' own hierarchies, their file names, and no step that needs
        // delegation of the memory controller.
        let v1 = cmds("cgroups", Hierarchy::V1);
        assert!(v1.iter().any(|c| c.contains("mount -t cgroup -o memory none /tmp/cgm")), "{v1:?}");
        for v2_only in ["memory.max", "memory.events", "cpu.max", "/tmp/cg/"] {
            assert!(!v1.iter().any(|c| c.contains(v2_only)), "v1 runs {v2_only}: {v1:?}");
        }
        let v1_steps = &find("cgroups", Hierarchy::V1).unwrap().steps;
        assert!(v1_steps.iter().all(|s| s.check.as_deref() != Some("cgroup_child_memory")));
        assert!(v1_steps.iter().all(|s| s.id != "child-oom"));
        assert!(find("cgroups", Hierarchy::V1).unwrap().intro.en.contains("This server runs on cgroup v1"));
        // v2: as written.
        let v2 = cmds("cgroups", Hierarchy::V2);
        assert!(v2.iter().any(|c| c.contains("mount -t cgroup2 none /tmp/cg")));
        assert!(!v2.iter().any(|c| c.contains("/tmp/cgm")));
        assert!(find("cgroups", Hierarchy::V2).unwrap().step("child-oom").is_some());
        // The cgroup-namespace lesson promises `0::/` only where it is the only line.
        assert!(find("cgroup", Hierarchy::V2).unwrap().intro.en.contains("one line starting with `0::`"));
        assert!(find("cgroup", Hierarchy::V1).unwrap().intro.en.contains("one line per hierarchy"));
        assert!(cmds("cgroup", Hierarchy::V1).iter().any(|c| c.contains("grep ^0::")));
        // A lesson without variants reads the same on both.
        assert_eq!(cmds("uts", Hierarchy::V1), cmds("uts", Hierarchy::V2));
    }

    #[test]
    fn the_japanese_follows_the_native_readers_corrections() {
        let raw: String = Files::iter()
            .map(|n| String::from_utf8(Files::get(&n).unwrap().data.into_owned()).unwrap())
            .chain([include_str!("checks.rs").to_string(), include_str!("../../web/ui.toml").to_string()])
            .collect();
        // One term each: 「time 名前空間」, 「対応づけ」; a lesson is a lesson.
        for gone in ["時間名前空間", "対応付け", "ウォークスルー", "入れ子になります", "まだです"]
        {
            assert!(!raw.contains(gone), "{gone} is still used");
        }
        let ja = |topic: &str| find(topic, Hierarchy::V2).unwrap().intro.ja.clone();
        assert!(ja("uts").contains(
            "UTS は \"UNIX Time-sharing System\" の略で、`uname` が値を返す構造体 `struct utsname` の名前に由来します"
        ));
        assert!(ja("ipc").contains("`ipcs` は自分が動いている IPC 名前空間のオブジェクトを一覧表示します"));
        assert!(ja("time").contains("凍結したコンテナを後で、あるいは別のマシンでリストアすると"));
        let cgroup = find("cgroup", Hierarchy::V2).unwrap();
        assert!(cgroup.steps.iter().any(|s| s.text.ja.contains("コンテナの中から見た `/sys/fs/cgroup` の姿です")));
        assert!(ja("cgroups").contains("入れ子にでき"));
        assert!(ja("uts").contains("このレッスンでは"));
    }

    #[test]
    fn prose_is_escaped() {
        assert_eq!(prose_html("a `<b>` c\n\nd"), "<p>a <code>&lt;b&gt;</code> c</p>\n<p>d</p>\n");
    }
}
