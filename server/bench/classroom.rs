//! The `classroom` part: a workshop room on one server. Learners join over a ramp; a few flood
//! their terminal with `yes`, a few run a fork bomb, the rest type a short command every ~2 s.
//! What the typists feel (keystroke → echo), whether any keystroke or join was lost, `/healthz`
//! while it all runs, and what the room costs the host in memory.
//!
//! Every client here reads as fast as it can, floods included: the worst case for the server,
//! and the one a fairness fix must hold against. The typists' own clients run on their own
//! runtime threads so that reading the floods does not delay noticing an echo.

use super::*;

/// Counts of one classroom run.
#[derive(Debug, Clone)]
pub(super) struct ClassroomPlan {
    pub learners: usize,
    pub floods: usize,
    pub bombs: usize,
    /// Learners join one after another over this long.
    pub ramp: Duration,
    /// How long everyone keeps at it once the last learner joined.
    pub hold: Duration,
    /// Pause between a typist's commands (each pause varies by ±25 %).
    pub think: Duration,
}

/// What one run measured.
#[derive(Debug, Default)]
pub(super) struct ClassroomResult {
    pub joined: usize,
    /// First few join failures, with their text.
    pub join_failures: Vec<String>,
    pub join_failed: usize,
    /// Keystrokes typed, and those whose echo never came (or whose command never answered).
    pub keystrokes: usize,
    pub lost: usize,
    pub first_loss: Option<String>,
    pub echo: Vec<Duration>,
    pub healthz: Vec<Duration>,
    pub healthz_failed: usize,
    /// Bytes the flooding learners received in all.
    pub flood_bytes: u64,
    pub flood_secs: f64,
    /// Host memory the room took: MemAvailable before the server started minus at the end of
    /// the run, per learner.
    pub mem_per_learner: Option<f64>,
    pub server_rss_kib: u64,
}

enum Role {
    Flood,
    Bomb,
    Typist,
}

fn role(i: usize, plan: &ClassroomPlan) -> Role {
    // Spread the noisy learners over the ramp, so floods start early and late alike.
    let noisy = plan.floods + plan.bombs;
    if noisy == 0 {
        return Role::Typist;
    }
    let every = (plan.learners / noisy).max(1);
    let k = i / every;
    if i.is_multiple_of(every) && k < noisy {
        if k.is_multiple_of(2) && k / 2 < plan.floods || k / 2 >= plan.bombs { Role::Flood } else { Role::Bomb }
    } else {
        Role::Typist
    }
}

/// A small deterministic jitter source (no randomness crate for ±25 %).
struct Lcg(u64);

impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What each learner reports back.
enum Outcome {
    JoinFailed(String),
    Flood { bytes: u64, secs: f64 },
    Other,
    Typist { echo: Vec<Duration>, typed: usize, lost: usize, loss: Option<String> },
}

