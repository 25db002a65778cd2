//! Lessons end to end. Every built-in lesson and the sample lesson directory `tests/lessons/`
//! pass `nsplay lessons test` (a real session per lesson: each step's check fails first, still
//! fails after the terminal printed its text, and passes once the step's solution was typed —
//! which is what proves each author check kind); a wrong solution fails it, naming the step. A
//! running server with a lessons directory serves the catalog as JSON, lists a broken TOML with
//! file and line while serving the rest, serves a lesson's images and nothing beside them, checks
//! quiz answers and `needs`, and reloads an edited lesson with a session alive.

mod common;

use common::{BIN, Instance, Server};
use serde_json::{Value, json};

fn sample() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lessons")
}

/// Runs `nsplay lessons test ARGS` with its own instance; (exit code, stdout, stderr).
fn lessons_test(args: &[&str]) -> (i32, String, String) {
    let inst = Instance::new();
    let out =
        std::process::Command::new(BIN).args(["lessons", "test"]).args(args).args(inst.serve_args()).output().unwrap();
    // Whatever the outcome, the walk's sessions and parent groups are gone when it returns.
    let left: Vec<_> = inst.parent_dirs().into_iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "lessons test left {left:?}\n{}", String::from_utf8_lossy(&out.stderr));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The table's rows for `lesson`: (step, before, printed, after, result).
fn rows(out: &str, lesson: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| l.split_whitespace().next() == Some(lesson))
        .map(|l| l.split_whitespace().skip(1).map(str::to_string).collect())
        .collect()
}

/// One built-in lesson through `lessons test`, with what the walk printed kept: none of its
/// commands reads a file that is not there on this host (the cgroups lesson on a v1 host
/// printed five of these before it had variants).
fn builtin(topic: &str) {
    let transcript = tempfile::NamedTempFile::new().unwrap();
    let path = transcript.path().display().to_string();
    let (code, out, err) = lessons_test(&["--builtin", "--lesson", topic, "--transcript", &path]);
    assert_eq!(code, 0, "{topic}:\n{out}\n{err}");
    let steps = rows(&out, topic);
    assert!(!steps.is_empty() && steps.iter().all(|r| r.last().map(String::as_str) == Some("ok")), "{out}");
    assert!(steps.iter().any(|r| r[3] == "pass"), "no step was checked:\n{out}");
    for line in std::fs::read_to_string(transcript.path()).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let printed = v["output"].as_str().unwrap();
        assert!(
            !printed.contains("No such file or directory"),
            "{topic}/{}: `{}` printed:\n{printed}",
            v["step"],
            v["command"]
        );
        if v["step"] == "nested-queue" && v["command"].as_str().unwrap().contains("ipcmk") {
            assert!(printed.contains("Message queue id: 0"), "ipc/nested-queue printed:\n{printed}");
        }
    }
}

macro_rules! lesson_test {
    ($name:ident, $topic:literal) => {
        #[test]
        fn $name() {
            builtin($topic);
        }
    };
}

lesson_test!(uts_lesson, "uts");
lesson_test!(pid_lesson, "pid");
lesson_test!(mnt_lesson, "mnt");
lesson_test!(ipc_lesson, "ipc");
lesson_test!(net_lesson, "net");
lesson_test!(user_lesson, "user");
lesson_test!(time_lesson, "time");
lesson_test!(cgroup_lesson, "cgroup");
lesson_test!(cgroups_lesson, "cgroups");

#[test]
fn the_sample_directory_passes_with_every_author_kind_failing_first() {
    let (code, out, err) = lessons_test(&[&sample().join("sample").display().to_string()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let steps = rows(&out, "author-kinds");
    let ids: Vec<&str> = steps.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, ["file", "listen", "nested-pid", "nested-mount", "nested-net", "memory", "quiz"], "{out}");
    for r in &steps {
        assert_eq!(r[1..], ["fail", "fail", "pass", "ok"], "{out}");
    }
    assert!(out.contains("1 lessons passed"), "{out}");
}

#[test]
fn a_wrong_solution_fails_naming_the_step_in_the_lessons_language() {
    let dir = sample().join("wrong").display().to_string();
    let (code, out, err) = lessons_test(&[&dir]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(rows(&out, "wrong-solution")[0][1..], ["fail", "fail", "pass", "ok"], "{out}");
    // The lesson is in Japanese only: so is what its author reads.
    let failed = "FAILED wrong-solution/listens-nowhere: after its solution the check still fails:";
    assert!(
        out.contains(&format!("{failed} セッションでは、まだ tcp のポート 9999 で待ち受けているものがありません。")),
        "{out}"
    );
    let (code, out, err) = lessons_test(&[&dir, "--lang", "en"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains(&format!("{failed} Nothing listens on tcp port 9999 in the session yet.")), "{out}");
}

#[test]
fn lessons_check_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "topic = \"bad\"\ntitle.en = \"x\"\nsummary = 3\n").unwrap();
    let out = std::process::Command::new(BIN).args(["lessons", "check"]).arg(dir.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("broken  {}:3: summary: ", dir.path().join("bad.toml").display())), "{text}");
    let ok = std::process::Command::new(BIN)
        .args(["lessons", "check", "--builtin"])
        .arg(sample().join("sample"))
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
}

