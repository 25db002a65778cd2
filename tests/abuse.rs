//! Containment under abuse: ten sessions each run a fork bomb, a memory bomb, a disk fill and a
//! CPU spinner at the same time, while an eleventh session is typed into and the web server's
//! `/healthz` is polled. The typist's keystrokes must still echo and its commands answer, the
//! server must still answer, and afterwards nothing of any session may be left. As root.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Instance, Interactive, Server, host_processes, wait_until};

const BOMB_SECONDS: u64 = 15;
const SESSIONS: usize = 10;

/// Every bomb at once; after `BOMB_SECONDS`, `kill -9 -1` until the session is quiet, then
/// report. Waiting and killing use bash builtins only: no fork is possible during the bomb. The
/// fork bomb starts in a subshell, so the shell forks once for it (see the fork bomb probe in
/// probes.rs: a shell that forks both sides of `f | f` itself can lose the race and exit).
fn bomb_script() -> String {
    format!(
        "exec bash -c 'mkfifo /tmp/w; exec 3<>/tmp/w; \
         sh -c \"while :; do :; done\" & \
         (while :; do tail /dev/zero; done) >/dev/null 2>&1 & \
         dd if=/dev/zero of=/root/fill bs=1M >/dev/null 2>&1 & \
         f() {{ f | f & }}; (f 2>/dev/null) & \
         read -t {BOMB_SECONDS} -u 3; \
         for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do kill -9 -1 2>/dev/null; read -t 0.1 -u 3; done; \
         rm -f /root/fill; echo re\"\"covered'"
    )
}

fn start_bomb(inst: &Instance) -> Child {
    Command::new(BIN)
        .arg("run")
        .args(inst.args())
        .args(["--", "sh", "-c", &bomb_script()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// One GET /healthz over a plain socket; returns whether it said 200, and how long it took.
fn healthz(addr: &str) -> (bool, Duration) {
    let start = Instant::now();
    let ok = (|| -> std::io::Result<bool> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        Ok(resp.starts_with("HTTP/1.1 200"))
    })()
    .unwrap_or(false);
    (ok, start.elapsed())
}

/// Waits (polling every millisecond) until `needle` appears in the typist's output after byte
/// `from`; returns the offset just past it.
fn wait_for(sh: &Interactive, needle: &str, from: usize, limit: Duration) -> usize {
    let start = Instant::now();
    loop {
        let out = sh.all_output();
        if let Some(pos) = out.get(from..).and_then(|o| o.find(needle)) {
            return from + pos + needle.len();
        }
        assert!(start.elapsed() < limit, "no {needle:?} within {limit:?}; output:\n{out}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, samples: &mut [Duration]) -> Duration {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        ms(percentile(samples, 0.5)),
        ms(percentile(samples, 0.99)),
        ms(*samples.last().unwrap())
    );
    *samples.last().unwrap()
}

#[test]
fn ten_bombing_sessions_leave_a_typist_and_the_server_responsive_and_nothing_behind() {
    let server = Server::start(&[]);
    let typist_inst = Instance::new();
    let mut typist = Interactive::start(&typist_inst, &["--", "/bin/sh"]);
    typist.send("echo re''ady");
    typist.expect("ready\n", 20);

    let bombers: Vec<Instance> = (0..SESSIONS).map(|_| Instance::new()).collect();
    let mut children: Vec<Child> = bombers.iter().map(start_bomb).collect();

    let (mut echo, mut answer, mut health) = (Vec::new(), Vec::new(), Vec::new());
    let mut health_failures = 0;
    let mut peak_procs = 0;
    let in_bombers = |uid: u32| bombers.iter().any(|b| uid >= b.id_base && uid < b.id_base + b.id_slots * 65536);
    let start = Instant::now();
    let mut i = 0;
    // Keep typing through the whole bombing and a little after.
    while start.elapsed() < Duration::from_secs(BOMB_SECONDS + 3) {
        i += 1;
        let from = typist.all_output().len();
        let t = Instant::now();
        typist.send(&format!("echo t{i}-''ok"));
        // The terminal echoes the typed line, then the shell answers it.
        let at = wait_for(&typist, &format!("echo t{i}-''ok"), from, Duration::from_secs(10));
        echo.push(t.elapsed());
        wait_for(&typist, &format!("t{i}-ok\n"), at, Duration::from_secs(10));
        answer.push(t.elapsed());
        peak_procs = peak_procs.max(host_processes().iter().filter(|(_, u)| in_bombers(*u)).count());
        let (ok, d) = healthz(&server.addr);
        health_failures += usize::from(!ok);
        health.push(d);
        std::thread::sleep(Duration::from_millis(200));
    }

    println!(
        "=== abuse: {SESSIONS} sessions with fork bomb + memory bomb + disk fill + CPU spinner for {BOMB_SECONDS} s"
    );
    let worst_echo = report("keystroke echo", &mut echo);
    let worst_answer = report("command answer", &mut answer);
    let worst_health = report("GET /healthz", &mut health);
    println!(
        "peak processes of the bombing sessions: {peak_procs} (pids.max 128 each); load average: {}",
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );

    // Every bomber ends on its own (its script kills its bombs and exits).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut recovered = 0;
    for (n, child) in children.iter_mut().enumerate() {
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if child.try_wait().unwrap().is_none() {
            // Ending `nsplay run` ends its session: the fallback still has to leave nothing.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let status = child.wait().unwrap();
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let ok = status.code() == Some(0) && out.contains("recovered");
        recovered += usize::from(ok);
        println!("session {n}: {status}, {}", if ok { "recovered" } else { "ended" });
    }
    println!("{recovered} of {SESSIONS} sessions recovered by themselves");

    for inst in &bombers {
        assert!(wait_until(20, || inst.processes().is_empty()), "processes left: {:?}", inst.processes());
        assert!(wait_until(10, || inst.all_groups().is_empty()), "{:?}", inst.all_groups());
    }
    typist.send("exit 0");
    assert_eq!(typist.child.wait().unwrap().code(), Some(0));
    assert!(wait_until(10, || typist_inst.processes().is_empty()));

    assert!(worst_echo < Duration::from_secs(1), "keystroke echo took {worst_echo:?}");
    assert!(worst_answer < Duration::from_secs(1), "a command answer took {worst_answer:?}");
    assert_eq!(health_failures, 0, "/healthz failed {health_failures} times");
    assert!(worst_health < Duration::from_secs(1), "/healthz took {worst_health:?}");
    assert!(recovered * 2 >= SESSIONS, "only {recovered} of {SESSIONS} sessions recovered");
}