/// One room on a server of its own named `name`, started with `extra` options.
pub(super) fn part_classroom(
    plan: &Plan,
    room: &ClassroomPlan,
    name: &str,
    extra: &[String],
) -> Result<ClassroomResult> {
    let mem0 = mem_available();
    let srv = std::sync::Arc::new(Server::start(plan, name, extra)?);
    let typists_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let noisy_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let start = Instant::now();
    let end = start + room.ramp + room.hold;
    let mut handles = Vec::new();
    for i in 0..room.learners {
        let at = start + room.ramp.mul_f64(i as f64 / room.learners.max(1) as f64);
        let srv = srv.clone();
        let think = room.think;
        match role(i, room) {
            Role::Typist => handles.push(typists_rt.spawn(typist(srv, at, end, think, i as u64))),
            Role::Flood => handles.push(noisy_rt.spawn(noisy(srv, at, end, b"yes\r"))),
            Role::Bomb => handles.push(noisy_rt.spawn(noisy(srv, at, end, b":(){ :|:& };:\r"))),
        }
    }
    progress(format!(
        "{name}: {} learners over {:.0} s ({} flooding, {} fork bombs), then {:.0} s",
        room.learners,
        room.ramp.as_secs_f64(),
        room.floods,
        room.bombs,
        room.hold.as_secs_f64()
    ));
    let health = typists_rt.spawn(poll_healthz(srv.clone(), end));
    let mut res = ClassroomResult::default();
    let mut mem_end = None;
    typists_rt.block_on(async {
        // MemAvailable once everyone is in and busy, just before the end.
        let sample_at = end.checked_sub(Duration::from_secs(2)).unwrap_or(end).max(start + room.ramp);
        tokio::time::sleep_until(tokio::time::Instant::from_std(sample_at)).await;
        mem_end = mem_available();
        res.server_rss_kib = rss_kib(srv.pid);
    });
    for h in handles {
        match typists_rt.block_on(h) {
            Ok(Outcome::JoinFailed(e)) => {
                res.join_failed += 1;
                if res.join_failures.len() < 3 {
                    res.join_failures.push(e);
                }
            }
            Ok(Outcome::Flood { bytes, secs }) => {
                res.joined += 1;
                res.flood_bytes += bytes;
                res.flood_secs = res.flood_secs.max(secs);
            }
            Ok(Outcome::Other) => res.joined += 1,
            Ok(Outcome::Typist { echo, typed, lost, loss }) => {
                res.joined += 1;
                res.echo.extend(echo);
                res.keystrokes += typed;
                res.lost += lost;
                if res.first_loss.is_none() {
                    res.first_loss = loss;
                }
            }
            Err(e) => bail!("a learner's task panicked: {e}"),
        }
    }
    (res.healthz, res.healthz_failed) = typists_rt.block_on(health)?;
    if let (Some(a), Some(b)) = (mem0, mem_end) {
        res.mem_per_learner = Some(a.saturating_sub(b) as f64 / room.learners.max(1) as f64);
    }
    drop(noisy_rt);
    drop(typists_rt);
    match std::sync::Arc::try_unwrap(srv) {
        Ok(s) => s.stop(),
        Err(_) => bail!("the classroom server is still referenced"),
    }
    Ok(res)
}

async fn join(srv: &Server, at: Instant) -> Result<Session> {
    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    let (_, s) = srv.spawn().await?;
    Ok(s)
}