async fn get(server: &Server, path: &str) -> reqwest::Response {
    reqwest::get(format!("{}{path}", server.base)).await.unwrap()
}

async fn check(server: &Server, id: &str, step: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/api/sessions/{id}/checks/author-kinds/{step}", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_serves_a_directory_lists_the_broken_and_reloads_with_a_session_alive() {
    let dir = tempfile::tempdir().unwrap();
    let lesson = dir.path().join("author-kinds");
    std::fs::create_dir(&lesson).unwrap();
    for f in ["lesson.toml", "diagram.svg"] {
        std::fs::copy(sample().join("sample/author-kinds").join(f), lesson.join(f)).unwrap();
    }
    std::os::unix::fs::symlink("/etc/hostname", lesson.join("out.png")).unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "topic = \"broken\"\ntitle.en = \"Broken\"\n\n[[steps]\nid = \"x\"\n").unwrap();
    let server = Server::start(&["--lessons", &dir.path().display().to_string()]);

    // The catalog: built-in and directory lessons, and the broken one with file and line.
    let all: Value = get(&server, "/api/lessons").await.json().await.unwrap();
    let topics: Vec<&str> = all["lessons"].as_array().unwrap().iter().map(|l| l["topic"].as_str().unwrap()).collect();
    assert!(topics.contains(&"uts") && topics.contains(&"author-kinds"), "{all}");
    let b = &all["broken"][0];
    assert_eq!(b["file"], broken.display().to_string(), "{all}");
    assert_eq!(b["line"], 4, "{all}");
    let learn = get(&server, "/learn").await.text().await.unwrap();
    assert!(learn.contains("broken.toml:4") && learn.contains("/learn/author-kinds"), "{learn}");

    let one: Value = get(&server, "/api/lessons/author-kinds").await.json().await.unwrap();
    assert_eq!(one["languages"], json!(["en"]));
    assert_eq!(one["source"], "directory");
    let listen = one["steps"].as_array().unwrap().iter().find(|s| s["id"] == "listen").unwrap();
    assert_eq!(listen["check"]["kinds"], json!(["listen", "process"]), "{one}");
    assert!(listen["commands"][0].as_str().unwrap().starts_with("python3 -c"), "{one}");
    assert_eq!(one["steps"][2]["hints"], 2, "{one}");
    assert_eq!(one["steps"][5]["needs"], json!(["file"]), "{one}");
    assert_eq!(get(&server, "/api/lessons/nope").await.status(), 404);

    // The page in the other language says it is in English only; Markdown, hints and the quiz.
    let page = get(&server, "/learn/author-kinds?lang=ja").await.text().await.unwrap();
    assert!(page.contains("このレッスンは英語でのみ書かれています。"), "{page}");
    assert!(page.contains("<strong>from the host</strong>") && page.contains("<pre><code>echo"), "{page}");
    assert!(page.contains("src=\"/learn/author-kinds/files/diagram.svg\""), "{page}");
    assert!(page.contains("<details class=\"hint\">") && page.contains("class=\"answer\""), "{page}");

    // Images beside the lesson, and nothing that leaves its directory.
    let svg = get(&server, "/learn/author-kinds/files/diagram.svg").await;
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert_eq!(get(&server, "/learn/author-kinds/files/out.png").await.status(), 403);
    assert_eq!(get(&server, "/learn/author-kinds/files/..%2Fbroken.toml").await.status(), 404);
    assert_eq!(get(&server, "/learn/author-kinds/files/lesson.toml").await.status(), 404);

    // A session: quiz answers and `needs` are checked by the server.
    let r = reqwest::Client::new()
        .post(format!("{}/api/sessions", server.base))
        .json(&json!({"lesson": "author-kinds"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let s: Value = r.json().await.unwrap();
    let id = s["id"].as_str().unwrap().to_string();
    let needs = check(&server, &id, "memory", json!({})).await;
    assert_eq!(needs["passed"], false);
    assert_eq!(needs["needs"], json!(["file"]), "{needs}");
    assert!(needs["detail"].as_str().unwrap().contains("`file`"), "{needs}");
    assert_eq!(check(&server, &id, "quiz", json!({"answer": "/etc"})).await["passed"], false);
    assert_eq!(check(&server, &id, "quiz", json!({"answer": " /proc/self/ns/ "})).await["passed"], true);

    // An edit and a fix are picked up while the session lives on.
    let text = std::fs::read_to_string(lesson.join("lesson.toml")).unwrap();
    std::fs::write(
        lesson.join("lesson.toml"),
        text.replace("title.en = \"Checks without Rust\"", "title.en = \"Checks, edited\""),
    )
    .unwrap();
    std::fs::write(
        &broken,
        std::fs::read_to_string(sample().join("wrong/wrong-solution.toml"))
            .unwrap()
            .replace("wrong-solution", "broken"),
    )
    .unwrap();
    let mut reloaded = false;
    for _ in 0..100 {
        let v: Value = get(&server, "/api/lessons/author-kinds").await.json().await.unwrap();
        if v["title"]["en"] == "Checks, edited" {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(reloaded, "the edit was not picked up");
    let all: Value = get(&server, "/api/lessons").await.json().await.unwrap();
    assert_eq!(all["broken"], json!([]), "{all}");
    assert!(all["lessons"].as_array().unwrap().iter().any(|l| l["topic"] == "broken"), "{all}");
    assert_eq!(get(&server, &format!("/api/sessions/{id}")).await.status(), 200, "the session ended with the reload");
    // The quiz passed before the reload is still the session's.
    let sess: Value = get(&server, &format!("/api/sessions/{id}")).await.json().await.unwrap();
    assert_eq!(sess["passed"]["author-kinds"], json!(["quiz"]), "{sess}");

    // SIGHUP reloads (and does not stop the server), even an edit the polling cannot see: the
    // same size and modification time, swapped in by a rename so that no poll ever sees a
    // half-made change.
    let file = lesson.join("lesson.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let edited = text.replace("title.en = \"Checks, edited\"", "title.en = \"Checks, hupped\"");
    assert_eq!(edited.len(), text.len());
    // Made outside the lessons directory (a new file there would be a change a poll sees).
    let outside = tempfile::tempdir_in(dir.path().parent().unwrap()).unwrap();
    let tmp = outside.path().join("lesson.toml");
    std::fs::write(&tmp, &edited).unwrap();
    std::fs::File::options().write(true).open(&tmp).unwrap().set_modified(mtime).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let title = |v: &Value| v["title"]["en"].as_str().map(str::to_string);
    let before = server.log.lock().unwrap().matches("lessons reloaded").count();
    let v: Value = get(&server, "/api/lessons/author-kinds").await.json().await.unwrap();
    assert_eq!(title(&v).as_deref(), Some("Checks, edited"), "{v}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.pid()), nix::sys::signal::Signal::SIGHUP).unwrap();
    let hupped = common::wait_until(30, || {
        let log = server.log.lock().unwrap();
        log.contains("SIGHUP: reloading the lessons") && log.matches("lessons reloaded").count() > before
    });
    assert!(hupped, "{}", server.log.lock().unwrap());
    let v: Value = get(&server, "/api/lessons/author-kinds").await.json().await.unwrap();
    assert_eq!(title(&v).as_deref(), Some("Checks, hupped"), "SIGHUP did not pick up the edit: {v}");
    assert_eq!(get(&server, &format!("/api/sessions/{id}")).await.status(), 200, "the session ended with SIGHUP");
}

/// Ctrl-C (or a CI's SIGTERM) in the middle of a walk ends its sessions and says so.
#[test]
fn an_interrupted_walk_ends_its_sessions_and_leaves_nothing() {
    let inst = Instance::new();
    let child = std::process::Command::new(BIN)
        .args(["lessons", "test"])
        .arg(sample().join("sample"))
        .args(inst.serve_args())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-walk: a session of the walk exists.
    assert!(common::wait_until(20, || !inst.session_groups().is_empty()), "the walk started no session");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(out.status.code().is_some(), "killed by the signal, not stopped by it: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let left: Vec<_> = inst.parent_dirs().into_iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "left {left:?}\n{stderr}");
}
