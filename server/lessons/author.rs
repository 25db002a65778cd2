//! Check kinds an author composes in a lesson's TOML without Rust (`[[steps.check]]`): a file
//! exists or contains a pattern, a process runs, a socket listens, a mount, a link, an address
//! or a route exists, a cgroup file has a value, a quiz answer matches — and `all`/`any` of
//! them. Each reads the kernel's view from the host like the built-in kinds ([`super::checks`]):
//! files through the session's own root (`/proc/<pid>/root`, [`super::files`]), sockets from
//! `/proc/<pid>/net/*` of a process in the namespace, mounts from its `mountinfo`, links,
//! addresses and routes from the host's `ip` in that network namespace only. Nothing is run
//! inside the session and nothing it prints counts. `ns = "<kind>"` looks in the nested
//! namespaces of that kind (at most [`super::checks::MAX_NAMESPACES`]) instead of the session's.

use std::collections::BTreeSet;

use regex::Regex;
use serde::Deserialize;

use super::checks::{Outcome, Probe, in_ns, nested_in, tr};
use super::files;

/// Largest file a `file` check reads (its `contains` sees at most this much).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Largest `/proc` table (`net/tcp`, `mountinfo`) read per process.
const MAX_TABLE_BYTES: u64 = 1024 * 1024;
/// Largest command line read per process.
const MAX_CMDLINE_BYTES: u64 = 4096;
/// Most nested `all`/`any` levels.
const MAX_DEPTH: usize = 4;
/// Largest compiled pattern (the regex crate's own bound; its matching is linear).
const REGEX_SIZE: usize = 256 * 1024;

/// One author check, as written in the lesson. Which fields a kind takes is [`KINDS`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub kind: String,
    pub path: Option<String>,
    pub contains: Option<String>,
    pub command: Option<String>,
    pub ns: Option<String>,
    pub port: Option<u16>,
    pub proto: Option<String>,
    pub fstype: Option<String>,
    pub name: Option<String>,
    pub address: Option<String>,
    pub route: Option<String>,
    pub file: Option<String>,
    pub value: Option<String>,
    pub answer: Option<String>,
    #[serde(default)]
    pub of: Vec<Spec>,
}