/// A flooding or bombing learner: types `cmd` once, then reads everything until `end`.
async fn noisy(srv: std::sync::Arc<Server>, at: Instant, end: Instant, cmd: &'static [u8]) -> Outcome {
    let mut s = match join(&srv, at).await {
        Ok(s) => s,
        Err(e) => return Outcome::JoinFailed(format!("{e:#}")),
    };
    if let Err(e) = send(&mut s.ws, cmd).await {
        return Outcome::JoinFailed(format!("typing {:?}: {e:#}", String::from_utf8_lossy(cmd)));
    }
    let t0 = Instant::now();
    let mut bytes = 0u64;
    let deadline = tokio::time::Instant::from_std(end);
    while let Ok(Ok(b)) = tokio::time::timeout_at(deadline, next_output(&mut s.ws)).await {
        bytes += b.len() as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    if cmd.starts_with(b"yes") { Outcome::Flood { bytes, secs } } else { Outcome::Other }
}

/// A typist: every `think` (±25 %) types `echo $((A+B))` one key at a time, timing each key's
/// echo, then Enter, and waits for the sum and the next prompt. A key whose echo does not come
/// within 10 s, or a command that never answers, is lost (and ends this typist).
async fn typist(srv: std::sync::Arc<Server>, at: Instant, end: Instant, think: Duration, seed: u64) -> Outcome {
    let mut s = match join(&srv, at).await {
        Ok(s) => s,
        Err(e) => return Outcome::JoinFailed(format!("{e:#}")),
    };
    let mut rng = Lcg(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
    let (mut echo, mut typed) = (Vec::new(), 0usize);
    let mut n = 0u64;
    loop {
        let pause = think.mul_f64(0.75 + 0.5 * rng.next_f64());
        if Instant::now() + pause >= end {
            break;
        }
        tokio::time::sleep(pause).await;
        n += 1;
        let (a, b) = (seed * 1000 + n, 7 * n + 3);
        let line = format!("echo $(({a}+{b}))");
        // The sum on a line of its own: after `\r\n`, or after bash's bracketed-paste reset
        // (`\x1b[?2004l\r`).
        let want = [format!("\n{}\r\n", a + b), format!("l\r{}\r\n", a + b)];
        for (k, key) in line.bytes().enumerate() {
            typed += 1;
            let t0 = Instant::now();
            let echoed = async {
                send(&mut s.ws, &[key]).await?;
                read_until(&mut s.ws, 10, |out| out.contains(&key)).await
            };
            if let Err(e) = echoed.await {
                let left = line.len() - k;
                typed += left - 1;
                return Outcome::Typist { echo, typed, lost: left, loss: Some(format!("key {key:?}: {e:#}")) };
            }
            echo.push(t0.elapsed());
        }
        let mut seen: Vec<u8> = Vec::new();
        let mut scan = PromptScan::default();
        let answered = async {
            send(&mut s.ws, b"\r").await?;
            read_until(&mut s.ws, 10, |out| {
                seen.extend_from_slice(out);
                let prompt = scan.feed(out);
                prompt && want.iter().any(|w| memchr::memmem::find(&seen, w.as_bytes()).is_some())
            })
            .await
        };
        if let Err(e) = answered.await {
            return Outcome::Typist { echo, typed, lost: 1, loss: Some(format!("`{line}` did not answer: {e:#}")) };
        }
    }
    Outcome::Typist { echo, typed, lost: 0, loss: None }
}

/// `GET /healthz` every 250 ms until `end`: (latencies, failures).
async fn poll_healthz(srv: std::sync::Arc<Server>, end: Instant) -> (Vec<Duration>, usize) {
    let (mut ok, mut failed) = (Vec::new(), 0);
    while Instant::now() < end {
        let t0 = Instant::now();
        match tokio::time::timeout(Duration::from_secs(10), srv.http.get(format!("{}/healthz", srv.base)).send()).await
        {
            Ok(Ok(r)) if r.status().is_success() => ok.push(t0.elapsed()),
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (ok, failed)
}

/// The part's rows.
/// The room's rows; with `unpaced` (the same room without the output budget) also its echo and
/// flood rows and the ratio of the typists' p99 echo with the budget to without.
pub(super) fn classroom_rows(
    t: &mut Table,
    room: &ClassroomPlan,
    r: &ClassroomResult,
    unpaced: Option<&ClassroomResult>,
) {
    let who = format!(
        "{} learners over {:.0} s, {} flooding, {} fork bombs, then {:.0} s",
        room.learners,
        room.ramp.as_secs_f64(),
        room.floods,
        room.bombs,
        room.hold.as_secs_f64()
    );
    let failed = match r.join_failures.first() {
        Some(f) => {
            format!("{} joined, {} failed (first: {})", r.joined, r.join_failed, f.chars().take(80).collect::<String>())
        }
        None => format!("{} joined, 0 failed", r.joined),
    };
    t.row([
        &format!("Classroom ({who}): sessions"),
        &failed,
        "—",
        "—",
        "—",
        "0 refused or failed",
        &met(r.join_failed == 0),
    ]);
    let lost = match &r.first_loss {
        Some(l) => format!("{} of {} (first: {})", r.lost, r.keystrokes, l.chars().take(120).collect::<String>()),
        None => format!("{} of {}", r.lost, r.keystrokes),
    };
    t.row(["Classroom: keystrokes lost", &lost, "—", "—", "—", "0", &met(r.lost == 0 && r.keystrokes > 0)]);
    echo_row(t, "Classroom: typists' keystroke → echo, p50 / p99 / max", r, "p99 ≤ 50 ms", true);
    match pct(&r.healthz) {
        Some(p) => t.row([
            "Classroom: /healthz p50 / p99",
            &format!(
                "{} / {}{}",
                ms(p.p50),
                ms(p.p99),
                if r.healthz_failed > 0 { format!(", {} failed", r.healthz_failed) } else { String::new() }
            ),
            "—",
            "—",
            "—",
            "p99 ≤ 100 ms",
            &met(p.p99 <= Duration::from_millis(100) && r.healthz_failed == 0),
        ]),
        None => t.row(["Classroom: /healthz p50 / p99", "n/a", "—", "—", "—", "p99 ≤ 100 ms", "n/a"]),
    }
    t.row(["Classroom: flood output delivered to its clients", &flood(room, r), "—", "—", "—", "reported", "—"]);
    if let Some(u) = unpaced {
        echo_row(
            t,
            "Classroom without the output budget (--output-rate 0): echo p50 / p99 / max",
            u,
            "reported",
            false,
        );
        t.row([
            "Classroom without the output budget: flood output delivered",
            &flood(room, u),
            "—",
            "—",
            "—",
            "reported",
            "—",
        ]);
        let ratio = match (pct(&r.echo), pct(&u.echo)) {
            (Some(with), Some(without)) if !without.p99.is_zero() => {
                let x = with.p99.as_secs_f64() / without.p99.as_secs_f64();
                (format!("{x:.2}×"), met(x <= 0.5))
            }
            _ => (na(), na()),
        };
        t.row(["Classroom: typists' p99 echo, with the budget / without", &ratio.0, "—", "—", "—", "≤ 0.5×", &ratio.1]);
    }
    t.row([
        "Classroom: host memory per learner (MemAvailable)",
        &r.mem_per_learner.map(|b| format!("{:.1} MiB", b / MIB as f64)).unwrap_or_else(na),
        "—",
        "—",
        "—",
        "reported",
        "—",
    ]);
    t.row([
        "Classroom: server RSS",
        &format!("{:.1} MiB", r.server_rss_kib as f64 / 1024.0),
        "—",
        "—",
        "—",
        "reported",
        "—",
    ]);
}

/// One row of the typists' echo percentiles; `judged` compares the p99 with 50 ms.
fn echo_row(t: &mut Table, label: &str, r: &ClassroomResult, target: &str, judged: bool) {
    let max = r.echo.iter().max().copied();
    let (value, result) = match pct(&r.echo) {
        Some(p) => (
            format!("{} / {} / {}", ms(p.p50), ms(p.p99), max.map(ms).unwrap_or_else(na)),
            if judged { met(p.p99 <= Duration::from_millis(50)) } else { "—".to_string() },
        ),
        None => (na(), if judged { na() } else { "—".to_string() }),
    };
    t.row([label, &value, "—", "—", "—", target, &result]);
}

fn flood(room: &ClassroomPlan, r: &ClassroomResult) -> String {
    if r.flood_secs > 0.0 && room.floods > 0 {
        format!(
            "{:.1} MB/s in all, {:.1} MB/s per flood",
            r.flood_bytes as f64 / 1e6 / r.flood_secs,
            r.flood_bytes as f64 / 1e6 / r.flood_secs / room.floods as f64
        )
    } else {
        na()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(learners: usize, floods: usize, bombs: usize) -> ClassroomPlan {
        ClassroomPlan {
            learners,
            floods,
            bombs,
            ramp: Duration::from_secs(20),
            hold: Duration::from_secs(60),
            think: Duration::from_secs(2),
        }
    }

    #[test]
    fn roles_come_in_the_asked_numbers() {
        for (n, f, b) in [(200, 10, 5), (6, 1, 1), (3, 0, 0), (4, 2, 2), (5, 0, 3)] {
            let plan = room(n, f, b);
            let (mut floods, mut bombs) = (0, 0);
            for i in 0..n {
                match role(i, &plan) {
                    Role::Flood => floods += 1,
                    Role::Bomb => bombs += 1,
                    Role::Typist => {}
                }
            }
            assert_eq!((floods, bombs), (f, b), "{n} learners, {f} floods, {b} bombs");
        }
    }
}
