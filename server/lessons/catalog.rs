//! The catalog of lessons a server (or `nsplay lessons`) serves: the built-in ones merged with
//! those in the operator's lesson directories (a directory's lesson replaces a built-in one of
//! the same topic; a later directory's one an earlier's), resolved for the host's cgroup
//! hierarchy. A lesson that does not load is listed as [`Broken`] (file, line, key) and the
//! rest load. [`Catalog::reload`] builds a new [`Loaded`] and swaps it in at once (`arc-swap`):
//! a request holds the snapshot it started with, and sessions know nothing of lessons, so a
//! reload drops none.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;

use super::{Hierarchy, Lesson, Source};

/// Most lesson files read from one directory (a directory of thousands is refused past this).
pub const MAX_FILES_PER_DIR: usize = 256;
/// Largest lesson file read.
pub const MAX_LESSON_BYTES: u64 = 256 * 1024;

/// A lesson that did not load: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Broken {
    pub file: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl Broken {
    pub fn new(file: &str, line: Option<usize>, key: Option<&str>, message: &str) -> Broken {
        Broken { file: file.to_string(), line, key: key.map(str::to_string), message: message.to_string() }
    }
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One state of the catalog: what every request of the moment reads.
#[derive(Debug, Default)]
pub struct Loaded {
    /// By `order`, then topic; each as it reads on the server's hierarchy, its prose naming the
    /// server's session limits.
    pub lessons: Vec<Arc<Lesson>>,
    pub broken: Vec<Broken>,
    /// The same lessons with their `{{limit}}` placeholders still in (see [`Loaded::with_limits`]).
    unfilled: Vec<Arc<Lesson>>,
}

impl Loaded {
    pub fn find(&self, topic: &str) -> Option<&Arc<Lesson>> {
        self.lessons.iter().find(|l| l.topic == topic)
    }

    /// Lesson `topic` with its prose naming `limits` instead of the server's: those of a
    /// learner's session that runs under lower ones (a room's).
    pub fn with_limits(&self, topic: &str, limits: &nsplay_sandbox::Limits) -> Option<Lesson> {
        self.unfilled.iter().find(|l| l.topic == topic).map(|l| Lesson::clone(l).with_limits(limits))
    }

    /// The lesson after `topic` in the list.
    pub fn next(&self, topic: &str) -> Option<&Arc<Lesson>> {
        self.lessons.iter().position(|l| l.topic == topic).and_then(|i| self.lessons.get(i + 1))
    }
}

/// What the directories looked like at the last load: each file's path, size and time.
type Stamp = Vec<(PathBuf, u64, Option<SystemTime>)>;

pub struct Catalog {
    hierarchy: Hierarchy,
    /// The server's session limits, which the lessons' prose names ([`super::fill_limits`]).
    limits: nsplay_sandbox::Limits,
    dirs: Vec<PathBuf>,
    current: ArcSwap<Loaded>,
    stamp: std::sync::Mutex<Stamp>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("hierarchy", &self.hierarchy).field("dirs", &self.dirs).finish_non_exhaustive()
    }
}

impl Catalog {
    /// Loads the built-in lessons and those in `dirs` (broken ones are logged and listed),
    /// their prose naming the default session limits.
    pub fn new(hierarchy: Hierarchy, dirs: Vec<PathBuf>) -> Catalog {
        Catalog::with_limits(hierarchy, crate::config::defaults::limits(), dirs)
    }

    /// As [`Catalog::new`], the prose naming the server's session `limits`.
    pub fn with_limits(hierarchy: Hierarchy, limits: nsplay_sandbox::Limits, dirs: Vec<PathBuf>) -> Catalog {
        let stamp = stamp(&dirs);
        let loaded = load_with(hierarchy, &limits, &dirs);
        log_broken(&loaded);
        Catalog { hierarchy, limits, dirs, current: ArcSwap::from_pointee(loaded), stamp: std::sync::Mutex::new(stamp) }
    }

    /// The built-in lessons only (tests, and a server without `--lessons`).
    pub fn builtin(hierarchy: Hierarchy) -> Catalog {
        Catalog::new(hierarchy, Vec::new())
    }

    pub fn hierarchy(&self) -> Hierarchy {
        self.hierarchy
    }

