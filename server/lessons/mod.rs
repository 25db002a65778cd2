//! Lessons: the interactive pages that teach each namespace and cgroups on the live shell.
//! Content lives in TOML files (authors edit those, not Rust): the built-in ones in
//! `lessons/<topic>.toml`, embedded in the binary, and an operator's own in directories given
//! with `--lessons` ([`catalog`]: merged, reloaded, broken ones listed). Step text is Markdown
//! ([`prose_html`], raw HTML escaped). Each step may name a *check*: a built-in kind (Rust code
//! in [`checks`]) or an author's composition of generic kinds ([`author`]); both read the
//! kernel's view of the session from the host, so printing text in the terminal never passes one.

pub mod author;
pub mod catalog;
pub mod checks;
pub mod files;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer};

pub use catalog::{Broken, Catalog, Loaded};
pub use nsplay_sandbox::Version as Hierarchy;

/// The languages a lesson may be written in (the catalog's, `text::LANGS`).
pub const LANGS: [&str; 2] = crate::text::LANGS;

/// Text in one or both languages; a reader of the other gets the one given (and the page says
/// so, see [`Lesson::languages`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    #[serde(default)]
    pub en: Option<String>,
    #[serde(default)]
    pub ja: Option<String>,
}

impl Text {
    /// The text in `lang`, or in the other language when it has none in `lang`.
    pub fn get(&self, lang: &str) -> &str {
        let (want, other) = if lang == "ja" { (&self.ja, &self.en) } else { (&self.en, &self.ja) };
        want.as_deref().filter(|t| !t.trim().is_empty()).or(other.as_deref()).unwrap_or("")
    }

    /// Whether it is written in `lang`.
    pub fn has(&self, lang: &str) -> bool {
        let t = if lang == "ja" { &self.ja } else { &self.en };
        t.as_deref().is_some_and(|t| !t.trim().is_empty())
    }

    /// Both languages, as JSON (`null` where not written).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"en": self.en, "ja": self.ja})
    }
}

/// What a step checks: a built-in kind by name (`check = "uts_nested_hostname"`, with
/// `check_args`), or an author's checks (`[[steps.check]]`, every one must pass).
#[derive(Debug, Clone)]
pub enum Check {
    Kind(String),
    Author(Vec<author::Spec>),
}

impl Check {
    /// The kinds it uses, for the API (`["file", "listen"]`; a built-in kind by its name).
    pub fn kinds(&self) -> Vec<String> {
        match self {
            Check::Kind(k) => vec![k.clone()],
            Check::Author(specs) => {
                let mut kinds = BTreeSet::new();
                for s in specs {
                    s.kinds(&mut kinds);
                }
                kinds.into_iter().collect()
            }
        }
    }

    /// Whether the learner types an answer for it (a `quiz` among its checks).
    pub fn is_quiz(&self) -> bool {
        self.kinds().iter().any(|k| k == "quiz")
    }
}

impl<'de> Deserialize<'de> for Check {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // A string names a built-in kind; a table or an array of tables is the author's
        // checks (their own errors, e.g. an unknown key, are kept in the message).
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(Check::Kind(s)),
            v @ toml::Value::Table(_) => {
                v.try_into().map(|s| Check::Author(vec![s])).map_err(|e| D::Error::custom(e.message()))
            }
            v @ toml::Value::Array(_) => v.try_into().map(Check::Author).map_err(|e| D::Error::custom(e.message())),
            other => Err(D::Error::custom(format!(
                "`check` is a built-in kind's name or [[steps.check]] tables, not a {}",
                other.type_str()
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: String,
    /// What the Run buttons type (none for a quiz step).
    #[serde(default)]
    pub commands: Vec<String>,
    pub check: Option<Check>,
    #[serde(default)]
    pub check_args: BTreeMap<String, String>,
    /// Hints the page reveals one at a time on demand.
    #[serde(default)]
    pub hints: Vec<Text>,
    /// Steps whose checks must have passed before this one's runs.
    #[serde(default)]
    pub needs: Vec<String>,
    /// What `nsplay lessons test` types to pass the check (default: `commands`).
    #[serde(default)]
    pub solution: Option<Vec<String>>,
    pub title: Text,
    pub text: Text,
    /// What changes on a cgroup v1 host (`[steps.v1]`).
    #[serde(default)]
    pub v1: Option<StepVariant>,
    /// What changes on a cgroup v2 host (`[steps.v2]`).
    #[serde(default)]
    pub v2: Option<StepVariant>,
}

impl Step {
    /// What `lessons test` types for this step.
    pub fn solution(&self) -> &[String] {
        self.solution.as_deref().unwrap_or(&self.commands)
    }
}

/// A step on one hierarchy: every field given replaces the step's own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepVariant {
    /// The step does not exist on this hierarchy.
    #[serde(default)]
    pub skip: bool,
    pub commands: Option<Vec<String>>,
    pub check: Option<Check>,
    pub check_args: Option<BTreeMap<String, String>>,
    pub solution: Option<Vec<String>>,
    pub title: Option<Text>,
    pub text: Option<Text>,
}

/// A lesson's intro on one hierarchy (`[v1.intro]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LessonVariant {
    pub intro: Option<Text>,
}

/// Where a lesson came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Source {
    /// Embedded in the binary (`lessons/`).
    #[default]
    Builtin,
    /// A file in a lessons directory; its images are served from `dir`.
    Dir { file: std::path::PathBuf, dir: std::path::PathBuf },
}

