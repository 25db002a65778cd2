//! HTML pages (askama templates in `templates/`) with their strings from the catalog
//! ([`crate::text`]), and the embedded static assets.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::lessons;

pub use crate::text::LANGS;

fn strings() -> &'static BTreeMap<String, crate::text::Entry> {
    crate::text::catalog()
}

/// UI strings in one language; templates call `t.s("key")`.
pub struct Ui {
    lang: &'static str,
}

impl Ui {
    pub fn new(lang: &'static str) -> Ui {
        Ui { lang }
    }

    pub fn s(&self, key: &str) -> &'static str {
        crate::text::lookup(self.lang, key).unwrap_or("")
    }

    pub fn json(&self) -> String {
        let map: BTreeMap<&str, &str> = strings().keys().map(|k| (k.as_str(), self.s(k))).collect();
        // Inside <script>: never let a string close the element.
        serde_json::to_string(&map).unwrap_or_default().replace('<', "\\u003c")
    }
}

#[derive(Debug, Deserialize)]
pub struct LangQuery {
    pub lang: Option<String>,
}

/// `?theme=light|dark` of an `/embed/*` page: the embedding site's default colours (the
/// learner's own choice, once made with the page's ☀ / ☾, wins).
#[derive(Deserialize)]
pub struct ThemeQuery {
    pub theme: Option<String>,
}

impl ThemeQuery {
    fn pick(&self) -> &'static str {
        match self.theme.as_deref() {
            Some("light") => "light",
            Some("dark") => "dark",
            _ => "",
        }
    }
}

/// The page language: `?lang=`, then the `nsplay_lang` cookie, then Accept-Language.
pub fn pick_lang(query: Option<&str>, headers: &HeaderMap) -> &'static str {
    let known = |l: &str| LANGS.iter().copied().find(|k| l.trim().to_ascii_lowercase().starts_with(k));
    if let Some(l) = query.and_then(known) {
        return l;
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("nsplay_lang="));
    if let Some(l) = cookie.and_then(known) {
        return l;
    }
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|part| known(part.split(';').next().unwrap_or(""))))
        .unwrap_or("en")
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    lang: &'static str,
    t: Ui,
    i18n_json: String,
}

#[derive(Template)]
#[template(path = "play.html")]
struct PlayPage {
    lang: &'static str,
    t: Ui,
    i18n_json: String,
}

pub fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("template error: {e}")).into_response(),
    }
}

pub async fn index(Query(q): Query<LangQuery>, headers: HeaderMap) -> Response {
    let lang = pick_lang(q.lang.as_deref(), &headers);
    let t = Ui { lang };
    let i18n_json = t.json();
    render(IndexPage { lang, t, i18n_json })
}

pub async fn play(Query(q): Query<LangQuery>, headers: HeaderMap) -> Response {
    let lang = pick_lang(q.lang.as_deref(), &headers);
    let t = Ui { lang };
    let i18n_json = t.json();
    render(PlayPage { lang, t, i18n_json })
}

pub struct LessonItem {
    pub topic: String,
    pub title: String,
    pub summary: String,
    /// The ids of its checked steps, space-separated (the page marks progress against them).
    pub checks: String,
}

/// A lesson that did not load, as /learn lists it for the operator.
pub struct BrokenItem {
    pub file: String,
    pub line: String,
    pub key: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "learn.html")]
struct LearnPage {
    lang: &'static str,
    t: Ui,
    i18n_json: String,
    lessons: Vec<LessonItem>,
    broken: Vec<BrokenItem>,
}

pub struct StepView {
    pub id: String,
    pub title: String,
    pub text_html: String,
    pub commands: Vec<String>,
    pub has_check: bool,
    /// The learner types an answer (a quiz among the step's checks).
    pub quiz: bool,
    /// Hints, revealed one at a time on demand.
    pub hints_html: Vec<String>,
    /// Steps to pass first.
    pub needs: String,
}

