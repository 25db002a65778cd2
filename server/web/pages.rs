//! HTML pages (askama templates in `templates/`) with their strings from the catalog
//! ([`crate::text`]), and the embedded static assets.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query};
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
    pub fn s(&self, key: &str) -> &'static str {
        match strings().get_key_value(key) {
            Some((k, _)) => crate::text::get(self.lang, k.as_str()),
            None => "",
        }
    }

    fn json(&self) -> String {
        let map: BTreeMap<&str, &str> = strings().keys().map(|k| (k.as_str(), self.s(k))).collect();
        // Inside <script>: never let a string close the element.
        serde_json::to_string(&map).unwrap_or_default().replace('<', "\\u003c")
    }
}

#[derive(Debug, Deserialize)]
pub struct LangQuery {
    pub lang: Option<String>,
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

fn render(t: impl Template) -> Response {
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
    pub topic: &'static str,
    pub title: &'static str,
    pub summary: &'static str,
}

#[derive(Template)]
#[template(path = "learn.html")]
struct LearnPage {
    lang: &'static str,
    t: Ui,
    i18n_json: String,
    lessons: Vec<LessonItem>,
}

pub struct StepView {
    pub id: &'static str,
    pub title: &'static str,
    pub text_html: String,
    pub commands: &'static [String],
    pub has_check: bool,
}

#[derive(Template)]
#[template(path = "lesson.html")]
struct LessonPage {
    lang: &'static str,
    t: Ui,
    i18n_json: String,
    topic: &'static str,
    title: &'static str,
    intro_html: String,
    steps: Vec<StepView>,
}

pub async fn learn(Query(q): Query<LangQuery>, headers: HeaderMap) -> Response {
    let lang = pick_lang(q.lang.as_deref(), &headers);
    let lessons = lessons::catalog()
        .iter()
        .map(|l| LessonItem { topic: &l.topic, title: l.title.get(lang), summary: l.summary.get(lang) })
        .collect();
    let t = Ui { lang };
    let i18n_json = t.json();
    render(LearnPage { lang, t, i18n_json, lessons })
}

pub async fn lesson(Path(topic): Path<String>, Query(q): Query<LangQuery>, headers: HeaderMap) -> Response {
    let lang = pick_lang(q.lang.as_deref(), &headers);
    let Some(l) = lessons::find(&topic) else {
        return (
            StatusCode::NOT_FOUND,
            Html(format!("<p>No lesson called {}. <a href=\"/learn\">All lessons</a></p>", lessons::escape(&topic))),
        )
            .into_response();
    };
    render(lesson_page(l, lang))
}

fn lesson_page(l: &'static lessons::Lesson, lang: &'static str) -> LessonPage {
    let steps = l
        .steps
        .iter()
        .map(|s| StepView {
            id: &s.id,
            title: s.title.get(lang),
            text_html: lessons::prose_html(s.text.get(lang)),
            commands: &s.commands,
            has_check: s.check.is_some(),
        })
        .collect();
    let t = Ui { lang };
    let i18n_json = t.json();
    LessonPage {
        lang,
        t,
        i18n_json,
        topic: &l.topic,
        title: l.title.get(lang),
        intro_html: lessons::prose_html(l.intro.get(lang)),
        steps,
    }
}

#[derive(rust_embed::Embed)]
#[folder = "web/"]
#[include = "nsplay.js"]
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

    #[test]
    fn every_ui_string_exists_in_both_languages() {
        for (k, e) in strings() {
            assert!(!e.en.trim().is_empty() && !e.ja.trim().is_empty(), "{k} is missing a translation");
        }
        for key in include_str!("../../web/i18n-keys.txt").lines().filter(|l| !l.trim().is_empty()) {
            assert!(strings().contains_key(key.trim()), "{key} is used but not in web/ui.toml");
        }
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
            for l in lessons::catalog() {
                let html = lesson_page(l, lang).render().unwrap();
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
