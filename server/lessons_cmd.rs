//! `nsplay lessons check DIR…` and `nsplay lessons test DIR…` (or `--builtin`): what an author
//! runs in CI (docs/authoring.md). `check` loads every lesson file as the server would and
//! prints each problem as `file:line: key: message`. `test` walks every lesson in a real
//! session, in-process (the sandbox starts here as `nsplay serve` starts it, no server needed):
//! for each step with a check, the check must fail, must still fail after the terminal printed
//! what a pass would say, and must pass once the step's solution (default: its Run commands)
//! was typed through the terminal and finished. Both exit non-zero on any failure, naming the
//! lesson and the step.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cli::{LessonsCheckArgs, LessonsCommand, LessonsTestArgs};
use crate::lessons::{Broken, Catalog, Lesson, Source, catalog};
use crate::session::{EndReason, Manager, Requester, Session, Terminal};

/// Longest one solution command may take to finish (its marker to come back).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a check may take to reach its state after the solution finished (background
/// commands, `… &`), polled.
const SETTLE: Duration = Duration::from_secs(5);
/// Most terminal output kept per lesson (the screen printed when a step fails).
const MAX_SCREEN: usize = 1024 * 1024;

pub fn main(cmd: &LessonsCommand) -> i32 {
    match cmd {
        LessonsCommand::Check(a) => check_main(a),
        LessonsCommand::Test(a) => test_main(a),
    }
}

/// The lessons of `dirs` (and the built-in ones with `builtin`), each parsed and validated.
fn lessons_of(dirs: &[PathBuf], builtin: bool) -> (Vec<Lesson>, Vec<Broken>) {
    let mut ok = Vec::new();
    let mut broken = Vec::new();
    if builtin {
        for r in crate::lessons::builtin() {
            match r {
                Ok(l) => ok.push(l),
                Err(e) => broken.extend(e),
            }
        }
    }
    for d in dirs {
        let (l, b) = catalog::read_dir(d);
        ok.extend(l);
        broken.extend(b);
    }
    (ok, broken)
}

fn check_main(a: &LessonsCheckArgs) -> i32 {
    if a.dirs.is_empty() && !a.builtin {
        eprintln!("nsplay lessons check: name a lessons directory (or --builtin)");
        return 2;
    }
    let (ok, broken) = lessons_of(&a.dirs, a.builtin);
    for l in &ok {
        let steps = l.steps.len();
        let checks = l.steps.iter().filter(|s| s.check.is_some()).count();
        println!("ok      {} ({steps} steps, {checks} checks, {})", l.topic, l.languages().join("+"));
    }
    for b in &broken {
        println!("broken  {b}");
    }
    if broken.is_empty() && !ok.is_empty() {
        println!("{} lessons valid", ok.len());
        0
    } else {
        if ok.is_empty() && broken.is_empty() {
            println!("no lessons found");
        }
        1
    }
}

/// One row of the results table.
struct Row {
    lesson: String,
    step: String,
    before: &'static str,
    printed: &'static str,
    after: &'static str,
    failure: Option<String>,
}

fn word(passed: Option<bool>) -> &'static str {
    match passed {
        Some(true) => "pass",
        Some(false) => "fail",
        None => "-",
    }
}