#[derive(Template)]
#[template(path = "lesson.html")]
struct LessonPage {
    lang: &'static str,
    t: Ui,
    i18n_json: String,
    topic: String,
    title: String,
    intro_html: String,
    /// Said when the lesson is not written in the reader's language (empty otherwise).
    fallback_note: String,
    steps: Vec<StepView>,
    /// The lesson after this one (topic and title), empty after the last.
    next_topic: String,
    next_title: String,
}

pub async fn learn(
    State(catalog): State<std::sync::Arc<lessons::Catalog>>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = pick_lang(q.lang.as_deref(), &headers);
    let loaded = catalog.get();
    let lessons = loaded
        .lessons
        .iter()
        .map(|l| LessonItem {
            topic: l.topic.clone(),
            title: l.title.get(lang).to_string(),
            summary: l.summary.get(lang).to_string(),
            checks: l.steps.iter().filter(|s| s.check.is_some()).map(|s| s.id.as_str()).collect::<Vec<_>>().join(" "),
        })
        .collect();
    let broken = loaded
        .broken
        .iter()
        .map(|b| BrokenItem {
            file: b.file.clone(),
            line: b.line.map(|l| l.to_string()).unwrap_or_default(),
            key: b.key.clone().unwrap_or_default(),
            message: b.message.clone(),
        })
        .collect();
    let t = Ui { lang };
    let i18n_json = t.json();
    render(LearnPage { lang, t, i18n_json, lessons, broken })
}

pub async fn lesson<S: super::Sessions>(
    State(st): State<super::AppState<S>>,
    Path(topic): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = pick_lang(q.lang.as_deref(), &headers);
    let loaded = st.lessons.get();
    let Some(l) = loaded.find(&topic) else {
        return not_found_page(lang, topic);
    };
    // The page attaches to the learner's session (`/api/learner/session` takes the newest):
    // its prose names that session's limits where they are not the server's (a room's).
    let own = super::learner::from_headers(&headers)
        .and_then(|learner| st.manager.learner_sessions(learner).pop())
        .map(|s| s.sandbox.limits)
        .filter(|limits| *limits != st.lessons.limits())
        .and_then(|limits| loaded.with_limits(&topic, &limits));
    render(lesson_page(own.as_ref().unwrap_or(l), &loaded, lang))
}

/// Where a lesson's images are served (`None`: a built-in lesson has none).
pub fn files_base(l: &lessons::Lesson) -> Option<String> {
    match l.source {
        lessons::Source::Dir { .. } => Some(format!("/learn/{}/files/", l.topic)),
        lessons::Source::Builtin => None,
    }
}

fn lesson_page(l: &lessons::Lesson, all: &lessons::Loaded, lang: &'static str) -> LessonPage {
    let next = all.next(&l.topic);
    let files = files_base(l);
    let steps = step_views(l, lang);
    let langs = l.languages();
    let fallback_note = if langs.contains(&lang) {
        String::new()
    } else {
        let written = langs
            .first()
            .map_or("", |w| crate::text::get(lang, if *w == "ja" { "language_ja" } else { "language_en" }));
        crate::text::fill(crate::text::get(lang, "lesson_only_in"), &[("language", written.to_string())])
    };
    let t = Ui { lang };
    let i18n_json = t.json();
    LessonPage {
        lang,
        t,
        i18n_json,
        topic: l.topic.clone(),
        title: l.title.get(lang).to_string(),
        intro_html: lessons::prose_html(l.intro.get(lang), files.as_deref()),
        fallback_note,
        steps,
        next_topic: next.map_or(String::new(), |n| n.topic.clone()),
        next_title: next.map_or(String::new(), |n| n.title.get(lang).to_string()),
    }
}

/// Largest image a lesson may ship.
pub const MAX_LESSON_FILE: u64 = 4 * 1024 * 1024;