    /// The session limits the lessons' prose names.
    pub fn limits(&self) -> nsplay_sandbox::Limits {
        self.limits
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The catalog of this moment (hold it for one request: a reload does not change it).
    pub fn get(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    /// Reads every lesson again and swaps the result in.
    pub fn reload(&self) {
        let stamp = stamp(&self.dirs);
        let loaded = load_with(self.hierarchy, &self.limits, &self.dirs);
        log_broken(&loaded);
        tracing::info!(lessons = loaded.lessons.len(), broken = loaded.broken.len(), "lessons reloaded");
        self.current.store(Arc::new(loaded));
        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = stamp;
    }

    /// Reloads when a file in the directories was added, removed or changed since the last
    /// load (sizes and modification times; a bounded listing, no file read). Returns whether it did.
    pub fn reload_if_changed(&self) -> bool {
        if self.dirs.is_empty() {
            return false;
        }
        let now = stamp(&self.dirs);
        if *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) == now {
            return false;
        }
        self.reload();
        true
    }
}

fn log_broken(loaded: &Loaded) {
    for b in &loaded.broken {
        tracing::warn!(file = %b.file, line = b.line, key = b.key.as_deref(), "lesson not loaded: {}", b.message);
    }
}

/// A lesson file found in a directory: `<dir>/<topic>.toml`, or `<dir>/<topic>/lesson.toml`
/// (a directory of its own, with its images beside it).
struct Found {
    file: PathBuf,
    topic: String,
    /// Where its images are.
    dir: PathBuf,
}

/// The lesson files of `dir`, by name (at most [`MAX_FILES_PER_DIR`]); what cannot be listed
/// is broken.
fn find_files(dir: &Path, broken: &mut Vec<Broken>) -> Vec<Found> {
    let label = dir.display().to_string();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            broken.push(Broken::new(&label, None, None, &format!("cannot read the lessons directory: {e}")));
            return Vec::new();
        }
    };
    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let mut found = Vec::new();
    for name in names {
        if name.starts_with('.') {
            continue;
        }
        let path = dir.join(&name);
        if let Some(topic) = name.strip_suffix(".toml") {
            found.push(Found { file: path, topic: topic.to_string(), dir: dir.to_path_buf() });
        } else if path.join("lesson.toml").is_file() {
            found.push(Found { file: path.join("lesson.toml"), topic: name.clone(), dir: path });
        }
        if found.len() >= MAX_FILES_PER_DIR {
            broken.push(Broken::new(
                &label,
                None,
                None,
                &format!("more than {MAX_FILES_PER_DIR} lessons; the rest are not read"),
            ));
            break;
        }
    }
    found
}