fn test_main(a: &LessonsTestArgs) -> i32 {
    let mut dirs = a.dirs.clone();
    dirs.extend(a.serve.lessons.iter().flatten().map(PathBuf::from));
    if dirs.is_empty() && !a.builtin {
        eprintln!("nsplay lessons test: name a lessons directory (or --builtin)");
        return 2;
    }
    let (ok, broken) = lessons_of(&dirs, a.builtin);
    for b in &broken {
        eprintln!("broken  {b}");
    }
    if !broken.is_empty() {
        eprintln!("nsplay lessons test: fix the broken lessons first (`nsplay lessons check`)");
        return 1;
    }
    let mut topics: Vec<String> = ok.iter().map(|l| l.topic.clone()).collect();
    if !a.lesson.is_empty() {
        if let Some(unknown) = a.lesson.iter().find(|t| !topics.contains(t)) {
            eprintln!("nsplay lessons test: there is no lesson `{unknown}` to test");
            return 2;
        }
        topics.retain(|t| a.lesson.contains(t));
    }
    if topics.is_empty() {
        eprintln!("nsplay lessons test: no lessons found");
        return 1;
    }
    let settings = match crate::config::Settings::resolve(&a.serve) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nsplay: {e}");
            return 2;
        }
    };
    match run_tests(&settings, &dirs, a.builtin, &topics, a.transcript.as_deref(), a.lang.as_deref()) {
        Ok(rows) => {
            print_table(&rows);
            let failed: Vec<&Row> = rows.iter().filter(|r| r.failure.is_some()).collect();
            for r in &failed {
                println!("FAILED {}/{}: {}", r.lesson, r.step, r.failure.as_deref().unwrap_or(""));
            }
            if failed.is_empty() {
                println!("{} lessons passed", topics.len());
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("nsplay lessons test: {e:#}");
            1
        }
    }
}

fn print_table(rows: &[Row]) {
    let w = |f: fn(&Row) -> usize, head: &str| rows.iter().map(f).max().unwrap_or(0).max(head.len());
    let (wl, ws) = (w(|r| r.lesson.len(), "LESSON"), w(|r| r.step.len(), "STEP"));
    println!("{:wl$}  {:ws$}  BEFORE  PRINTED  AFTER  RESULT", "LESSON", "STEP");
    for r in rows {
        let result = if r.failure.is_some() { "FAILED" } else { "ok" };
        println!("{:wl$}  {:ws$}  {:6}  {:7}  {:5}  {result}", r.lesson, r.step, r.before, r.printed, r.after);
    }
}

/// Starts the sandbox (before any thread, as `nsplay serve` does), then walks each lesson.
fn run_tests(
    settings: &crate::config::Settings,
    dirs: &[PathBuf],
    builtin: bool,
    topics: &[String],
    transcript: Option<&std::path::Path>,
    lang: Option<&str>,
) -> anyhow::Result<Vec<Row>> {
    // First: Ctrl-C or a CI's SIGTERM during the walk ends its sessions (see `signals`).
    let blocked = crate::signals::block()?;
    let exe = std::env::current_exe()?;
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (mut sandbox, _reclaimed) = nsplay_sandbox::Sandbox::start(&settings.sandbox, &exe, move |ev| {
        let _ = events_tx.send(ev);
    })?;
    sandbox.set_nested_userns(settings.nested_userns);
    sandbox.set_open_files(settings.open_files);
    let hierarchy = sandbox.cgroup_version();
    // The lessons as the server would serve them (a directory's lesson replaces a built-in one).
    let catalog = Catalog::new(hierarchy, dirs.to_vec());
    let loaded = catalog.get();
    let mut transcript = match transcript {
        Some(p) => Some(std::fs::File::create(p)?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let mut signals = crate::signals::StopSignals::install(blocked)?;
        let mut cfg = settings.manager_config();
        // One lesson at a time: one session, and one more being built.
        cfg.warm_pool = 1;
        // The walk is the only client: a session per lesson, as fast as they end.
        cfg.create_per_minute = cfg.create_per_minute.max(6000);
        cfg.create_burst = cfg.create_burst.max(1000);
        let manager = Manager::new(sandbox, cfg);
        let m = manager.clone();
        let events_task = tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                m.handle_event(ev);
            }
        });
        let walk_all = async {
            let mut rows = Vec::new();
            for topic in topics {
                let Some(lesson) = loaded.find(topic) else { continue };
                // Only the lessons asked for: a directory's, or the built-in ones with --builtin.
                if !builtin && lesson.source == Source::Builtin {
                    continue;
                }
                rows.extend(walk(&manager, lesson, message_lang(lesson, lang), transcript.as_mut()).await);
            }
            rows
        };
        let outcome = tokio::select! {
            rows = walk_all => Ok(rows),
            _ = signals.either() => Err(anyhow::anyhow!("interrupted: the sessions of the walk were ended; nothing is left behind")),
        };
        manager.shutdown().await;
        events_task.abort();
        outcome
    })
}