/// `GET /learn/<topic>/files/<path>`: an image shipped beside a directory's lesson, read
/// beneath its directory (no `..`, no absolute path, no symlink out; images only).
pub async fn lesson_file(
    State(catalog): State<std::sync::Arc<lessons::Catalog>>,
    Path((topic, path)): Path<(String, String)>,
) -> Response {
    let loaded = catalog.get();
    let Some(lessons::Source::Dir { dir, .. }) = loaded.find(&topic).map(|l| l.source.clone()) else {
        return (StatusCode::NOT_FOUND, "no such lesson file").into_response();
    };
    let Some(mime) = lessons::files::image_type(&path) else {
        return (StatusCode::NOT_FOUND, "lessons serve only their images (png, jpeg, gif, webp, svg)").into_response();
    };
    let read = tokio::task::spawn_blocking(move || lessons::files::read_beneath(&dir, &path, MAX_LESSON_FILE)).await;
    match read {
        Ok(Ok(bytes)) => {
            let mut resp = bytes.into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            // An SVG opened on its own must not run a script an author put in it.
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
            );
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            resp
        }
        Ok(Err(lessons::files::FileError::Refused)) => {
            (StatusCode::FORBIDDEN, "the path leaves the lesson's directory").into_response()
        }
        _ => (StatusCode::NOT_FOUND, "no such lesson file").into_response(),
    }
}

#[derive(Template)]
#[template(path = "embed.html")]
struct EmbedPage {
    lang: &'static str,
    t: Ui,
    i18n_json: String,
    /// `embed-lesson` or `embed-play` (the module main.js boots).
    page: &'static str,
    /// The lesson's topic; empty for the playground.
    topic: String,
    title: String,
    /// The origins whose pages may frame this one and drive it by postMessage (besides
    /// nsplay's own), space-separated.
    parents: String,
    steps: Vec<StepView>,
    /// `light`, `dark`, or empty (the system's): see [`ThemeQuery`].
    theme: &'static str,
}

fn step_views(l: &lessons::Lesson, lang: &'static str) -> Vec<StepView> {
    let files = files_base(l);
    l.steps
        .iter()
        .map(|s| StepView {
            id: s.id.clone(),
            title: s.title.get(lang).to_string(),
            text_html: lessons::prose_html(s.text.get(lang), files.as_deref()),
            commands: s.commands.clone(),
            has_check: s.check.is_some(),
            quiz: s.check.as_ref().is_some_and(|c| c.is_quiz()),
            hints_html: s.hints.iter().map(|h| lessons::prose_html(h.get(lang), files.as_deref())).collect(),
            needs: s.needs.join(" "),
        })
        .collect()
}

/// `/embed/<topic>`: a lesson's steps and a terminal for another site's iframe (docs/embedding.md).
pub async fn embed_lesson<S>(
    State(st): State<super::AppState<S>>,
    Path(topic): Path<String>,
    Query(q): Query<LangQuery>,
    Query(th): Query<ThemeQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = pick_lang(q.lang.as_deref(), &headers);
    let loaded = st.lessons.get();
    let Some(l) = loaded.find(&topic) else {
        return not_found_page(lang, topic);
    };
    let t = Ui { lang };
    let i18n_json = t.json();
    let parents = st.allowed_origins.join(" ");
    let steps = step_views(l, lang);
    render(EmbedPage {
        lang,
        t,
        i18n_json,
        page: "embed-lesson",
        topic: l.topic.clone(),
        title: l.title.get(lang).to_string(),
        parents,
        steps,
        theme: th.pick(),
    })
}

/// `/embed/play`: one terminal for another site's iframe, typed into by its Run buttons
/// (`/embed.js`, postMessage).
pub async fn embed_play<S>(
    State(st): State<super::AppState<S>>,
    Query(q): Query<LangQuery>,
    Query(th): Query<ThemeQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = pick_lang(q.lang.as_deref(), &headers);
    let t = Ui { lang };
    let i18n_json = t.json();
    let parents = st.allowed_origins.join(" ");
    render(EmbedPage {
        lang,
        t,
        i18n_json,
        page: "embed-play",
        topic: String::new(),
        title: String::new(),
        parents,
        steps: Vec::new(),
        theme: th.pick(),
    })
}