/// Reads one lesson file (bounded).
fn read_lesson(f: &Found) -> Result<Lesson, Vec<Broken>> {
    use std::io::Read;
    let label = f.file.display().to_string();
    let broken = |m: String| vec![Broken::new(&label, None, None, &m)];
    let file = std::fs::File::open(&f.file).map_err(|e| broken(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_LESSON_BYTES + 1).read_to_end(&mut bytes).map_err(|e| broken(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_LESSON_BYTES {
        return Err(broken(format!("larger than {} KiB", MAX_LESSON_BYTES / 1024)));
    }
    let text = String::from_utf8(bytes).map_err(|_| broken("the file is not UTF-8".into()))?;
    super::parse(&label, &text, &f.topic, Source::Dir { file: f.file.clone(), dir: f.dir.clone() })
}

/// The lessons of one directory, each loaded or broken (for `nsplay lessons check`).
pub fn read_dir(dir: &Path) -> (Vec<Lesson>, Vec<Broken>) {
    let mut broken = Vec::new();
    let mut lessons = Vec::new();
    for f in find_files(dir, &mut broken) {
        match read_lesson(&f) {
            Ok(l) => lessons.push(l),
            Err(e) => broken.extend(e),
        }
    }
    (lessons, broken)
}

/// Every lesson in `dirs` (none: only the built-in ones), parsed, merged and resolved for `h`,
/// the prose naming the default limits.
#[cfg(test)]
pub fn load(h: Hierarchy, dirs: &[PathBuf]) -> Loaded {
    load_with(h, &crate::config::defaults::limits(), dirs)
}

/// As [`load`], the prose naming `limits`.
pub fn load_with(h: Hierarchy, limits: &nsplay_sandbox::Limits, dirs: &[PathBuf]) -> Loaded {
    let mut broken = Vec::new();
    let mut lessons: Vec<Lesson> = Vec::new();
    let add = |l: Lesson, lessons: &mut Vec<Lesson>| {
        lessons.retain(|x| x.topic != l.topic);
        lessons.push(l);
    };
    for r in super::builtin() {
        match r {
            Ok(l) => add(l, &mut lessons),
            Err(e) => broken.extend(e),
        }
    }
    for dir in dirs {
        for f in find_files(dir, &mut broken) {
            match read_lesson(&f) {
                Ok(l) => add(l, &mut lessons),
                Err(e) => broken.extend(e),
            }
        }
    }
    lessons.sort_by(|a, b| (a.order, &a.topic).cmp(&(b.order, &b.topic)));
    let unfilled: Vec<Arc<Lesson>> = lessons.iter().map(|l| Arc::new(l.on(h))).collect();
    Loaded {
        lessons: unfilled.iter().map(|l| Arc::new(Lesson::clone(l).with_limits(limits))).collect(),
        broken,
        unfilled,
    }
}

/// Paths, sizes and times of every lesson file and directory entry (bounded like the load).
fn stamp(dirs: &[PathBuf]) -> Stamp {
    let mut out = Vec::new();
    for dir in dirs {
        let mut ignored = Vec::new();
        for f in find_files(dir, &mut ignored) {
            let meta = std::fs::metadata(&f.file).ok();
            out.push((f.file, meta.as_ref().map_or(0, |m| m.len()), meta.and_then(|m| m.modified().ok())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    const ONE: &str = r#"
topic = "hello"
title.en = "Hello"
summary.en = "A greeting"
intro.en = "Intro"

[[steps]]
id = "make"
commands = ["touch /tmp/hello"]
[[steps.check]]
kind = "file"
path = "/tmp/hello"
[steps.title]
en = "Make it"
[steps.text]
en = "Make the file."
"#;

    #[test]
    fn a_directory_adds_lessons_replaces_builtins_and_lists_the_broken() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "hello.toml", ONE);
        write(dir.path(), "uts.toml", &ONE.replace("\"hello\"", "\"uts\""));
        write(dir.path(), "bad.toml", "topic = \"bad\"\ntitle.en = \"x\"\nsummary = 3\n");
        let c = Catalog::new(Hierarchy::V2, vec![dir.path().to_path_buf()]);
        let l = c.get();
        assert!(l.find("hello").is_some());
        assert_eq!(l.find("uts").unwrap().title.get("en"), "Hello", "the directory's uts replaces the built-in");
        assert!(l.find("pid").is_some(), "the other built-in lessons stay");
        assert_eq!(l.broken.len(), 1, "{:?}", l.broken);
        let b = &l.broken[0];
        assert!(b.file.ends_with("bad.toml"), "{b}");
        assert_eq!(b.line, Some(3), "{b}");
        assert_eq!(b.key.as_deref(), Some("summary"), "{b}");
        // One language is enough: the other reads the one given.
        assert_eq!(l.find("hello").unwrap().title.get("ja"), "Hello");
        assert_eq!(l.find("hello").unwrap().languages(), ["en"]);
    }

    #[test]
    fn an_edit_is_picked_up_and_an_unchanged_directory_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "hello.toml", ONE);
        let c = Catalog::new(Hierarchy::V2, vec![dir.path().to_path_buf()]);
        let before = c.get();
        assert!(!c.reload_if_changed());
        write(dir.path(), "hello.toml", &ONE.replace("title.en = \"Hello\"", "title.en = \"Hello again\""));
        assert!(c.reload_if_changed());
        assert_eq!(c.get().find("hello").unwrap().title.get("en"), "Hello again");
        // A request that held the old snapshot still reads it whole.
        assert_eq!(before.find("hello").unwrap().title.get("en"), "Hello");
    }

    #[test]
    fn a_lesson_in_its_own_directory_serves_from_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("hello")).unwrap();
        write(&dir.path().join("hello"), "lesson.toml", ONE);
        let c = Catalog::new(Hierarchy::V2, vec![dir.path().to_path_buf()]);
        let l = c.get();
        match &l.find("hello").unwrap().source {
            Source::Dir { dir: d, .. } => assert_eq!(d, &dir.path().join("hello")),
            s => panic!("{s:?}"),
        }
    }
}