fn default_order() -> u32 {
    1000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    pub topic: String,
    #[serde(default = "default_order")]
    pub order: u32,
    pub title: Text,
    pub summary: Text,
    pub intro: Text,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub v1: Option<LessonVariant>,
    #[serde(default)]
    pub v2: Option<LessonVariant>,
    #[serde(skip)]
    pub source: Source,
    /// The image of the store its sessions start on (docs/images.md); none: the server's default.
    #[serde(default)]
    pub image: Option<String>,
}

impl Lesson {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The languages it is written in: those of its title (validation makes every text of the
    /// lesson follow).
    pub fn languages(&self) -> Vec<&'static str> {
        LANGS.iter().copied().filter(|l| self.title.has(l)).collect()
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
                    s.check = match c {
                        Check::Kind(k) if k.is_empty() => None,
                        c => Some(c),
                    };
                }
                if let Some(a) = v.check_args {
                    s.check_args = a;
                }
                if let Some(a) = v.solution {
                    s.solution = Some(a);
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

/// The session limits a lesson's prose may name, so that it says what this server enforces
/// (`--memory`, `--pids`, `--cpu`, `--disk`) rather than the defaults it was written with:
/// `{{memory}}` "256 MiB", `{{memory_bytes}}` "268435456", `{{pids}}` "128", `{{cpu}}` "0.5"
/// (cores), `{{cpu_quota_us}}` "50000" and `{{cpu_quota_ms}}` "50" (per 100 ms period),
/// `{{disk}}` "64 MiB". Numbers and units read the same in English and Japanese. Other
/// `{{…}}` stay as written; commands are never changed (they run as written).
pub fn fill_limits(text: &str, limits: &nsplay_sandbox::Limits) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    let quota_us = (limits.cpu * nsplay_sandbox::CPU_PERIOD_US as f64).round() as u64;
    let quota_ms = if quota_us.is_multiple_of(1000) {
        (quota_us / 1000).to_string()
    } else {
        format!("{:.1}", quota_us as f64 / 1000.0)
    };
    let values = [
        ("memory", nsplay_sandbox::format_size(limits.memory_bytes)),
        ("memory_bytes", limits.memory_bytes.to_string()),
        ("pids", limits.pids.to_string()),
        ("cpu", format!("{}", limits.cpu)),
        ("cpu_quota_us", quota_us.to_string()),
        ("cpu_quota_ms", quota_ms),
        ("disk", nsplay_sandbox::format_size(limits.disk_bytes)),
    ];
    crate::text::fill_between(text, ("{{", "}}"), &values)
}

impl Text {
    fn with_limits(&self, limits: &nsplay_sandbox::Limits) -> Text {
        Text {
            en: self.en.as_deref().map(|t| fill_limits(t, limits)),
            ja: self.ja.as_deref().map(|t| fill_limits(t, limits)),
        }
    }
}

impl Lesson {
    /// Its prose (intro, step titles, texts and hints) naming the server's session `limits`
    /// ([`fill_limits`]).
    pub fn with_limits(mut self, limits: &nsplay_sandbox::Limits) -> Lesson {
        self.intro = self.intro.with_limits(limits);
        self.summary = self.summary.with_limits(limits);
        for s in &mut self.steps {
            s.title = s.title.with_limits(limits);
            s.text = s.text.with_limits(limits);
            for h in &mut s.hints {
                *h = h.with_limits(limits);
            }
        }
        self
    }
}

#[derive(rust_embed::Embed)]
#[folder = "lessons/"]
#[include = "*.toml"]
struct Files;

/// The built-in lessons, parsed and validated (each either a lesson or what is wrong with it).
pub fn builtin() -> Vec<Result<Lesson, Vec<Broken>>> {
    Files::iter()
        .map(|name| {
            let file = Files::get(&name).expect("listed file exists");
            let label = format!("lessons/{name}");
            let topic = name.trim_end_matches(".toml");
            match std::str::from_utf8(&file.data) {
                Ok(text) => parse(&label, text, topic, Source::Builtin),
                Err(_) => Err(vec![Broken::new(&label, None, None, "the file is not UTF-8")]),
            }
        })
        .collect()
}

/// The line (1-based) of byte `at` in `text`, and the key written on it (`intro`, `check`,
/// `steps.check`): what an author looks for.
fn line_key(text: &str, at: usize) -> (usize, Option<String>) {
    let at = at.min(text.len());
    let line_no = text[..at].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let key = if line.starts_with('[') {
        Some(line.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    } else {
        line.split_once('=').map(|(k, _)| k.trim().to_string())
    };
    (line_no, key.filter(|k| !k.is_empty()))
}

/// Where step `step`'s `key` is written (or the step itself when the key is not written out),
/// for messages about values that parsed but are wrong.
fn locate(text: &str, step: Option<&str>, key: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let from = step
        .and_then(|id| {
            lines.iter().position(|l| {
                let l = l.trim();
                l.strip_prefix("id")
                    .map(str::trim_start)
                    .and_then(|r| r.strip_prefix('='))
                    .is_some_and(|v| v.trim().trim_matches(|c| c == '"' || c == '\'') == id)
            })
        })
        .unwrap_or(0);
    let first = key.split('.').next().unwrap_or(key);
    let found = lines.iter().enumerate().skip(from).find(|(i, l)| {
        let l = l.trim();
        // Stop at the next step.
        if *i > from && step.is_some() && l.starts_with("[[steps]]") {
            return false;
        }
        l.starts_with(&format!("{first} "))
            || l.starts_with(&format!("{first}="))
            || l.contains(&format!("[steps.{first}"))
            || (step.is_none() && l.starts_with(&format!("[{first}")))
    });
    let next_step =
        lines.iter().enumerate().skip(from + 1).find(|(_, l)| l.trim().starts_with("[[steps]]")).map(|(i, _)| i);
    match found {
        Some((i, _)) if step.is_none() || next_step.is_none_or(|n| i < n) => i + 1,
        _ => from + 1,
    }
}

/// Parses and validates one lesson file, labelled `label` in messages, whose topic must be
/// `topic` (its file or directory name). Errors name the file, the line and the key.
pub fn parse(label: &str, text: &str, topic: &str, source: Source) -> Result<Lesson, Vec<Broken>> {
    let mut lesson: Lesson = toml::from_str(text).map_err(|e| {
        let (line, key) = e.span().map(|s| line_key(text, s.start)).map_or((None, None), |(l, k)| (Some(l), k));
        vec![Broken::new(label, line, key.as_deref(), e.message().trim())]
    })?;
    lesson.source = source;
    let mut errors = Vec::new();
    let mut err = |step: Option<&str>, key: &str, msg: String| {
        errors.push(Broken::new(label, Some(locate(text, step, key)), Some(key), &msg));
    };
    if lesson.topic != topic {
        err(None, "topic", format!("topic `{}` does not match the file name (`{topic}`)", lesson.topic));
    }
    if !is_id(&lesson.topic) {
        err(None, "topic", format!("topic `{}` must be [a-z0-9-]+", lesson.topic));
    }
    let langs = lesson.languages();
    if langs.is_empty() {
        err(None, "title", "the title has no text: give `en` or `ja` (or both)".into());
    }
    let need_langs = |t: &Text| langs.iter().copied().filter(|l| !t.has(l)).collect::<Vec<_>>();
    for (key, t) in [("summary", &lesson.summary), ("intro", &lesson.intro)] {
        for l in need_langs(t) {
            err(None, key, format!("the title is written in `{l}` but `{key}.{l}` is missing"));
        }
    }
    let mut ids = BTreeSet::new();
    for step in &lesson.steps {
        let id = Some(step.id.as_str());
        if !is_id(&step.id) {
            err(id, "id", format!("step id `{}` must be [a-z0-9-]+", step.id));
        }
        for n in &step.needs {
            if !ids.contains(n.as_str()) {
                err(
                    id,
                    "needs",
                    format!("step `{}` needs `{n}`, which is not an earlier step of this lesson", step.id),
                );
            }
        }
        if !ids.insert(step.id.as_str()) {
            err(id, "id", format!("step id `{}` is used twice", step.id));
        }
        for (key, t) in [("title", &step.title), ("text", &step.text)] {
            for l in need_langs(t) {
                err(id, key, format!("step `{}`: the lesson is written in `{l}` but `{key}.{l}` is missing", step.id));
            }
        }
        for (i, h) in step.hints.iter().enumerate() {
            for l in need_langs(h) {
                err(id, "hints", format!("step `{}`: hint {} lacks `{l}`", step.id, i + 1));
            }
        }
    }
    for h in [Hierarchy::V1, Hierarchy::V2] {
        let on = lesson.on(h);
        for step in &on.steps {
            let id = Some(step.id.as_str());
            let on_h = |m: String| {
                if lesson.v1.is_some() || lesson.v2.is_some() || step_has_variant(&lesson, &step.id) {
                    format!("on cgroup {h:?}: {m}")
                } else {
                    m
                }
            };
            for (key, cmds) in [("commands", &step.commands), ("solution", &step.solution().to_vec())] {
                if cmds.iter().any(|c| c.trim().is_empty()) {
                    err(id, key, on_h(format!("step `{}` has an empty command in `{key}`", step.id)));
                }
            }
            match &step.check {
                None => {}
                Some(Check::Kind(k)) => {
                    if let Err(m) = checks::validate(k, &step.check_args) {
                        err(id, "check", on_h(format!("step `{}`: {m}", step.id)));
                    }
                }
                Some(Check::Author(specs)) => {
                    if !step.check_args.is_empty() {
                        err(
                            id,
                            "check_args",
                            format!(
                                "step `{}`: check_args is for built-in kinds; give the arguments in [[steps.check]]",
                                step.id
                            ),
                        );
                    }
                    for s in specs {
                        if let Err((key, m)) = s.validate() {
                            err(id, "check", on_h(format!("step `{}`: check.{key}: {m}", step.id)));
                        }
                    }
                }
            }
        }
    }
    // Each message once (both hierarchies report what they share).
    let mut seen = BTreeSet::new();
    errors.retain(|e| seen.insert(e.to_string()));
    if errors.is_empty() { Ok(lesson) } else { Err(errors) }
}

fn step_has_variant(l: &Lesson, id: &str) -> bool {
    l.step(id).is_some_and(|s| s.v1.is_some() || s.v2.is_some())
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Lesson Markdown to HTML: paragraphs, lists, `code`, code blocks, emphasis, tables, links
/// and images. Raw HTML is shown as text, never passed through: an author's text cannot
/// inject a script. Links go only to http(s), mail or this site; images only to files
/// beside the lesson, served under `files` (`/learn/<topic>/files/`; `None`: no images).
pub fn prose_html(text: &str, files: Option<&str>) -> String {
    use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    let safe_link = |url: &str| {
        let lower = url.trim().to_ascii_lowercase();
        lower.starts_with("https://")
            || lower.starts_with("http://")
            || lower.starts_with("mailto:")
            || lower.starts_with('#')
            || (lower.starts_with('/') && !lower.starts_with("//"))
    };
    let events = Parser::new_ext(text, opts).map(|ev| match ev {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            let dest_url = if safe_link(&dest_url) { dest_url } else { CowStr::from("#") };
            Event::Start(Tag::Link { link_type, dest_url, title, id })
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            let dest_url = match (files, files::relative(&dest_url)) {
                (Some(base), Some(rel)) => CowStr::from(format!("{base}{rel}")),
                // Nowhere: the page's CSP would refuse another site anyway.
                _ => CowStr::from(""),
            };
            Event::Start(Tag::Image { link_type, dest_url, title, id })
        }
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn find(topic: &str, h: Hierarchy) -> Option<Arc<Lesson>> {
        catalog::load(h, &[]).find(topic).cloned()
    }

    fn load() -> Result<Vec<Lesson>, Vec<Broken>> {
        builtin().into_iter().collect()
    }

    fn prose(l: &Lesson, lang: &str) -> String {
        let mut out = vec![l.intro.get(lang).to_string(), l.summary.get(lang).to_string()];
        for s in &l.steps {
            out.push(s.title.get(lang).to_string());
            out.push(s.text.get(lang).to_string());
            out.extend(s.hints.iter().map(|h| h.get(lang).to_string()));
        }
        out.join("\n")
    }

    #[test]
    fn lessons_name_the_servers_limits() {
        let limits = nsplay_sandbox::Limits {
            memory_bytes: 192 << 20,
            pids: 96,
            cpu: 0.25,
            disk_bytes: 32 << 20,
            shm_bytes: 16 << 20,
        };
        for h in [Hierarchy::V1, Hierarchy::V2] {
            let loaded = catalog::load_with(h, &limits, &[]);
            for lang in LANGS {
                let cg = prose(loaded.find("cgroups").unwrap(), lang);
                for want in ["192 MiB", "96", "0.25"] {
                    assert!(cg.contains(want), "{h:?} {lang}: the cgroups lesson lacks {want}:\n{cg}");
                }
                let bytes = (192u64 << 20).to_string();
                assert!(cg.contains(&bytes) && cg.contains("25000") && cg.contains("25 ms"), "{h:?} {lang}:\n{cg}");
                assert!(prose(loaded.find("mnt").unwrap(), lang).contains("32 MiB tmpfs") || lang == "ja");
                for l in &loaded.lessons {
                    let p = prose(l, lang);
                    // The defaults written as numbers would now be wrong.
                    for fixed in ["256 MiB", "268435456", "half a CPU", "CPU 半分", "{{"] {
                        assert!(!p.contains(fixed), "{h:?} {lang}: {} says {fixed:?}", l.topic);
                    }
                }
            }
        }
        assert!(
            prose(catalog::load_with(Hierarchy::V2, &limits, &[]).find("mnt").unwrap(), "ja")
                .contains("32 MiB の tmpfs")
        );
        // A fraction of a millisecond, an unknown name, and no placeholder at all.
        let third = nsplay_sandbox::Limits { cpu: 0.333, ..limits };
        assert_eq!(fill_limits("{{cpu_quota_ms}} ms, {{nope}}, {{memory}}{{", &third), "33.3 ms, {{nope}}, 192 MiB{{");
        assert_eq!(fill_limits("no braces", &limits), "no braces");
    }

    #[test]
    fn every_lesson_loads_with_both_languages_and_known_checks() {
        let lessons: Vec<Lesson> = load().unwrap().iter().map(|l| l.on(Hierarchy::V2)).collect();
        let topics: Vec<&str> = lessons.iter().map(|l| l.topic.as_str()).collect();
        for t in ["mnt", "uts", "pid", "ipc", "user", "net", "cgroup", "time", "cgroups"] {
            assert!(topics.contains(&t), "lesson {t} is missing");
        }
        for l in &lessons {
            // The built-in lessons are written in both languages.
            assert_eq!(l.languages(), LANGS, "{}", l.topic);
            for t in [&l.title, &l.summary, &l.intro] {
                assert!(t.has("en") && t.has("ja"), "{}", l.topic);
            }
            for s in &l.steps {
                assert!(
                    s.title.has("en") && s.title.has("ja") && s.text.has("en") && s.text.has("ja"),
                    "{}/{}",
                    l.topic,
                    s.id
                );
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
        assert!(v1_steps.iter().all(|s| !matches!(&s.check, Some(Check::Kind(k)) if k == "cgroup_child_memory")));
        assert!(v1_steps.iter().all(|s| s.id != "child-oom"));
        assert!(find("cgroups", Hierarchy::V1).unwrap().intro.get("en").contains("This server runs on cgroup v1"));
        // v2: as written.
        let v2 = cmds("cgroups", Hierarchy::V2);
        assert!(v2.iter().any(|c| c.contains("mount -t cgroup2 none /tmp/cg")));
        assert!(!v2.iter().any(|c| c.contains("/tmp/cgm")));
        assert!(find("cgroups", Hierarchy::V2).unwrap().step("child-oom").is_some());
        // The cgroup-namespace lesson promises `0::/` only where it is the only line.
        assert!(find("cgroup", Hierarchy::V2).unwrap().intro.get("en").contains("one line starting with `0::`"));
        assert!(find("cgroup", Hierarchy::V1).unwrap().intro.get("en").contains("one line per hierarchy"));
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
        let ja = |topic: &str| find(topic, Hierarchy::V2).unwrap().intro.get("ja").to_string();
        assert!(ja("uts").contains(
            "UTS は \"UNIX Time-sharing System\" の略で、`uname` が値を返す構造体 `struct utsname` の名前に由来します"
        ));
        assert!(ja("ipc").contains("`ipcs` は自分が動いている IPC 名前空間のオブジェクトを一覧表示します"));
        assert!(ja("time").contains("凍結したコンテナを後で、あるいは別のマシンでリストアすると"));
        let cgroup = find("cgroup", Hierarchy::V2).unwrap();
        assert!(
            cgroup.steps.iter().any(|s| s.text.get("ja").contains("コンテナの中から見た `/sys/fs/cgroup` の姿です"))
        );
        assert!(ja("cgroups").contains("入れ子にでき"));
        assert!(ja("uts").contains("このレッスンでは"));
    }

    #[test]
    fn prose_is_markdown_with_raw_html_escaped() {
        assert_eq!(prose_html("a `<b>` c\n\nd", None), "<p>a <code>&lt;b&gt;</code> c</p>\n<p>d</p>\n");
        let html = prose_html("<script>alert(1)</script>\n\nx <img src=x onerror=alert(1)> y", None);
        assert!(!html.contains("<script") && !html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        let html = prose_html("```\nls -l\n```\n\n[a](javascript:alert(1)) [b](https://example.com/)", None);
        assert!(html.contains("<pre><code>ls -l\n</code></pre>"), "{html}");
        assert!(html.contains("href=\"#\"") && html.contains("href=\"https://example.com/\""), "{html}");
        let html =
            prose_html("![d](img/a.png) ![e](../../etc/passwd) ![f](https://x.example/a.png)", Some("/learn/t/files/"));
        assert!(html.contains("src=\"/learn/t/files/img/a.png\""), "{html}");
        assert_eq!(html.matches("src=\"\"").count(), 2, "{html}");
    }

    const MINI: &str = "topic = \"t\"\ntitle.ja = \"題\"\nsummary.ja = \"s\"\nintro.ja = \"i\"\n\n[[steps]]\nid = \"a\"\ncommands = [\"true\"]\ntitle.ja = \"a\"\ntext.ja = \"a\"\n";

    #[test]
    fn one_language_is_enough_and_errors_name_file_line_and_key() {
        let l = parse("t.toml", MINI, "t", Source::Builtin).unwrap();
        assert_eq!(l.languages(), ["ja"]);
        assert_eq!(l.title.get("en"), "題");
        let bad = format!(
            "{MINI}\n[[steps]]\nid = \"b\"\nneeds = [\"zzz\"]\ncommands = [\"\"]\ntitle.ja = \"b\"\ntext.ja = \"b\"\n[[steps.check]]\nkind = \"file\"\n"
        );
        let errs = parse("t.toml", &bad, "t", Source::Builtin).unwrap_err();
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(shown.iter().any(|e| e.starts_with("t.toml:14: needs: step `b` needs `zzz`")), "{shown:?}");
        assert!(shown.iter().any(|e| e.starts_with("t.toml:15: commands: ")), "{shown:?}");
        assert!(
            shown.iter().any(|e| e.starts_with("t.toml:18: check: step `b`: check.path: kind `file` needs `path`")),
            "{shown:?}"
        );
        let syntax =
            parse("t.toml", &MINI.replace("commands = [\"true\"]", "commands = \"true\""), "t", Source::Builtin)
                .unwrap_err();
        assert_eq!(syntax[0].line, Some(8), "{}", syntax[0]);
        assert_eq!(syntax[0].key.as_deref(), Some("commands"), "{}", syntax[0]);
        let half = MINI.replace("summary.ja = \"s\"", "summary.en = \"s\"");
        let errs = parse("t.toml", &half, "t", Source::Builtin).unwrap_err();
        assert!(errs[0].to_string().contains("summary.ja"), "{}", errs[0]);
    }
}