/// The strings `/embed.js` shows on the author's page, in every language (it picks the page's).
const EMBED_SCRIPT_KEYS: [&str; 3] = ["run", "embed_lesson_title", "embed_terminal_title"];

/// `/embed.js`, the script an author includes on their own page: `web/js/embed.js` with its
/// strings filled in.
pub async fn embed_script() -> Response {
    let Some(file) = Assets::get("js/embed.js") else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let text: BTreeMap<&str, BTreeMap<&str, &str>> =
        LANGS.iter().map(|lang| (*lang, EMBED_SCRIPT_KEYS.iter().map(|k| (*k, Ui { lang }.s(k))).collect())).collect();
    let json = serde_json::to_string(&text).unwrap_or_default().replace('<', "\\u003c");
    let source = String::from_utf8_lossy(&file.data).replacen("/*NSPLAY_TEXT*/ {}", &json, 1);
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], source)
        .into_response()
}

#[derive(Template)]
#[template(path = "not-found.html")]
struct NotFoundPage {
    lang: &'static str,
    t: Ui,
    i18n_json: String,
    /// The lesson asked for, when it was a lesson page (askama escapes it); empty otherwise.
    lesson: String,
}

/// The styled 404 page in the reader's language.
fn not_found_page(lang: &'static str, lesson: String) -> Response {
    let t = Ui { lang };
    let i18n_json = t.json();
    let mut resp = render(NotFoundPage { lang, t, i18n_json, lesson });
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}

/// Every path no route takes. A page path with a trailing slash (`/learn/`, `/learn/uts/`)
/// redirects to the path without it; other page paths get the styled 404 page. The API's
/// unknown paths stay a bare 404 (docs/api.md).
pub async fn fallback(uri: axum::http::Uri, Query(q): Query<LangQuery>, headers: HeaderMap) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") || path.starts_with("/assets/") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let trimmed = path.trim_end_matches('/');
    // Never a redirect to another site: `//host` and `/\host` are read as one by browsers.
    if trimmed.len() < path.len() && !trimmed.is_empty() && !trimmed.contains("//") && !trimmed.contains('\\') {
        let target = match uri.query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_string(),
        };
        return axum::response::Redirect::permanent(&target).into_response();
    }
    not_found_page(pick_lang(q.lang.as_deref(), &headers), String::new())
}

#[derive(rust_embed::Embed)]
#[folder = "web/"]
#[include = "js/*.js"]
#[include = "nsplay.css"]
#[include = "vendor/*"]
struct Assets;