/// The terminal's output as it arrives (bounded: the oldest bytes go first).
#[derive(Clone, Default)]
struct Screen(Arc<Mutex<(Vec<u8>, usize)>>);

impl Screen {
    fn push(&self, b: &[u8]) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.0.extend_from_slice(b);
        if g.0.len() > MAX_SCREEN {
            let cut = g.0.len() - MAX_SCREEN;
            g.0.drain(..cut);
            g.1 += cut;
        }
    }

    /// Absolute offset of the end.
    fn end(&self) -> usize {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.1 + g.0.len()
    }

    /// The text from absolute offset `from`.
    fn since(&self, from: usize) -> String {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let start = from.saturating_sub(g.1).min(g.0.len());
        String::from_utf8_lossy(&g.0[start..]).into_owned()
    }
}

/// How long the output must be quiet after a command before its marker is typed, and how long
/// a marker may go unanswered before it is typed again.
const QUIET: Duration = Duration::from_millis(300);
const MARKER_AGAIN: Duration = Duration::from_secs(3);

/// Waits until no output arrived for [`QUIET`] (at most `limit`).
async fn quiet(screen: &Screen, limit: Instant) {
    let mut last = screen.end();
    let mut since = Instant::now();
    while Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = screen.end();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= QUIET {
            return;
        }
    }
}