/// (kind, required fields, optional fields, namespace kinds `ns` may name).
pub type KindRow = (&'static str, &'static [&'static str], &'static [&'static str], &'static [&'static str]);

/// Every author kind: its required fields, its optional ones, and the namespace kinds its `ns`
/// may name.
pub const KINDS: &[KindRow] = &[
    ("file", &["path"], &["contains", "ns"], &["mnt"]),
    ("process", &["command"], &["ns"], &["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"]),
    ("listen", &["port"], &["proto", "ns"], &["net"]),
    ("mount", &["path"], &["fstype", "ns"], &["mnt"]),
    ("link", &["name"], &["ns"], &["net"]),
    ("address", &["address"], &["ns"], &["net"]),
    ("route", &["route"], &["ns"], &["net"]),
    ("cgroup", &["file", "value"], &[], &[]),
    ("quiz", &["answer"], &[], &[]),
    ("all", &["of"], &[], &[]),
    ("any", &["of"], &[], &[]),
];

fn regex(pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern).size_limit(REGEX_SIZE).build().map_err(|e| format!("not a valid pattern: {e}"))
}

/// A pattern the whole text must match.
fn whole(pattern: &str) -> Result<Regex, String> {
    regex(&format!("^(?:{pattern})$"))
}

impl Spec {
    /// The fields given, by name.
    fn given(&self) -> Vec<&'static str> {
        let mut g = Vec::new();
        let fields: [(&'static str, bool); 15] = [
            ("path", self.path.is_some()),
            ("contains", self.contains.is_some()),
            ("command", self.command.is_some()),
            ("ns", self.ns.is_some()),
            ("port", self.port.is_some()),
            ("proto", self.proto.is_some()),
            ("fstype", self.fstype.is_some()),
            ("name", self.name.is_some()),
            ("address", self.address.is_some()),
            ("route", self.route.is_some()),
            ("file", self.file.is_some()),
            ("value", self.value.is_some()),
            ("answer", self.answer.is_some()),
            ("of", !self.of.is_empty()),
            ("kind", true),
        ];
        for (n, on) in fields {
            if on && n != "kind" {
                g.push(n);
            }
        }
        g
    }

    pub fn kinds(&self, out: &mut BTreeSet<String>) {
        out.insert(self.kind.clone());
        for s in &self.of {
            s.kinds(out);
        }
    }

    /// Checks kind, fields and patterns; the error names the key (`path`, `of[1].port`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.validate_at(0)
    }

    fn validate_at(&self, depth: usize) -> Result<(), (String, String)> {
        let e = |k: &str, m: String| Err((k.to_string(), m));
        let Some((_, needs, optional, ns_kinds)) = KINDS.iter().find(|(k, ..)| *k == self.kind) else {
            let known: Vec<&str> = KINDS.iter().map(|k| k.0).collect();
            return e("kind", format!("unknown kind `{}` (author kinds: {})", self.kind, known.join(", ")));
        };
        for n in *needs {
            if !self.given().contains(n) {
                return e(n, format!("kind `{}` needs `{n}`", self.kind));
            }
        }
        for g in self.given() {
            if !needs.contains(&g) && !optional.contains(&g) {
                return e(g, format!("kind `{}` takes no `{g}`", self.kind));
            }
        }
        if let Some(ns) = &self.ns
            && !ns_kinds.contains(&ns.as_str())
        {
            return e(
                "ns",
                format!("kind `{}` looks in nested namespaces of kind {}, not `{ns}`", self.kind, ns_kinds.join(", ")),
            );
        }
        for (k, v) in [("contains", &self.contains), ("command", &self.command), ("value", &self.value)] {
            if let Some(p) = v {
                regex(p).map_err(|m| (k.to_string(), m))?;
            }
        }
        for (k, v) in [("name", &self.name), ("answer", &self.answer)] {
            if let Some(p) = v {
                whole(p).map_err(|m| (k.to_string(), m))?;
            }
        }
        if let Some(p) = &self.path
            && !p.starts_with('/')
        {
            return e("path", format!("`{p}` must be absolute (as the session sees it)"));
        }
        if let Some(p) = &self.proto
            && !matches!(p.as_str(), "tcp" | "udp")
        {
            return e("proto", format!("`{p}` is neither tcp nor udp"));
        }
        if self.port == Some(0) {
            return e("port", "port 0 never listens".into());
        }
        if let Some(f) = &self.file
            && files::relative(f).is_none()
        {
            return e(
                "file",
                format!("`{f}` must be a file of the session's cgroup, like `pids.max` or `child/memory.max`"),
            );
        }
        if let Some(a) = &self.address
            && a.parse::<ipnet::IpNet>().is_err()
            && a.parse::<std::net::IpAddr>().is_err()
        {
            return e("address", format!("`{a}` is not an address (10.0.0.1) or one with its prefix (10.0.0.1/24)"));
        }
        if let Some(r) = &self.route
            && r != "default"
            && r.parse::<ipnet::IpNet>().is_err()
            && r.parse::<std::net::IpAddr>().is_err()
        {
            return e("route", format!("`{r}` is neither `default` nor a destination like 10.0.0.0/24"));
        }
        if depth >= MAX_DEPTH && !self.of.is_empty() {
            return e("of", format!("more than {MAX_DEPTH} levels of all/any"));
        }
        for (i, s) in self.of.iter().enumerate() {
            s.validate_at(depth + 1).map_err(|(k, m)| (format!("of[{i}].{k}"), m))?;
        }
        Ok(())
    }
}

fn pass(lang: &str, en: String, ja: String) -> Outcome {
    Outcome { passed: true, detail: tr(lang, en, ja) }
}

fn fail(lang: &str, en: String, ja: String) -> Outcome {
    Outcome { passed: false, detail: tr(lang, en, ja) }
}

/// Every check of a step must pass (`[[steps.check]]` written more than once means all).
pub fn run_all(specs: &[Spec], p: &Probe<'_>, lang: &str) -> Outcome {
    all(specs, p, lang)
}

fn all(specs: &[Spec], p: &Probe<'_>, lang: &str) -> Outcome {
    let mut details = Vec::new();
    for s in specs {
        let o = run(s, p, lang);
        if !o.passed {
            return o;
        }
        details.push(o.detail);
    }
    Outcome { passed: true, detail: details.join(" ") }
}

/// The processes to look at: the session's init, or one in each nested namespace of `ns`.
/// With `ns`, none nested is its own failure.
fn targets(p: &Probe<'_>, ns: Option<&str>, lang: &str) -> Result<Vec<(String, i32)>, Outcome> {
    match ns {
        None => Ok(vec![(tr(lang, "the session".into(), "セッション".into()), p.init_pid)]),
        Some(kind) => {
            let nested = nested_in(p, kind);
            if nested.is_empty() {
                return Err(fail(
                    lang,
                    format!("No process of your session runs in a nested {kind} namespace yet."),
                    format!("入れ子の {kind} 名前空間で動いているプロセスはまだありません。"),
                ));
            }
            Ok(nested
                .into_iter()
                .map(|(ino, pid)| (tr(lang, format!("{kind} namespace {ino}"), format!("{kind} 名前空間 {ino}")), pid))
                .collect())
        }
    }
}

fn read_proc(pid: i32, name: &str, max: u64) -> String {
    use std::io::Read;
    let mut out = Vec::new();
    if let Ok(f) = std::fs::File::open(format!("/proc/{pid}/{name}")) {
        let _ = f.take(max).read_to_end(&mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One check (validated at load: a pattern that does not compile here cannot happen, and fails).
pub fn run(s: &Spec, p: &Probe<'_>, lang: &str) -> Outcome {
    let o = |r: Result<Outcome, Outcome>| r.unwrap_or_else(|e| e);
    match s.kind.as_str() {
        "all" => all(&s.of, p, lang),
        "any" => {
            let mut fails = Vec::new();
            for c in &s.of {
                let r = run(c, p, lang);
                if r.passed {
                    return r;
                }
                fails.push(r.detail);
            }
            Outcome { passed: false, detail: fails.join(" / ") }
        }
        "file" => o(file(s, p, lang)),
        "process" => o(process(s, p, lang)),
        "listen" => o(listen(s, p, lang)),
        "mount" => o(mount(s, p, lang)),
        "link" | "address" | "route" => o(net(s, p, lang)),
        "cgroup" => o(cgroup(s, p, lang)),
        "quiz" => quiz(s, p, lang),
        k => fail(lang, format!("unknown check {k}"), format!("不明なチェック {k}")),
    }
}

fn bad_pattern(lang: &str, e: String) -> Outcome {
    fail(lang, format!("The lesson's pattern is invalid: {e}"), format!("レッスンのパターンが不正です: {e}"))
}

fn file(s: &Spec, p: &Probe<'_>, lang: &str) -> Result<Outcome, Outcome> {
    let path = s.path.as_deref().unwrap_or("");
    let contains = s.contains.as_deref().map(regex).transpose().map_err(|e| bad_pattern(lang, e))?;
    let mut seen = Vec::new();
    for (where_, pid) in targets(p, s.ns.as_deref(), lang)? {
        let Ok(root) = files::root_of(pid) else { continue };
        match files::read_in_root(&root, path, MAX_FILE_BYTES) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                match &contains {
                    None => {
                        return Ok(pass(
                            lang,
                            format!("{path} exists in {where_}."),
                            format!("{where_}に {path} があります。"),
                        ));
                    }
                    Some(re) if re.is_match(&text) => {
                        return Ok(pass(
                            lang,
                            format!("{path} in {where_} contains what the step asks for."),
                            format!("{where_}の {path} に、ステップが求める内容が入っています。"),
                        ));
                    }
                    Some(_) => seen.push(tr(
                        lang,
                        format!("{path} in {where_} does not contain it yet"),
                        format!("{where_}の {path} にはまだ入っていません"),
                    )),
                }
            }
            Err(files::FileError::TooLarge(n)) => seen.push(tr(
                lang,
                format!("{path} in {where_} is larger than {n} bytes"),
                format!("{where_}の {path} は {n} バイトを超えています"),
            )),
            Err(files::FileError::NotRegular) => seen.push(tr(
                lang,
                format!("{path} in {where_} is not a regular file"),
                format!("{where_}の {path} は通常のファイルではありません"),
            )),
            Err(_) => seen.push(tr(
                lang,
                format!("{path} does not exist in {where_}"),
                format!("{where_}に {path} がありません"),
            )),
        }
    }
    Err(fail(lang, format!("{}.", seen.join("; ")), format!("{}。", seen.join("、"))))
}

fn process(s: &Spec, p: &Probe<'_>, lang: &str) -> Result<Outcome, Outcome> {
    let re = regex(s.command.as_deref().unwrap_or("")).map_err(|e| bad_pattern(lang, e))?;
    let base = s.ns.as_deref().and_then(|k| nsplay_sandbox::namespace_inode(p.init_pid, k));
    for &pid in &p.pids {
        if let (Some(k), Some(base)) = (s.ns.as_deref(), base)
            && nsplay_sandbox::namespace_inode(pid, k).is_none_or(|i| i == base)
        {
            continue;
        }
        let cmdline = read_proc(pid, "cmdline", MAX_CMDLINE_BYTES).replace('\0', " ");
        let cmdline = cmdline.trim();
        if !cmdline.is_empty() && re.is_match(cmdline) {
            let where_ = s.ns.as_deref().map_or(String::new(), |k| {
                tr(lang, format!(" in a nested {k} namespace"), format!("入れ子の {k} 名前空間で"))
            });
            return Ok(pass(
                lang,
                format!("A process runs{where_}: `{cmdline}` (host pid {pid})."),
                format!("{where_}プロセスが動いています: `{cmdline}`（ホストの pid {pid}）。"),
            ));
        }
    }
    let where_ = s
        .ns
        .as_deref()
        .map_or(String::new(), |k| tr(lang, format!(" in a nested {k} namespace"), format!("入れ子の {k} 名前空間で")));
    Err(fail(
        lang,
        format!("No process with that command line runs{where_} yet."),
        format!("{where_}そのコマンドラインのプロセスはまだ動いていません。"),
    ))
}

/// Whether a `/proc/net/{tcp,udp}[6]` table has a listening socket on `port`.
fn listens(table: &str, port: u16, tcp: bool) -> bool {
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let local_port = f.get(1).and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        // TCP_LISTEN is 0A; an unconnected UDP socket is TCP_CLOSE (07).
        let state = f.get(3).copied();
        local_port == Some(port) && state == Some(if tcp { "0A" } else { "07" })
    })
}

fn listen(s: &Spec, p: &Probe<'_>, lang: &str) -> Result<Outcome, Outcome> {
    let port = s.port.unwrap_or(0);
    let proto = s.proto.as_deref().unwrap_or("tcp");
    for (where_, pid) in targets(p, s.ns.as_deref(), lang)? {
        let found = [proto.to_string(), format!("{proto}6")]
            .iter()
            .any(|t| listens(&read_proc(pid, &format!("net/{t}"), MAX_TABLE_BYTES), port, proto == "tcp"));
        if found {
            return Ok(pass(
                lang,
                format!("A {proto} socket listens on port {port} in {where_}."),
                format!("{where_}で、{proto} のソケットがポート {port} で待ち受けています。"),
            ));
        }
    }
    let where_ = s.ns.as_deref().map_or_else(
        || tr(lang, "the session".into(), "セッション".into()),
        |k| tr(lang, format!("a nested {k} namespace"), format!("入れ子の {k} 名前空間")),
    );
    Err(fail(
        lang,
        format!("Nothing listens on {proto} port {port} in {where_} yet."),
        format!("{where_}では、まだ {proto} のポート {port} で待ち受けているものがありません。"),
    ))
}

/// A mountinfo path with its octal escapes (`\040` for a space) undone.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 4]).ok().and_then(|t| u8::from_str_radix(t, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mount(s: &Spec, p: &Probe<'_>, lang: &str) -> Result<Outcome, Outcome> {
    let path = s.path.as_deref().unwrap_or("");
    let fstype = s.fstype.as_deref();
    let mut other = None;
    for (where_, pid) in targets(p, s.ns.as_deref(), lang)? {
        for l in read_proc(pid, "mountinfo", MAX_TABLE_BYTES).lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let Some(sep) = f.iter().position(|x| *x == "-") else { continue };
            let (Some(point), Some(ty)) = (f.get(4), f.get(sep + 1)) else { continue };
            if unescape(point) != path {
                continue;
            }
            if fstype.is_none_or(|t| t == *ty) {
                return Ok(pass(
                    lang,
                    format!("{path} is a {ty} mount in {where_}."),
                    format!("{where_}で、{path} に {ty} がマウントされています。"),
                ));
            }
            other = Some(ty.to_string());
        }
    }
    let want = fstype.unwrap_or("");
    Err(match other {
        Some(ty) => fail(
            lang,
            format!("{path} is mounted, but as {ty}, not {want}."),
            format!("{path} はマウントされていますが、{want} ではなく {ty} です。"),
        ),
        None => fail(
            lang,
            format!("Nothing is mounted at {path} yet."),
            format!("{path} にはまだ何もマウントされていません。"),
        ),
    })
}