/// Static files, embedded in the binary. Names carry no version, so browsers revalidate
/// (cheap: ETag) instead of caching blindly.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(file) = Assets::get(&path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag =
        format!("\"{}\"", file.metadata.sha256_hash().iter().take(12).map(|b| format!("{b:02x}")).collect::<String>());
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mime = if path.ends_with(".js") {
        "text/javascript; charset=utf-8".to_string()
    } else if path.ends_with(".css") {
        "text/css; charset=utf-8".to_string()
    } else {
        mime_guess::from_path(&path).first_or_octet_stream().to_string()
    };
    let mut resp = file.data.into_owned().into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&mime).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys of every `call` (`t(` in JS, `t.s(` in templates) in `source`, which must be a
    /// string literal: a key built at run time could be missing from ui.toml unseen. Lines that
    /// are comments, and comments after ` // `, are skipped.
    fn keys_used(name: &str, source: &str, call: &str, keys: &mut BTreeMap<String, String>) {
        for (n, line) in source.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") || code.starts_with("/*") || code.starts_with('*') {
                continue;
            }
            let code = code.split(" // ").next().unwrap_or_default();
            let mut rest = code;
            while let Some(at) = rest.find(call) {
                let before = &rest[..at];
                let after = &rest[at + call.len()..];
                rest = after;
                let prev = before.chars().next_back();
                if prev.is_some_and(|c| c.is_ascii_alphanumeric() || "_$.".contains(c)) || before.ends_with("function ")
                {
                    continue; // another name ending in `t`, or t's own definition
                }
                let quote = after.chars().next().filter(|q| *q == '\'' || *q == '"');
                // The literal must be the whole argument: `t('state_' + s)` is not a key.
                let key = quote
                    .and_then(|q| {
                        let (key, tail) = after[1..].split_once(q)?;
                        tail.trim_start().starts_with([')', ',']).then_some(key)
                    })
                    .unwrap_or_default();
                assert!(
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{name}:{}: {call}...) needs a literal key from web/ui.toml: {line}",
                    n + 1
                );
                keys.entry(key.to_string()).or_insert_with(|| format!("{name}:{}", n + 1));
            }
        }
    }

    #[test]
    fn every_ui_string_exists_in_both_languages_and_is_used() {
        for (k, e) in strings() {
            assert!(!e.en.trim().is_empty() && !e.ja.trim().is_empty(), "{k} is missing a translation");
        }
        // Every key the browser modules and the templates use, with where it is used.
        let mut used = BTreeMap::new();
        let modules: Vec<_> = Assets::iter().filter(|p| p.starts_with("js/") && p.ends_with(".js")).collect();
        assert!(modules.iter().any(|p| p == "js/main.js"), "web/js/ is embedded: {modules:?}");
        for path in &modules {
            let file = Assets::get(path).unwrap();
            keys_used(&format!("web/{path}"), std::str::from_utf8(&file.data).unwrap(), "t(", &mut used);
        }
        let templates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        for entry in std::fs::read_dir(&templates).unwrap() {
            let path = entry.unwrap().path();
            let name = format!("templates/{}", path.file_name().unwrap().to_string_lossy());
            keys_used(&name, &std::fs::read_to_string(&path).unwrap(), "t.s(", &mut used);
        }
        for (key, at) in &used {
            assert!(strings().contains_key(key), "{at} uses \"{key}\", which is not in web/ui.toml");
        }
        // Server messages (text::Message keys, text::get calls) name their keys as literals in
        // the server's Rust code; server/text.rs tests that each renders.
        let server = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("server");
        let mut rust = String::new();
        for dir in ["", "session", "web", "lessons", "classroom"] {
            for entry in std::fs::read_dir(server.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "rs") {
                    rust.push_str(&std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        for key in strings().keys() {
            if !used.contains_key(key) && rust.contains(&format!("\"{key}\"")) {
                used.insert(key.clone(), "server/".into());
            }
        }
        for key in strings().keys() {
            assert!(used.contains_key(key), "web/ui.toml has \"{key}\", which nothing uses");
        }
    }

    #[test]
    fn a_key_built_at_run_time_or_missing_fails_the_check() {
        let mut used = BTreeMap::new();
        let js = "// t(whatever) in a comment\nexport function t(key, vars) {}\nparseInt(x); el.textContent = t('state_connected', { a: 1 });";
        keys_used("a.js", js, "t(", &mut used);
        assert_eq!(used.keys().collect::<Vec<_>>(), ["state_connected"]);
        let dynamic = std::panic::catch_unwind(|| keys_used("b.js", "t('state_' + s);", "t(", &mut BTreeMap::new()));
        assert!(dynamic.is_err());
        let variable = std::panic::catch_unwind(|| keys_used("c.js", "x = t(key);", "t(", &mut BTreeMap::new()));
        assert!(variable.is_err());
    }

    #[test]
    fn embed_pages_render_without_the_sites_chrome_and_the_script_gets_its_strings() {
        let catalog = lessons::Catalog::builtin(lessons::Hierarchy::V2);
        let loaded = catalog.get();
        let l = loaded.find("uts").unwrap();
        for lang in LANGS {
            let page = |p: &'static str, steps| EmbedPage {
                lang,
                t: Ui { lang },
                i18n_json: Ui { lang }.json(),
                page: p,
                topic: if p == "embed-lesson" { l.topic.clone() } else { String::new() },
                title: if p == "embed-lesson" { l.title.get(lang).to_string() } else { String::new() },
                parents: "https://docs.example".into(),
                steps,
                theme: if p == "embed-lesson" { "" } else { "light" },
            };
            let html = page("embed-lesson", step_views(l, lang)).render().unwrap();
            for needle in [
                "data-page=\"embed-lesson\"",
                "id=\"embed-start\"",
                "class=\"run\"",
                "class=\"check\"",
                "data-parent-origins=\"https://docs.example\"",
                "id=\"download-cast\"",
                "id=\"theme-toggle\"",
                l.title.get(lang),
            ] {
                assert!(html.contains(needle), "{lang} lacks {needle}");
            }
            assert!(!html.contains("class=\"topbar\""), "no site chrome");
            assert!(!html.contains("data-theme-default"), "no theme asked for: the system's");
            let html = page("embed-play", Vec::new()).render().unwrap();
            assert!(html.contains("data-page=\"embed-play\"") && !html.contains("class=\"step\""));
            assert!(
                html.contains("<html lang=\"") && html.contains(" data-theme-default=\"light\">"),
                "the site's theme"
            );
        }
        // embed_script fills this marker with the strings.
        let script = Assets::get("js/embed.js").unwrap();
        assert_eq!(std::str::from_utf8(&script.data).unwrap().matches("/*NSPLAY_TEXT*/ {}").count(), 1);
    }

    #[test]
    fn language_comes_from_query_cookie_then_accept_language() {
        let mut h = HeaderMap::new();
        assert_eq!(pick_lang(None, &h), "en");
        h.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("ja-JP,ja;q=0.9,en;q=0.8"));
        assert_eq!(pick_lang(None, &h), "ja");
        h.insert(header::COOKIE, HeaderValue::from_static("a=b; nsplay_lang=en"));
        assert_eq!(pick_lang(None, &h), "en");
        assert_eq!(pick_lang(Some("ja"), &h), "ja");
        assert_eq!(pick_lang(Some("xx"), &h), "en");
    }

    #[test]
    fn pages_render_in_both_languages() {
        for lang in LANGS {
            let t = Ui { lang };
            let html = IndexPage { lang, t, i18n_json: Ui { lang }.json() }.render().unwrap();
            assert!(html.contains("id=\"start\""));
            assert!(html.contains(&format!("lang=\"{lang}\"")));
            let html = PlayPage { lang, t: Ui { lang }, i18n_json: Ui { lang }.json() }.render().unwrap();
            assert!(html.contains("id=\"terminal\"") && html.contains("id=\"conn-state\""));
            for h in [lessons::Hierarchy::V1, lessons::Hierarchy::V2] {
                let all = lessons::catalog::load(h, &[]);
                for (i, l) in all.lessons.iter().enumerate() {
                    let html = lesson_page(l, &all, lang).render().unwrap();
                    // Every lesson but the last links to the next; the last to the list.
                    match all.lessons.get(i + 1) {
                        Some(n) => assert!(
                            html.contains(&format!("href=\"/learn/{}\"", n.topic)),
                            "{} lacks its next link",
                            l.topic
                        ),
                        None => assert!(
                            html.contains("class=\"next-lesson\"><a href=\"/learn\""),
                            "{} lacks the list link",
                            l.topic
                        ),
                    }
                    for needle in [
                        "id=\"terminal\"",
                        "id=\"inspector\"",
                        "id=\"conn-state\"",
                        "class=\"run\"",
                        "class=\"check\"",
                        l.title.get(lang),
                    ] {
                        assert!(html.contains(needle), "{} ({lang}) lacks {needle}", l.topic);
                    }
                }
            }
        }
    }
}