/// Types `command`, then, once its output paused, a marker line, and waits for the marker's
/// output (the command finished and a shell read the next line). A shell that starts (a
/// nested `sh`) may drop what was typed ahead of it, so a marker not answered while the
/// output is quiet is typed again. Returns what was printed meanwhile.
async fn type_and_wait(term: &Terminal, screen: &Screen, command: &str, n: usize) -> Result<String, String> {
    let from = screen.end();
    let marker = format!("__NSPLAY_DONE_{n}__");
    // Typed with an empty quote inside, so the echo of the typed line is not the marker.
    let typed_marker = format!("echo __NSPLAY_DONE''_{n}__\r");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    term.write(format!("{command}\r").as_bytes()).await.map_err(|e| format!("the terminal took no input: {e}"))?;
    quiet(screen, (Instant::now() + MARKER_AGAIN).min(deadline)).await;
    loop {
        term.write(typed_marker.as_bytes()).await.map_err(|e| format!("the terminal took no input: {e}"))?;
        let again = Instant::now() + MARKER_AGAIN;
        loop {
            let out = screen.since(from);
            if out.contains(&marker) {
                return Ok(out);
            }
            if Instant::now() >= deadline {
                return Err(format!("`{command}` did not finish within {} s", COMMAND_TIMEOUT.as_secs()));
            }
            if term.exit_code().is_some() {
                return Err(format!("the shell exited during `{command}`"));
            }
            if Instant::now() >= again {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Still running (output flowing) or the marker was dropped: type it again once quiet.
        quiet(screen, deadline).await;
    }
}

/// The language the checks' messages are printed in: `--lang`, else the lesson's own (an
/// author of a Japanese lesson reads its failures in Japanese), English for one in both.
fn message_lang(lesson: &Lesson, asked: Option<&str>) -> &'static str {
    let langs = lesson.languages();
    match asked {
        Some("ja") => "ja",
        Some(_) => "en",
        None if langs.contains(&"en") => "en",
        None => langs.first().copied().unwrap_or("en"),
    }
}

async fn check(
    manager: &Arc<Manager>,
    s: &Arc<Session>,
    (topic, lang): (&str, &'static str),
    step: &crate::lessons::Step,
    answer: Option<String>,
) -> crate::lessons::checks::Outcome {
    let (m, s, topic, step) = (manager.clone(), s.clone(), topic.to_string(), step.clone());
    tokio::task::spawn_blocking(move || crate::web::api::check_step(&m, &s, &topic, &step, answer, lang))
        .await
        .unwrap_or(crate::lessons::checks::Outcome { passed: false, detail: "the check panicked".into() })
}

/// Walks one lesson in a new session; one row per step.
async fn walk(
    manager: &Arc<Manager>,
    lesson: &Lesson,
    lang: &'static str,
    mut transcript: Option<&mut std::fs::File>,
) -> Vec<Row> {
    let topic = lesson.topic.clone();
    let row = |step: &str, failure: String| Row {
        lesson: topic.clone(),
        step: step.to_string(),
        before: "-",
        printed: "-",
        after: "-",
        failure: Some(failure),
    };
    let who = Requester::anonymous(std::net::Ipv4Addr::LOCALHOST.into());
    let s = match manager.create(Some(topic.clone()), who).await {
        Ok(s) => s,
        Err(e) => return vec![row("-", format!("no session: {e}"))],
    };
    let Some(term) = s.live_terminal() else { return vec![row("-", "the session has no terminal".into())] };
    let screen = Screen::default();
    let reader = match term.attach() {
        Ok(mut att) => {
            screen.push(&att.replay);
            let sc = screen.clone();
            tokio::spawn(async move {
                while let Some(o) = att.rx.recv().await {
                    if let crate::session::terminal::Output::Data(b) = o {
                        sc.push(&b);
                    }
                }
            })
        }
        Err(e) => return vec![row("-", format!("cannot attach: {e}"))],
    };
    let mut rows = Vec::new();
    let mut n = 0;
    // The shell's first prompt: typing before it is fine (the pty buffers), waiting is clearer.
    let _ = type_and_wait(&term, &screen, "true", n).await;
    for step in &lesson.steps {
        let mut r =
            Row { lesson: topic.clone(), step: step.id.clone(), before: "-", printed: "-", after: "-", failure: None };
        let quiz = step.check.as_ref().is_some_and(|c| c.is_quiz());
        if step.check.is_some() {
            let before = check(manager, &s, (&topic, lang), step, quiz.then(String::new)).await;
            r.before = word(Some(before.passed));
            if before.passed {
                r.failure = Some(format!("the check passed before the step's solution: {}", before.detail));
                rows.push(r);
                break;
            }
            // Printing what the check says must not pass it.
            let fake: String = before.detail.replace(['\'', '`', '$', '\\', '\n', '\r'], "").chars().take(60).collect();
            n += 1;
            let _ = type_and_wait(&term, &screen, &format!("echo '{fake}'"), n).await;
            let printed = check(manager, &s, (&topic, lang), step, quiz.then(String::new)).await;
            r.printed = word(Some(printed.passed));
            if printed.passed {
                r.failure = Some("the check passed when the terminal only printed text".into());
                rows.push(r);
                break;
            }
        }
        // A quiz step's solution is its answer; any other's is typed into the terminal.
        let mut failed = None;
        if !quiz {
            for c in step.solution() {
                n += 1;
                match type_and_wait(&term, &screen, c, n).await {
                    Ok(out) => {
                        if let Some(f) = transcript.as_mut() {
                            let line =
                                serde_json::json!({"lesson": topic, "step": step.id, "command": c, "output": out});
                            let _ = writeln!(f, "{line}");
                        }
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        if failed.is_none() && step.check.is_some() {
            let answer = quiz.then(|| step.solution().first().cloned().unwrap_or_default());
            let settle = Instant::now() + SETTLE;
            let mut after = check(manager, &s, (&topic, lang), step, answer.clone()).await;
            while !after.passed && Instant::now() < settle {
                tokio::time::sleep(Duration::from_millis(250)).await;
                after = check(manager, &s, (&topic, lang), step, answer.clone()).await;
            }
            r.after = word(Some(after.passed));
            if !after.passed {
                let screen_tail: String = {
                    let all = screen.since(0);
                    let skip = all.chars().count().saturating_sub(2000);
                    all.chars().skip(skip).collect()
                };
                failed = Some(format!(
                    "after its solution the check still fails: {}\n--- terminal (last lines) ---\n{screen_tail}",
                    after.detail
                ));
            }
        }
        let stop = failed.is_some();
        r.failure = failed;
        rows.push(r);
        if stop {
            break;
        }
    }
    reader.abort();
    let _ = manager.end(&s.id, EndReason::Deleted).await;
    rows
}