/// Whether the network namespace of a pid has what a check asks for.
type NetMatch = Box<dyn Fn(&Probe<'_>, i32) -> bool>;

fn net(s: &Spec, p: &Probe<'_>, lang: &str) -> Result<Outcome, Outcome> {
    let (what, matches): (String, NetMatch) = match s.kind.as_str() {
        "link" => {
            let re = whole(s.name.as_deref().unwrap_or("")).map_err(|e| bad_pattern(lang, e))?;
            let what = tr(
                lang,
                format!("a link named {}", s.name.as_deref().unwrap_or("")),
                format!("{} という名前のリンク", s.name.as_deref().unwrap_or("")),
            );
            (
                what,
                Box::new(move |p, pid| {
                    in_ns(p, pid, "net", &["ip", "-o", "link", "show"]).is_some_and(|out| {
                        out.lines().any(|l| {
                            let name = l.split(':').nth(1).unwrap_or("").trim();
                            re.is_match(name.split('@').next().unwrap_or(name))
                        })
                    })
                }),
            )
        }
        "address" => {
            let want = s.address.clone().unwrap_or_default();
            let what = tr(lang, format!("the address {want}"), format!("アドレス {want}"));
            (
                what,
                Box::new(move |p, pid| {
                    in_ns(p, pid, "net", &["ip", "-o", "addr", "show"]).is_some_and(|out| {
                        out.lines().any(|l| {
                            let f: Vec<&str> = l.split_whitespace().collect();
                            f.windows(2).any(|w| {
                                (w[0] == "inet" || w[0] == "inet6")
                                    && (w[1] == want
                                        || (!want.contains('/') && w[1].split('/').next() == Some(want.as_str())))
                            })
                        })
                    })
                }),
            )
        }
        _ => {
            let want = s.route.clone().unwrap_or_default();
            let what = tr(lang, format!("a route to {want}"), format!("{want} への経路"));
            (
                what,
                Box::new(move |p, pid| {
                    ["-4", "-6"].iter().any(|fam| {
                        in_ns(p, pid, "net", &["ip", fam, "route", "show"])
                            .is_some_and(|out| out.lines().any(|l| l.split_whitespace().next() == Some(want.as_str())))
                    })
                }),
            )
        }
    };
    for (where_, pid) in targets(p, s.ns.as_deref(), lang)? {
        if matches(p, pid) {
            return Ok(pass(lang, format!("{where_} has {what}."), format!("{where_}に{what}があります。")));
        }
    }
    let where_ = s.ns.as_deref().map_or_else(
        || tr(lang, "the session".into(), "セッション".into()),
        |k| tr(lang, format!("a nested {k} namespace"), format!("入れ子の {k} 名前空間")),
    );
    Err(fail(lang, format!("No {where_} has {what} yet."), format!("{where_}にはまだ{what}がありません。")))
}

fn cgroup(s: &Spec, p: &Probe<'_>, lang: &str) -> Result<Outcome, Outcome> {
    let name = s.file.as_deref().unwrap_or("");
    let re = regex(s.value.as_deref().unwrap_or("")).map_err(|e| bad_pattern(lang, e))?;
    match files::read_beneath(&p.cgroup_dir, name, MAX_TABLE_BYTES) {
        Ok(bytes) => {
            let v = String::from_utf8_lossy(&bytes).trim().to_string();
            let shown: String = v.chars().take(80).collect();
            if re.is_match(&v) {
                Ok(pass(
                    lang,
                    format!("The session's cgroup file {name} reads {shown}."),
                    format!("セッションの cgroup ファイル {name} の値は {shown} です。"),
                ))
            } else {
                Err(fail(
                    lang,
                    format!("The session's cgroup file {name} reads {shown}, not what the step asks for yet."),
                    format!(
                        "セッションの cgroup ファイル {name} の値は {shown} で、まだステップが求める値ではありません。"
                    ),
                ))
            }
        }
        Err(_) => Err(fail(
            lang,
            format!("The session's cgroup has no file {name} (yet)."),
            format!("セッションの cgroup に {name} というファイルは（まだ）ありません。"),
        )),
    }
}

fn quiz(s: &Spec, p: &Probe<'_>, lang: &str) -> Outcome {
    let Some(answer) = p.answer.as_deref().map(str::trim).filter(|a| !a.is_empty()) else {
        return fail(lang, "Type your answer first.".into(), "先に答えを入力してください。".into());
    };
    match whole(s.answer.as_deref().unwrap_or("")) {
        Ok(re) if re.is_match(answer) => pass(lang, "That is right.".into(), "正解です。".into()),
        Ok(_) => fail(lang, "Not quite: try again.".into(), "違います。もう一度考えてみてください。".into()),
        Err(e) => bad_pattern(lang, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> Spec {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn validation_names_the_key() {
        assert_eq!(spec("kind = \"file\"\npath = \"/tmp/x\"").validate(), Ok(()));
        assert_eq!(spec("kind = \"file\"").validate().unwrap_err().0, "path");
        assert_eq!(spec("kind = \"file\"\npath = \"tmp\"").validate().unwrap_err().0, "path");
        assert_eq!(spec("kind = \"file\"\npath = \"/x\"\nport = 3").validate().unwrap_err().0, "port");
        assert_eq!(spec("kind = \"nope\"").validate().unwrap_err().0, "kind");
        assert_eq!(spec("kind = \"process\"\ncommand = \"(\"").validate().unwrap_err().0, "command");
        assert_eq!(spec("kind = \"listen\"\nport = 80\nns = \"mnt\"").validate().unwrap_err().0, "ns");
        assert_eq!(spec("kind = \"cgroup\"\nfile = \"../x\"\nvalue = \"1\"").validate().unwrap_err().0, "file");
        assert_eq!(spec("kind = \"route\"\nroute = \"nowhere\"").validate().unwrap_err().0, "route");
        let nested = spec("kind = \"any\"\n[[of]]\nkind = \"listen\"\nport = 80\n[[of]]\nkind = \"listen\"\n");
        assert_eq!(nested.validate().unwrap_err().0, "of[1].port");
    }

    #[test]
    fn socket_tables_are_read_as_the_kernel_writes_them() {
        let tcp = "  sl  local_address rem_address   st\n   0: 00000000:1F90 00000000:0000 0A 00000000\n   1: 0100007F:0016 0100007F:9C40 01 0\n";
        assert!(listens(tcp, 8080, true));
        assert!(!listens(tcp, 22, true), "an established connection does not listen");
        assert!(!listens(tcp, 8080, false));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
