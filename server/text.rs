//! The one catalog of user-facing text: every string the server shows or sends — page and
//! script strings, refusals, terminal notices, limit events — in English and Japanese, from
//! `web/ui.toml`. Layers below the web hand over typed values ([`Message`]); they are turned
//! into words here, in the reader's language, at the edge.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// The languages of the catalog (codes as in `<html lang>` and `?lang=`).
pub const LANGS: [&str; 2] = ["en", "ja"];

#[derive(Debug, Deserialize)]
pub struct Entry {
    pub en: String,
    pub ja: String,
}

/// Every entry of `web/ui.toml`, by key.
pub fn catalog() -> &'static BTreeMap<String, Entry> {
    static UI: OnceLock<BTreeMap<String, Entry>> = OnceLock::new();
    UI.get_or_init(|| {
        toml::from_str(include_str!("../web/ui.toml")).expect("web/ui.toml is valid (a unit test checks it)")
    })
}

/// One string in `lang` (English unless `lang` is `ja`); a key missing from the catalog gives
/// the key itself, never an empty or undefined text (a unit test keeps the catalog complete).
pub fn get<'a>(lang: &str, key: &'a str) -> &'a str {
    lookup(lang, key).unwrap_or(key)
}

/// One string in `lang` (English unless `lang` is `ja`), if the catalog has `key`.
pub fn lookup(lang: &str, key: &str) -> Option<&'static str> {
    catalog().get(key).map(|e| if lang == "ja" { e.ja.as_str() } else { e.en.as_str() })
}

/// Something a layer below the web has to say to a person, as a catalog key and the values
/// of its `{placeholders}`.
pub trait Message {
    fn key(&self) -> &'static str;
    fn args(&self) -> Vec<(&'static str, String)>;
}

/// A message in words, in `lang`.
pub fn render(lang: &str, m: &dyn Message) -> String {
    fill(get(lang, m.key()), &m.args())
}

/// Replaces each `{name}` in `template` by its value; unknown placeholders stay as written.
pub fn fill(template: &str, args: &[(&str, String)]) -> String {
    fill_between(template, ("{", "}"), args)
}

/// Replaces each `<open>name<close>` in `template` by its value in `args`; unknown
/// placeholders stay as written. The catalog's texts use `{name}`, lessons' prose `{{name}}`.
pub fn fill_between(template: &str, (open, close): (&str, &str), args: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(at) = rest.find(open) {
        out.push_str(&rest[..at]);
        let after = &rest[at + open.len()..];
        let value =
            after.find(close).and_then(|end| args.iter().find(|(k, _)| *k == &after[..end]).map(|(_, v)| (v, end)));
        match value {
            Some((v, end)) => {
                out.push_str(v);
                rest = &after[end + close.len()..];
            }
            None => {
                out.push_str(open);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_has_both_languages_with_the_same_placeholders() {
        let names = |s: &str| {
            let mut v: Vec<String> =
                s.split('{').skip(1).filter_map(|p| p.split_once('}').map(|(n, _)| n.to_string())).collect();
            v.sort();
            v
        };
        for (k, e) in catalog() {
            assert!(!e.en.trim().is_empty() && !e.ja.trim().is_empty(), "{k} is missing a translation");
            assert_eq!(names(&e.en), names(&e.ja), "{k}: English and Japanese use different placeholders");
        }
    }

    #[test]
    fn placeholders_are_filled_and_unknown_ones_kept() {
        let args = [("max", "3".to_string()), ("seconds", "20".to_string())];
        assert_eq!(fill("{max} open, wait {seconds} s {x}", &args), "3 open, wait 20 s {x}");
        assert_eq!(fill("no braces", &args), "no braces");
        assert_eq!(fill("unclosed {max", &args), "unclosed {max");
        assert_eq!(get("ja", "no-such-key"), "no-such-key");
    }

    #[test]
    fn session_messages_follow_the_readers_language() {
        use crate::session::Notice;
        let kill = Notice::MemoryKill { limit: "64 MiB".into() };
        assert_eq!(render("en", &kill), "A process was killed: the memory limit (64 MiB) was reached.");
        assert_eq!(render("ja", &kill), "メモリ上限（64 MiB）に達したため、プロセスが強制終了されました。");
        assert!(render("ja", &Notice::MaxAgeSoon { minutes: 5 }).contains("あと 5 分"));
        // A kill at a child group's limit names that limit, not the session's.
        let child = Notice::ChildMemoryKill { limit: "32 MiB".into() };
        assert_eq!(
            render("en", &child),
            "A process was killed: the memory limit (32 MiB) of a cgroup you created was reached."
        );
        assert!(render("ja", &child).contains("作成した cgroup のメモリ上限（32 MiB）"));
        // The pids notice says how to get out of a fork bomb.
        let pids = Notice::PidsLimit { max: 128 };
        assert!(render("en", &pids).contains("press Reset at the top of the page"));
        assert!(render("ja", &pids).contains("「リセット」を押してください"));
        let full = crate::session::Refusal::Full { max: 80, retry_after: std::time::Duration::from_secs(20) };
        assert_eq!(render("en", &full), "The playground is full (80 sessions are running). Try again in 20 s.");
        assert!(render("ja", &full).contains("20 秒後"));
        // Every message a layer below hands over has its entry (a missing one would show its key).
        let every: Vec<Box<dyn Message>> = vec![
            Box::new(Notice::MaxAgeReached),
            Box::new(Notice::MaxAgeSoon { minutes: 1 }),
            Box::new(Notice::ShuttingDown),
            Box::new(Notice::DrainCancelled),
            Box::new(Notice::Drained),
            Box::new(kill),
            Box::new(Notice::PidsLimit { max: 1 }),
            Box::new(Notice::ChildMemoryKill { limit: "32 MiB".into() }),
            Box::new(full),
            Box::new(crate::session::Refusal::ClientCap { max: 3, retry_after: Default::default() }),
            Box::new(crate::session::Refusal::RateLimited { retry_after: Default::default() }),
        ];
        for m in every {
            assert!(catalog().contains_key(m.key()), "{} is not in web/ui.toml", m.key());
        }
        for key in ["notice_bad_control", "close_too_big"] {
            assert!(catalog().contains_key(key), "{key} is not in web/ui.toml");
        }
    }
}
