//! `nsplay-bench`: nsplay next to the tools people know, measured on the same machine in the same
//! run, printed as one Markdown table (docs/benchmarks.md explains every row and holds results).
//!
//! It starts `nsplay serve` itself (the binary next to this one, or `--nsplay`), drives it only
//! through the public HTTP/WebSocket API, and runs the baselines (`bwrap`, `unshare`, a raw pty)
//! from this process. The parts:
//!
//! 1. Spawn: `POST /api/sessions` → the first terminal frame that completes the prompt `# `,
//!    one after another (interleaved with the baselines, so drift hits all alike) and all at once;
//!    baselines: bwrap and unshare(1) starting `bash --norc --noprofile -i` on a pty, timed from
//!    the spawn to the first prompt byte.
//! 2. Echo: one key → its echo with 1, 100 and N sessions open (every one with a client
//!    attached), against bash on a raw pty read by a blocking thread of this process.
//! 3. Throughput: `cat` of a text file in the session to one client that reads as fast as it
//!    can, with the session CPU limit at one core and at the default; server CPU per GB from
//!    `/proc/<pid>/stat`; baseline: the same `cat` on a raw pty.
//! 4. Capacity: sessions opened up to N (or the first failure), server RSS and sandbox memory per
//!    idle session, time to open and to end them all.
//! 5. Classroom (`classroom.rs`): a room of learners joining over a ramp, a few flooding output
//!    or running a fork bomb, the rest typing; what the typists feel and what the room costs.
//! 6. Images (`images.rs`): an OCI image the benchmark builds, its import time, spawns on it
//!    against spawns on the host root (without and with a warm pool, alternating), and the host
//!    memory of an idle session on each.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio_tungstenite::tungstenite::Message;

mod classroom;
mod images;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const MIB: u64 = 1 << 20;
/// The line the throughput file is made of (in the session and on the host alike).
const TEXT_LINE: &str = "nsplay benchmark: one line of ordinary terminal text";
/// Typed after every measured key: readline answers with `\b \b`, so the line stays empty.
/// (Not Ctrl-C: bash 5.2 now and then skips the new prompt after one, on any pty.)
const ERASE: &[u8] = b"\x7f";
/// Environment of every baseline shell: the one nsplay gives its sessions.
const SHELL_ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    ("TERM", "xterm-256color"),
    ("HOME", "/root"),
    ("LANG", "C.UTF-8"),
    ("USER", "root"),
    ("LOGNAME", "root"),
    ("SHELL", "/bin/bash"),
];
const BWRAP: &[&str] = &[
    "bwrap",
    "--unshare-all",
    "--ro-bind",
    "/usr",
    "/usr",
    "--symlink",
    "usr/bin",
    "/bin",
    "--symlink",
    "usr/lib",
    "/lib",
    "--symlink",
    "usr/lib64",
    "/lib64",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "bash",
    "--norc",
    "--noprofile",
    "-i",
];
const UNSHARE: &[&str] = &["unshare", "-Urmupifn", "--fork", "--mount-proc", "bash", "--norc", "--noprofile", "-i"];
const RAW_BASH: &[&str] = &["bash", "--norc", "--noprofile", "-i"];

/// Compares nsplay with bwrap, unshare(1) and a raw pty in one run and prints one Markdown table
/// (spawn, echo, throughput, capacity, classroom, images). Must run as root. See
/// docs/benchmarks.md.
#[derive(Debug, Parser)]
#[command(name = "nsplay-bench", version)]
struct Args {
    /// Tiny counts (5 spawns, 2 at once, echo with 1, 3 and 5 sessions, one 8 MiB cat per CPU
    /// limit, 5 sessions, an 8 MB image with 2 spawns per kind and 3 idle sessions) that finish in
    /// about a minute: checks that the benchmark works; its numbers mean nothing. Options given
    /// explicitly still win.
    #[arg(long)]
    smoke: bool,
    /// Sessions opened in the capacity test; echo is also measured with this many open
    /// [default: 500, smoke: 5].
    #[arg(long)]
    sessions: Option<usize>,
    /// Sessions created one after another in the spawn test (each baseline runs as often), and
    /// rounds of spawns in the images part [default: 200, smoke: 5, in the images part 2].
    #[arg(long)]
    spawn_seq: Option<usize>,
    /// Sessions created at once in the spawn test (each baseline starts as many at once)
    /// [default: 50, smoke: 2].
    #[arg(long)]
    spawn_burst: Option<usize>,
    /// Open sessions of the middle echo measurement [default: 100, smoke: 3].
    #[arg(long)]
    echo_mid: Option<usize>,
    /// Keys typed per echo measurement [default: 1000, smoke: 40].
    #[arg(long)]
    echo_keys: Option<usize>,
    /// Size of the file `cat` prints in the throughput test, in MiB [default: 256, smoke: 8].
    #[arg(long)]
    throughput_mib: Option<u64>,
    /// `cat` runs per CPU limit in the throughput test, alternating with as many raw-pty runs;
    /// the table shows medians [default: 5, smoke: 1].
    #[arg(long)]
    throughput_runs: Option<usize>,
    /// Learners in the classroom part [default: 200, smoke: 6].
    #[arg(long)]
    classroom_learners: Option<usize>,
    /// Classroom learners flooding their terminal with `yes` [default: 10, smoke: 1].
    #[arg(long)]
    classroom_floods: Option<usize>,
    /// Classroom learners running a fork bomb [default: 5, smoke: 1].
    #[arg(long)]
    classroom_bombs: Option<usize>,
    /// Seconds over which the classroom's learners join [default: 20, smoke: 2].
    #[arg(long)]
    classroom_ramp: Option<u64>,
    /// Seconds the classroom keeps at it after the last learner joined [default: 60, smoke: 4].
    #[arg(long)]
    classroom_secs: Option<u64>,
    /// Size of the image the images part builds and imports: its layer tars together, in MB
    /// (10^6 bytes) [default: 100, smoke: 8].
    #[arg(long)]
    images_mb: Option<u64>,
    /// Idle sessions opened on the image and on the host root for the images part's memory rows
    /// [default: 50, smoke: 3].
    #[arg(long)]
    images_sessions: Option<usize>,
    /// Times the images part opens its idle sessions on each root (alternating which goes
    /// first); the table shows the median [default: 3, smoke: 1].
    #[arg(long)]
    images_mem_rounds: Option<usize>,
    /// Sessions being opened at the same time in the capacity test.
    #[arg(long, default_value_t = 10)]
    open_concurrency: usize,
    /// The nsplay binary to benchmark [default: `nsplay` next to this program].
    #[arg(long)]
    nsplay: Option<PathBuf>,
    /// State directory of the servers this benchmark starts; also holds the host copy of the
    /// throughput file, and the images part's image and store, while they run (on a filesystem
    /// with idmapped mounts: ext4, xfs, btrfs, tmpfs from Linux 6.3) [default: a new
    /// /tmp/nsplay-bench-PID, removed at the end].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Parent cgroup of the benchmark's sessions (keep it apart from other nsplay instances).
    #[arg(long, default_value = "nsplay-bench")]
    cgroup_parent: String,
    /// First host uid/gid of the sessions' id ranges (the default lies above the ranges the
    /// integration tests use).
    #[arg(long, default_value_t = 3_200_000_000)]
    id_base: u32,
    /// Number of id ranges of each server (servers running beside each other take the ranges
    /// above) [default: the most sessions a part opens + spawn-burst + 20].
    #[arg(long)]
    id_slots: Option<u32>,
    /// Run only these parts (comma-separated: spawn, echo, throughput, capacity, classroom,
    /// images); the table then has only their rows. Echo and capacity share their sessions:
    /// either runs both.
    #[arg(long, value_delimiter = ',', value_parser = ["spawn", "echo", "throughput", "capacity", "classroom", "images"])]
    only: Vec<String>,
}

/// The counts of one run, after smoke defaults.
#[derive(Debug, Clone)]
struct Plan {
    smoke: bool,
    /// Parts to run (empty: all).
    only: Vec<String>,
    sessions: usize,
    spawn_seq: usize,
    spawn_burst: usize,
    echo_mid: usize,
    echo_keys: usize,
    throughput_bytes: u64,
    throughput_runs: usize,
    open_concurrency: usize,
    classroom: classroom::ClassroomPlan,
    images: images::ImagesPlan,
    nsplay: PathBuf,
    state_dir: PathBuf,
    /// The servers' `--data-dir` (`None`: `data-NAME` in the state directory, one per server);
    /// the images part's servers share the one that holds its image store.
    data_dir: Option<PathBuf>,
    remove_state_dir: bool,
    cgroup_parent: String,
    id_base: u32,
    id_slots: u32,
}

impl Plan {
    fn from_args(a: &Args) -> Result<Plan> {
        let pick = |v: Option<usize>, full: usize, smoke: usize| v.unwrap_or(if a.smoke { smoke } else { full });
        let sessions = pick(a.sessions, 500, 5).max(1);
        let spawn_burst = pick(a.spawn_burst, 50, 2).max(1);
        let secs = |v: Option<u64>, full: u64, smoke: u64| {
            Duration::from_secs(v.unwrap_or(if a.smoke { smoke } else { full }))
        };
        let classroom = classroom::ClassroomPlan {
            learners: pick(a.classroom_learners, 200, 6).max(1),
            floods: pick(a.classroom_floods, 10, 1),
            bombs: pick(a.classroom_bombs, 5, 1),
            ramp: secs(a.classroom_ramp, 20, 2),
            hold: secs(a.classroom_secs, 60, 4),
            think: Duration::from_secs(2),
        };
        let images = images::ImagesPlan {
            mb: a.images_mb.unwrap_or(if a.smoke { 8 } else { 100 }).max(1),
            spawns: pick(a.spawn_seq, 200, 2).max(1),
            sessions: pick(a.images_sessions, 50, 3).max(1),
            mem_rounds: pick(a.images_mem_rounds, 3, 1).max(1),
            mem_settle: secs(None, 20, 2),
        };
        // One server at a time: the id ranges and the session cap cover the largest part.
        let most = sessions.max(classroom.learners).max(images.sessions);
        let nsplay = match &a.nsplay {
            Some(p) => p.clone(),
            None => std::env::current_exe()?.with_file_name("nsplay"),
        };
        if !nsplay.is_file() {
            bail!("{} does not exist: build it first (cargo build --release) or pass --nsplay", nsplay.display());
        }
        let (state_dir, remove_state_dir) = match &a.state_dir {
            Some(d) => (d.clone(), false),
            None => (std::env::temp_dir().join(format!("nsplay-bench-{}", std::process::id())), true),
        };
        Ok(Plan {
            smoke: a.smoke,
            only: a.only.clone(),
            sessions,
            spawn_seq: pick(a.spawn_seq, 200, 5).max(1),
            spawn_burst,
            echo_mid: pick(a.echo_mid, 100, 3).max(1),
            echo_keys: pick(a.echo_keys, 1000, 40).max(1),
            throughput_bytes: a.throughput_mib.unwrap_or(if a.smoke { 8 } else { 256 }).max(1) * MIB,
            throughput_runs: pick(a.throughput_runs, 5, 1).max(1),
            open_concurrency: a.open_concurrency.max(1),
            classroom,
            images,
            nsplay,
            state_dir,
            data_dir: None,
            remove_state_dir,
            cgroup_parent: a.cgroup_parent.clone(),
            id_base: a.id_base,
            id_slots: a.id_slots.unwrap_or((most + spawn_burst + 20) as u32),
        })
    }
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("nsplay-bench: {}", msg.as_ref());
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting.

#[derive(Debug, Clone, Copy)]
struct Pct {
    p50: Duration,
    p99: Duration,
}

/// Nearest-rank percentiles.
fn pct(samples: &[Duration]) -> Option<Pct> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort();
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Pct { p50: rank(0.50), p99: rank(0.99) })
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1e3;
    if m >= 100.0 { format!("{m:.0} ms") } else { format!("{m:.1} ms") }
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn met(ok: bool) -> String {
    if ok { "met".into() } else { "**missed**".into() }
}

/// Scans output for the prompt's `# `, also across frame boundaries.
#[derive(Default)]
struct PromptScan {
    last: u8,
}

impl PromptScan {
    fn feed(&mut self, b: &[u8]) -> bool {
        let Some(&last) = b.last() else { return false };
        let hit = (self.last == b'#' && b[0] == b' ') || memchr::memmem::find(b, b"# ").is_some();
        self.last = last;
        hit
    }
}

// ---------------------------------------------------------------------------------------------
// Host facts.

/// `MemAvailable` of /proc/meminfo, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3 ("state").
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn first_line_of(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "not installed".into())
}

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|s| s.trim_start_matches([' ', '\t', ':']));
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|s| s.trim_matches('"').to_string()))
        .unwrap_or_default();
    let cgroup = if nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
    {
        "cgroup v2"
    } else {
        "cgroup v1/hybrid"
    };
    format!(
        "{cores} CPU ({}), {:.1} GiB RAM, Linux {}, {os}, {cgroup}",
        model.unwrap_or("unknown CPU"),
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

// ---------------------------------------------------------------------------------------------
// Ptys in this process (the baselines).

/// A program on a pty of ours, as session leader with the pty as its controlling terminal.
struct PtyChild {
    master: File,
    child: Child,
}

/// Opens a pty pair, both ends close-on-exec from the start (threads spawn concurrently).
fn open_pty() -> Result<(File, OwnedFd)> {
    let (master, slave) = nsplay_sandbox::term::host_pty_pair(80, 24).context("opening a pty on /dev/ptmx")?;
    Ok((File::from(master), slave))
}

/// Starts `argv` on a new pty with the sessions' environment.
#[allow(unsafe_code)]
fn spawn_on_pty(argv: &[&str], cwd: &Path) -> Result<PtyChild> {
    let (master, slave) = open_pty()?;
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]).env_clear().envs(SHELL_ENV.iter().copied()).current_dir(cwd);
    cmd.stdin(Stdio::from(slave.try_clone()?)).stdout(Stdio::from(slave.try_clone()?)).stderr(Stdio::from(slave));
    // SAFETY: runs in the forked child before exec, after stdio was set up; it only makes two
    // async-signal-safe system calls with integer arguments and touches no memory or lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| format!("starting {}", argv[0]))?;
    // `cmd` still holds the slave: dropping it lets the master see EOF when the program exits.
    drop(cmd);
    Ok(PtyChild { master, child })
}

/// Reads the master until `done` says so; Err on timeout or EOF.
fn pty_read_until(master: &mut File, secs: u64, mut done: impl FnMut(&[u8]) -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("timed out on a pty");
        }
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        let ms = left.as_millis().min(1000) as u16;
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => bail!("poll: {e}"),
        }
        let n = master.read(&mut buf).context("reading a pty")?;
        if n == 0 {
            bail!("the program on the pty exited");
        }
        if done(&buf[..n]) {
            return Ok(());
        }
    }
}

impl PtyChild {
    /// Types `exit` and waits for the program (kills it if it does not go).
    fn finish(mut self) {
        let _ = self.master.write_all(b"exit\r");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            // Drain so the program never blocks on a full pty.
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(5u16)).unwrap_or(0) > 0 && self.master.read(&mut buf).is_err() {
                break;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `argv` on a pty and times it to the first byte of its prompt.
fn pty_spawn(argv: &[&str], cwd: &Path) -> Result<(Duration, PtyChild)> {
    let t0 = Instant::now();
    let mut p = spawn_on_pty(argv, cwd)?;
    let mut scan = PromptScan::default();
    pty_read_until(&mut p.master, 20, |b| scan.feed(b)).with_context(|| format!("{}: no prompt", argv[0]))?;
    Ok((t0.elapsed(), p))
}

fn pty_spawn_burst(argv: &'static [&'static str], n: usize, cwd: &Path) -> Result<Vec<Duration>> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let b = barrier.clone();
            let cwd = cwd.to_path_buf();
            std::thread::spawn(move || {
                b.wait();
                pty_spawn(argv, &cwd)
            })
        })
        .collect();
    let mut times = Vec::new();
    let mut kids = Vec::new();
    let mut err = None;
    for h in handles {
        match h.join().map_err(|_| anyhow!("a spawn thread panicked")).and_then(|r| r) {
            Ok((t, k)) => {
                times.push(t);
                kids.push(k);
            }
            Err(e) => err = Some(e),
        }
    }
    for k in kids {
        k.finish();
    }
    match err {
        Some(e) => Err(e),
        None => Ok(times),
    }
}

/// One key → its echo, `keys` times, on bash on a raw pty read by this (blocking) thread.
fn pty_echo(keys: usize, cwd: &Path) -> Result<Vec<Duration>> {
    let (_, mut p) = pty_spawn(RAW_BASH, cwd)?;
    let mut out = Vec::with_capacity(keys);
    for i in 0..keys {
        let key = b'a' + (i % 26) as u8;
        let t0 = Instant::now();
        p.master.write_all(&[key])?;
        pty_read_until(&mut p.master, 10, |b| b.contains(&key))?;
        out.push(t0.elapsed());
        p.master.write_all(ERASE)?;
        pty_read_until(&mut p.master, 10, |b| b.contains(&b'\x08'))?;
    }
    p.finish();
    Ok(out)
}

/// CPU seconds (user + system) of the calling thread so far.
fn thread_cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_THREAD)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

/// `cat` of `file` straight to a pty read by this thread as fast as it can: (bytes, time, CPU
/// seconds of the reading thread).
fn pty_cat(file: &Path, cwd: &Path) -> Result<(u64, Duration, f64)> {
    let cpu0 = thread_cpu_seconds();
    let t0 = Instant::now();
    let mut p = spawn_on_pty(&["cat", &file.display().to_string()], cwd)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match p.master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            // EIO: every slave is closed, the program is done.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let dt = t0.elapsed();
    let cpu = thread_cpu_seconds() - cpu0;
    let _ = p.child.wait();
    Ok((total, dt, cpu))
}

fn write_text_file(path: &Path, bytes: u64) -> Result<()> {
    let mut line = TEXT_LINE.as_bytes().to_vec();
    line.push(b'\n');
    let block: Vec<u8> = line.iter().copied().cycle().take(line.len() * 4096).collect();
    let mut f = std::io::BufWriter::new(File::create(path)?);
    let mut left = bytes;
    while left > 0 {
        let n = (block.len() as u64).min(left) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// nsplay, through its public API.

struct Server {
    child: Child,
    pid: i32,
    base: String,
    addr: String,
    http: reqwest::Client,
}

/// A session with its terminal socket attached.
struct Session {
    id: String,
    ws: Ws,
}

impl Server {
    /// Starts `nsplay serve` on 127.0.0.1:0 with `extra` options; its log goes to the state dir.
    #[allow(unsafe_code)]
    fn start(plan: &Plan, name: &str, extra: &[String]) -> Result<Server> {
        let log = File::create(plan.state_dir.join(format!("{name}.log")))?;
        // One client here stands for a whole classroom: lift the per-client admission caps.
        let max =
            (plan.sessions.max(plan.classroom.learners).max(plan.images.sessions) + plan.spawn_burst + 5).to_string();
        let mut cmd = Command::new(&plan.nsplay);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--max-sessions", &max])
            .args(["--max-sessions-per-client", &max, "--create-per-minute", "1000000", "--create-burst", "1000000"])
            .args(["--max-sessions-per-address", &max])
            .args(["--create-per-minute-per-address", "1000000", "--create-burst-per-address", "1000000"])
            .arg("--state-dir")
            .arg(&plan.state_dir)
            // The classroom's database (and image store) of this benchmark only, never the host's
            // /var/lib/nsplay.
            .arg("--data-dir")
            .arg(plan.data_dir.clone().unwrap_or_else(|| plan.state_dir.join(format!("data-{name}"))))
            .args(["--cgroup-parent", &plan.cgroup_parent])
            .args(["--id-base", &plan.id_base.to_string(), "--id-slots", &plan.id_slots.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        // SAFETY: runs in the forked child before exec; prctl with integer arguments is
        // async-signal-safe. The server (and so every session) ends if this benchmark dies.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT as libc::c_ulong, 0, 0, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {}", plan.nsplay.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("nsplay listening on http://").map(str::to_string) else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(plan.state_dir.join(format!("{name}.log"))).unwrap_or_default();
            bail!("nsplay did not start: {line:?}\n{log}");
        };
        std::thread::spawn(move || {
            let mut rest = Vec::new();
            let _ = stdout.read_to_end(&mut rest);
        });
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
        let pid = child.id() as i32;
        Ok(Server { child, pid, base: format!("http://{addr}"), addr, http })
    }

    fn cpu_seconds(&self) -> f64 {
        cpu_ticks(self.pid).unwrap_or(0) as f64 / clock_ticks()
    }

    async fn create(&self) -> Result<(String, String)> {
        let r = self.http.post(format!("{}/api/sessions", self.base)).send().await?;
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        if status != reqwest::StatusCode::CREATED {
            bail!("POST /api/sessions: {status} {v}");
        }
        let id = v["id"].as_str().ok_or_else(|| anyhow!("no id in {v}"))?.to_string();
        let term = v["terminal"].as_str().ok_or_else(|| anyhow!("no terminal in {v}"))?.to_string();
        Ok((id, term))
    }

    async fn connect(&self, path: &str) -> Result<Ws> {
        let url = format!("ws://{}{path}", self.addr);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
        Ok(ws)
    }

    /// POST → socket → first frame completing the prompt: (time, session).
    async fn spawn(&self) -> Result<(Duration, Session)> {
        let t0 = Instant::now();
        let (id, path) = self.create().await?;
        let mut ws = self.connect(&path).await?;
        wait_prompt(&mut ws, 30).await.with_context(|| format!("session {id}: no prompt"))?;
        Ok((t0.elapsed(), Session { id, ws }))
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let r = self.http.delete(format!("{}/api/sessions/{id}", self.base)).send().await?;
        if r.status() != reqwest::StatusCode::NO_CONTENT {
            bail!("DELETE /api/sessions/{id}: {}", r.status());
        }
        Ok(())
    }

    /// The session's CPU time, its relay group's CPU time and the time its quota throttled it,
    /// in seconds (the cgroups' counters, through the API).
    async fn cpu_seconds_of(&self, id: &str) -> Result<(f64, f64, f64)> {
        let usage = self.usage(id).await?;
        let secs = |k: &str| usage_u64(&usage, k).map(|u| u as f64 / 1e6);
        Ok((secs("cpu_usec")?, secs("relay_cpu_usec")?, secs("throttled_usec")?))
    }

    async fn memory_bytes(&self, id: &str) -> Result<u64> {
        usage_u64(&self.usage(id).await?, "memory_bytes")
    }

    /// `usage` of `GET /api/sessions/{id}`: the session cgroup's counters.
    async fn usage(&self, id: &str) -> Result<serde_json::Value> {
        let v: serde_json::Value =
            self.http.get(format!("{}/api/sessions/{id}", self.base)).send().await?.error_for_status()?.json().await?;
        Ok(v["usage"].clone())
    }

    /// Ends `sessions` (closing their sockets first), `conc` at a time.
    async fn end_all(&self, sessions: Vec<Session>, conc: usize) -> Result<Duration> {
        let t0 = Instant::now();
        let ids: Vec<String> = sessions.into_iter().map(|s| s.id).collect();
        let mut results = futures_util::stream::iter(ids.iter().map(|id| self.delete(id))).buffer_unordered(conc);
        let mut first_err = None;
        while let Some(r) = results.next().await {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(t0.elapsed()),
        }
    }

    fn stop(mut self) {
        // SIGINT: the orderly stop without SIGTERM's drain, which would wait for sessions left.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        progress("the server did not stop within 30 s of SIGINT; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next output bytes of a terminal socket (control messages are skipped).
async fn next_output(ws: &mut Ws) -> Result<bytes::Bytes> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => return Ok(b),
            Some(Ok(Message::Text(t))) => {
                if t.contains("\"exit\"") {
                    bail!("the terminal exited: {t}");
                }
            }
            Some(Ok(Message::Close(c))) => bail!("the terminal socket closed: {c:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("terminal socket: {e}"),
            None => bail!("the terminal socket closed"),
        }
    }
}

/// Reads output frames until `done` says so; on timeout the error shows the last output.
async fn read_until(ws: &mut Ws, secs: u64, mut done: impl FnMut(&[u8]) -> bool) -> Result<()> {
    let mut tail: Vec<u8> = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            let b = next_output(ws).await?;
            tail.extend_from_slice(&b[b.len().saturating_sub(256)..]);
            tail.drain(..tail.len().saturating_sub(256));
            if done(&b) {
                return Ok(());
            }
        }
    })
    .await;
    r.map_err(|_| anyhow!("timed out after {secs} s; last output: {:?}", String::from_utf8_lossy(&tail)))?
}

async fn wait_prompt(ws: &mut Ws, secs: u64) -> Result<()> {
    let mut scan = PromptScan::default();
    read_until(ws, secs, |b| scan.feed(b)).await
}

async fn send(ws: &mut Ws, data: &[u8]) -> Result<()> {
    ws.send(Message::Binary(bytes::Bytes::copy_from_slice(data))).await?;
    Ok(())
}

/// One key → its echo, `keys` times, on a session sitting at its prompt.
async fn ws_echo(ws: &mut Ws, keys: usize) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(keys);
    for i in 0..keys {
        let key = b'a' + (i % 26) as u8;
        let t0 = Instant::now();
        send(ws, &[key]).await?;
        read_until(ws, 10, |b| b.contains(&key)).await?;
        out.push(t0.elapsed());
        send(ws, ERASE).await?;
        read_until(ws, 10, |b| b.contains(&b'\x08')).await?;
    }
    Ok(out)
}

/// Opens sessions until `open` holds `target` or one fails (then returns its error text).
async fn open_until(srv: &Server, open: &mut Vec<Session>, target: usize, conc: usize) -> Option<String> {
    let mut pending = FuturesUnordered::new();
    let mut issued = open.len();
    let mut failure = None;
    while issued < target && pending.len() < conc {
        pending.push(srv.spawn());
        issued += 1;
    }
    while let Some(r) = pending.next().await {
        match r {
            Ok((_, s)) => open.push(s),
            Err(e) => {
                failure.get_or_insert(format!("{e:#}"));
            }
        }
        if failure.is_none() && issued < target {
            pending.push(srv.spawn());
            issued += 1;
        }
    }
    failure
}

// ---------------------------------------------------------------------------------------------
// The parts.

#[derive(Default)]
struct Results {
    spawn_seq: BTreeMap<&'static str, Vec<Duration>>,
    spawn_burst: BTreeMap<&'static str, Vec<Duration>>,
    /// Classroom joins at once (`POST /api/join/<code>` → prompt) without a prepare, then after
    /// the room's "prepare".
    spawn_joins: Vec<Duration>,
    spawn_prepared: Vec<Duration>,
    /// (sessions open, samples)
    echo: Vec<(usize, Vec<Duration>)>,
    echo_raw: Vec<Duration>,
    /// (cpu limit, runs in the session)
    throughput: Vec<(&'static str, Vec<CatRun>)>,
    /// Runs on a raw pty (CPU: of the reading thread).
    throughput_raw: Vec<CatRun>,
    /// (cpu limit, per session run: the session's own CPU seconds and seconds throttled)
    session_cost: Vec<(&'static str, Vec<SessionCost>)>,
    ran_capacity: bool,
    opened: usize,
    open_failure: Option<String>,
    open_time: Duration,
    end_time: Duration,
    rss_per_session_kib: Option<f64>,
    sandbox_mem_per_session: Option<f64>,
    classroom: Option<classroom::ClassroomResult>,
    /// The same room with the output budget switched off (`--output-rate 0`), when it floods.
    classroom_unpaced: Option<classroom::ClassroomResult>,
    images: Option<images::ImagesResult>,
    notes: Vec<String>,
}

fn rt() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Echo and capacity on one fresh server (default limits).
fn part_capacity(plan: &Plan, res: &mut Results) -> Result<()> {
    let srv = Server::start(plan, "capacity", &[])?;
    res.ran_capacity = true;
    let rt = rt()?;
    let r = rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss0 = rss_kib(srv.pid);
        let mut open: Vec<Session> = Vec::new();
        let mut steps = vec![1, plan.echo_mid, plan.sessions];
        steps.retain(|&s| s <= plan.sessions);
        steps.dedup();
        for target in steps {
            progress(format!("capacity: opening sessions up to {target}"));
            let t = Instant::now();
            let failure = open_until(&srv, &mut open, target, plan.open_concurrency).await;
            res.open_time += t.elapsed();
            if let Some(f) = failure {
                progress(format!("capacity: opening session {} failed: {f}", open.len() + 1));
                res.open_failure = Some(f);
            }
            if open.is_empty() {
                break;
            }
            // Let the server settle after the burst of spawns.
            tokio::time::sleep(Duration::from_millis(500)).await;
            progress(format!("echo: {} keys with {} sessions open", plan.echo_keys, open.len()));
            let n = open.len();
            let samples = ws_echo(&mut open[0].ws, plan.echo_keys).await?;
            res.echo.push((n, samples));
            if res.open_failure.is_some() {
                break;
            }
        }
        res.opened = open.len();
        if !open.is_empty() {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let rss1 = rss_kib(srv.pid);
            res.rss_per_session_kib = Some((rss1 as f64 - rss0 as f64) / open.len() as f64);
            res.notes.push(format!(
                "server RSS: {rss0} KiB with no session, {rss1} KiB with {} idle sessions (clients attached)",
                open.len()
            ));
            let mut mem = 0u64;
            for s in &open {
                mem += srv.memory_bytes(&s.id).await?;
            }
            res.sandbox_mem_per_session = Some(mem as f64 / open.len() as f64);
            progress(format!("capacity: ending {} sessions", open.len()));
            res.end_time = srv.end_all(open, plan.open_concurrency).await?;
        }
        Ok::<_, anyhow::Error>(())
    });
    srv.stop();
    r
}

/// Spawn times, nsplay interleaved with the baselines, then all at once.
fn part_spawn(plan: &Plan, res: &mut Results, baselines: &[(&'static str, &'static [&'static str])]) -> Result<()> {
    // The admin token: the "joins after prepare" row makes a room.
    let srv = Server::start(plan, "spawn", &["--admin-token".to_string(), BENCH_TOKEN.to_string()])?;
    // The same server without a warm pool: what a visitor waits for when the pool is drained
    // (a classroom's burst beyond the first few), and what the pool saves.
    let cold_plan = cold_plan(plan)?;
    let cold = match Server::start(&cold_plan, "spawn-cold", &["--warm-pool".to_string(), "0".to_string()]) {
        Ok(c) => c,
        Err(e) => {
            srv.stop();
            return Err(e);
        }
    };
    let rt = rt()?;
    let r = spawn_one_after_another(plan, res, &rt, &srv, &cold, baselines)
        .and_then(|()| spawn_at_once(plan, res, &rt, &srv, baselines));
    srv.stop();
    cold.stop();
    cleanup_cgroups(&cold_plan.cgroup_parent);
    r
}

/// The plan of the server without a warm pool: beside the first server, with its own state
/// directory, cgroup parent and id range.
fn cold_plan(plan: &Plan) -> Result<Plan> {
    plan_beside(plan, &plan.state_dir.join("cold"), "cold", 1)
}

/// The plan of a server that runs beside others: its own state directory, cgroup parent
/// (`<parent>-<name>`) and id range, the `slot`-th one of `--id-slots` ranges above `--id-base`
/// (slot 0 is `--id-base` itself).
fn plan_beside(plan: &Plan, state_dir: &Path, name: &str, slot: u32) -> Result<Plan> {
    let mut p = plan.clone();
    p.state_dir = state_dir.to_path_buf();
    p.cgroup_parent = format!("{}-{name}", plan.cgroup_parent);
    p.id_base = plan
        .id_slots
        .checked_mul(65536)
        .and_then(|n| n.checked_mul(slot))
        .and_then(|n| plan.id_base.checked_add(n))
        .filter(|b| b.checked_add(plan.id_slots.saturating_mul(65536)).is_some())
        .with_context(|| {
            format!("no room above --id-base for the {} id ranges of the {name} server: lower --id-base", slot + 1)
        })?;
    std::fs::create_dir_all(&p.state_dir).with_context(|| format!("creating {}", p.state_dir.display()))?;
    Ok(p)
}

/// `plan.spawn_seq` rounds of nsplay, nsplay without a warm pool and each baseline in turn.
fn spawn_one_after_another(
    plan: &Plan,
    res: &mut Results,
    rt: &tokio::runtime::Runtime,
    srv: &Server,
    cold: &Server,
    baselines: &[(&'static str, &'static [&'static str])],
) -> Result<()> {
    progress(format!(
        "spawn: {} one after another (nsplay, nsplay without a warm pool and each baseline in turn)",
        plan.spawn_seq
    ));
    for _ in 0..plan.spawn_seq {
        for (key, server) in [("nsplay", srv), (COLD, cold)] {
            let (t, s) = rt.block_on(server.spawn())?;
            res.spawn_seq.entry(key).or_default().push(t);
            rt.block_on(server.delete(&s.id))?;
            drop(s);
        }
        for (name, argv) in baselines {
            let (t, p) = pty_spawn(argv, &plan.state_dir)?;
            res.spawn_seq.entry(name).or_default().push(t);
            p.finish();
        }
    }
    Ok(())
}

/// `plan.spawn_burst` sessions asked for together from one client (the default server), then each
/// baseline as as many threads released by one barrier.
fn spawn_at_once(
    plan: &Plan,
    res: &mut Results,
    rt: &tokio::runtime::Runtime,
    srv: &Server,
    baselines: &[(&'static str, &'static [&'static str])],
) -> Result<()> {
    progress(format!("spawn: {} at once", plan.spawn_burst));
    let sessions = rt.block_on(async {
        let all: Vec<_> = (0..plan.spawn_burst).map(|_| srv.spawn()).collect();
        let mut out = Vec::new();
        let mut err = None;
        for r in futures_util::future::join_all(all).await {
            match r {
                Ok(x) => out.push(x),
                Err(e) => err = Some(e),
            }
        }
        (out, err)
    });
    let (done, err) = sessions;
    let mut open = Vec::new();
    for (t, s) in done {
        res.spawn_burst.entry("nsplay").or_default().push(t);
        open.push(s);
    }
    rt.block_on(srv.end_all(open, plan.open_concurrency))?;
    if let Some(e) = err {
        return Err(e);
    }
    progress(format!("spawn: {} room joins at once", plan.spawn_burst));
    res.spawn_joins = rt.block_on(room_joins(plan, srv, false))?;
    progress(format!("spawn: a room prepared for {0}, then {0} joins at once", plan.spawn_burst));
    res.spawn_prepared = rt.block_on(room_joins(plan, srv, true))?;
    for (name, argv) in baselines {
        let times = pty_spawn_burst(argv, plan.spawn_burst, &plan.state_dir)?;
        res.spawn_burst.insert(name, times);
    }
    Ok(())
}

/// The admin token of the spawn part's server (the classroom's "prepare" is an instructor's call).
const BENCH_TOKEN: &str = "nsplay-bench-admin-token-0123456789";

/// A room of `plan.spawn_burst` learners, with `prepare` its sessions built ahead first, then
/// that many learners join at once: each time runs from `POST /api/join/<code>` to its shell's
/// prompt.
async fn room_joins(plan: &Plan, srv: &Server, prepare: bool) -> Result<Vec<Duration>> {
    let n = plan.spawn_burst;
    let room: serde_json::Value = srv
        .http
        .post(format!("{}/api/rooms", srv.base))
        .bearer_auth(BENCH_TOKEN)
        .json(&serde_json::json!({"title": "bench", "lessons": ["uts"], "capacity": n}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = room["id"].as_str().ok_or_else(|| anyhow!("no room id in {room}"))?.to_string();
    let code = room["code"].as_str().ok_or_else(|| anyhow!("no room code in {room}"))?.to_string();
    if prepare {
        prepare_room(srv, &id, n).await?;
    }
    let join = |i: usize| {
        let code = code.clone();
        async move {
            let t0 = Instant::now();
            let v: serde_json::Value = srv
                .http
                .post(format!("{}/api/join/{code}", srv.base))
                .json(&serde_json::json!({"name": format!("bench-{i}")}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let id = v["session"].as_str().ok_or_else(|| anyhow!("no session in {v}"))?.to_string();
            let mut ws = srv.connect(v["terminal"].as_str().ok_or_else(|| anyhow!("no terminal in {v}"))?).await?;
            wait_prompt(&mut ws, 30).await.with_context(|| format!("session {id}: no prompt"))?;
            Ok::<_, anyhow::Error>((t0.elapsed(), Session { id, ws }))
        }
    };
    let mut open = Vec::new();
    let mut times = Vec::new();
    let mut err = None;
    for r in futures_util::future::join_all((0..n).map(join)).await {
        match r {
            Ok((t, s)) => {
                times.push(t);
                open.push(s);
            }
            Err(e) => err = Some(e),
        }
    }
    srv.end_all(open, plan.open_concurrency).await?;
    srv.http.post(format!("{}/api/rooms/{id}/end", srv.base)).bearer_auth(BENCH_TOKEN).send().await?;
    err.map_or(Ok(times), Err)
}

/// Prepares room `id` for `n` learners and waits until its sessions are built.
async fn prepare_room(srv: &Server, id: &str, n: usize) -> Result<()> {
    srv.http
        .post(format!("{}/api/rooms/{id}/prepare", srv.base))
        .bearer_auth(BENCH_TOKEN)
        .send()
        .await?
        .error_for_status()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r: serde_json::Value = srv
            .http
            .get(format!("{}/api/rooms/{id}", srv.base))
            .bearer_auth(BENCH_TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let p = &r["prepared"];
        if p["building"] == false {
            if p["ready"].as_u64() != Some(n as u64) {
                bail!("the room's prepare stopped at {p} of {n}");
            }
            break;
        }
        if Instant::now() > deadline {
            bail!("the room's prepare did not finish within 120 s: {p}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn usage_u64(usage: &serde_json::Value, key: &str) -> Result<u64> {
    usage[key].as_u64().ok_or_else(|| anyhow!("no usage.{key} in {usage}"))
}

/// Key of the spawn samples of the server started with `--warm-pool 0`.
const COLD: &str = "nsplay-cold";

/// What one `cat` run cost the session: (bytes of output, CPU seconds of its cgroup, CPU seconds
/// of its relay group, seconds its CPU quota throttled it).
type SessionCost = (u64, f64, f64, f64);

/// One `cat` run: bytes of terminal output, wall time, CPU seconds (of the server, or of the
/// reading thread for the raw pty).
type CatRun = (u64, Duration, f64);

/// `cat` of the session's file to this client, read as fast as it can.
async fn ws_cat(srv: &Server, ws: &mut Ws) -> Result<CatRun> {
    let cpu0 = srv.cpu_seconds();
    let t0 = Instant::now();
    send(ws, b"cat /tmp/bench.txt\r").await?;
    let mut total = 0u64;
    let mut scan = PromptScan::default();
    read_until(ws, 600, |b| {
        total += b.len() as u64;
        scan.feed(b)
    })
    .await
    .context("waiting for cat to finish")?;
    Ok((total, t0.elapsed(), srv.cpu_seconds() - cpu0))
}

/// With a server at the given CPU limit: the file is written in a session, then `cat` in the
/// session and `cat` on a raw pty alternate `plan.throughput_runs` times (so drift in the
/// machine's load hits both alike). Returns (session runs, raw runs).
#[allow(clippy::type_complexity)]
fn throughput_at(plan: &Plan, cpu: &str, host_file: &Path) -> Result<(Vec<CatRun>, Vec<CatRun>, Vec<SessionCost>)> {
    let disk = format!("{}M", plan.throughput_bytes / MIB + 64);
    let memory = format!("{}M", plan.throughput_bytes / MIB + 768);
    // The default output budget: one flood on a server nobody else uses is not paced, so this
    // is what the path from the program to a client carries as a learner gets it (the
    // classroom part measures the budget at work).
    let extra: Vec<String> =
        ["--cpu", cpu, "--disk", &disk, "--memory", &memory].iter().map(|s| s.to_string()).collect();
    let srv = Server::start(plan, &format!("throughput-cpu{cpu}"), &extra)?;
    let rt = rt()?;
    let r = (|| {
        let (_, mut s) = rt.block_on(srv.spawn())?;
        let make = format!("yes '{TEXT_LINE}' | head -c {} > /tmp/bench.txt\r", plan.throughput_bytes);
        rt.block_on(async {
            send(&mut s.ws, make.as_bytes()).await?;
            wait_prompt(&mut s.ws, 600).await.context("writing the file in the session")?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, anyhow::Error>(())
        })?;
        let (mut session, mut raw, mut cost) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.throughput_runs {
            raw.push(pty_cat(host_file, &plan.state_dir)?);
            let before = rt.block_on(srv.cpu_seconds_of(&s.id))?;
            let run = rt.block_on(ws_cat(&srv, &mut s.ws))?;
            let after = rt.block_on(srv.cpu_seconds_of(&s.id))?;
            cost.push((run.0, after.0 - before.0, after.1 - before.1, after.2 - before.2));
            // Single runs scatter on a shared VM: each one on stderr, the table has the medians.
            let last_raw = raw.last().expect("pushed above");
            progress(format!(
                "  --cpu {cpu}: nsplay {:.1} MB/s (session CPU {:.2} s, relay {:.2} s, throttled {:.2} s), raw pty {:.1} MB/s",
                mb_per_s(&run),
                after.0 - before.0,
                after.1 - before.1,
                after.2 - before.2,
                mb_per_s(last_raw)
            ));
            session.push(run);
        }
        rt.block_on(srv.end_all(vec![s], 1))?;
        Ok((session, raw, cost))
    })();
    srv.stop();
    r
}

fn part_throughput(plan: &Plan, res: &mut Results) -> Result<()> {
    let file = plan.state_dir.join("bench.txt");
    write_text_file(&file, plan.throughput_bytes)?;
    let mut r = Ok(());
    for cpu in ["1", "0.5"] {
        progress(format!(
            "throughput: cat of {} MiB, {} times in a session with --cpu {cpu} and on a raw pty",
            plan.throughput_bytes / MIB,
            plan.throughput_runs
        ));
        match throughput_at(plan, cpu, &file) {
            Ok((session, raw, cost)) => {
                res.throughput.push((cpu, session));
                res.throughput_raw.extend(raw);
                res.session_cost.push((cpu, cost));
            }
            Err(e) => {
                r = Err(e);
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&file);
    r
}

/// Median of `f` over the runs (the upper median of an even count).
fn median_of(runs: &[CatRun], f: impl Fn(&CatRun) -> f64) -> Option<f64> {
    median(runs.iter().map(f).collect())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn mb_per_s(r: &CatRun) -> f64 {
    r.0 as f64 / 1e6 / r.1.as_secs_f64()
}

fn cpu_per_gb(r: &CatRun) -> f64 {
    r.2 / (r.0 as f64 / 1e9)
}

// ---------------------------------------------------------------------------------------------
// The table.

struct Table {
    rows: Vec<[String; 7]>,
}

impl Table {
    fn row(&mut self, cells: [&str; 7]) {
        self.rows.push(cells.map(str::to_string));
    }

    fn render(&self) -> String {
        let head = ["Measure", "nsplay", "bwrap", "unshare", "raw pty", "Target", "Result"];
        let mut w = head.map(|h| h.chars().count());
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, c) in cells.iter().enumerate() {
                let pad = w[i] - c.chars().count();
                let _ = write!(s, " {c}{} |", " ".repeat(pad));
            }
            s
        };
        let mut out = String::new();
        out.push_str(&line(&head.map(str::to_string)));
        out.push('\n');
        out.push_str(&line(&w.map(|n| "-".repeat(n))));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }
}

/// The table's rows, one group per measure in the order docs/benchmarks.md explains them; a part
/// that did not run (`--only`) leaves its rows out.
fn build_table(plan: &Plan, res: &Results) -> Table {
    let mut t = Table { rows: Vec::new() };
    spawn_rows(&mut t, &format!("Spawn, {} one after another", plan.spawn_seq), &res.spawn_seq, true);
    spawn_rows(&mut t, &format!("Spawn, {} at once", plan.spawn_burst), &res.spawn_burst, false);
    // A classroom's burst: room joins (each also writes the learner to the database), without
    // and with the room's sessions built ahead ("prepare").
    for (what, v) in [("", &res.spawn_joins), (" after prepare", &res.spawn_prepared)] {
        let Some(p) = pct(v) else { continue };
        let label = format!("Spawn, {} room joins at once{what}", plan.spawn_burst);
        for (which, v) in [("p50", p.p50), ("p99", p.p99)] {
            t.row([&format!("{label}, {which}"), &ms(v), "—", "—", "—", "—", "—"]);
        }
    }
    echo_rows(&mut t, plan, res);
    throughput_rows(&mut t, plan, res);
    server_cpu_rows(&mut t, res);
    session_cpu_rows(&mut t, res);
    if res.ran_capacity {
        capacity_rows(&mut t, plan, res);
    }
    if let Some(c) = &res.classroom {
        classroom::classroom_rows(&mut t, &plan.classroom, c, res.classroom_unpaced.as_ref());
    }
    if let Some(i) = &res.images {
        images::image_rows(&mut t, &plan.images, i);
    }
    t
}

fn na() -> String {
    "n/a".to_string()
}

/// The label's note on how many runs a median is of (none for a single run).
fn runs_note(n: usize) -> String {
    if n == 1 { String::new() } else { format!(", median of {n}") }
}

/// p50 and p99 of one spawn series (nsplay beside the baselines), then nsplay without a warm pool
/// if that server ran too. Only the one-after-another p50 has a target.
fn spawn_rows(t: &mut Table, label: &str, m: &BTreeMap<&'static str, Vec<Duration>>, sequential: bool) {
    if m.is_empty() {
        return;
    }
    let get = |k: &str| m.get(k).and_then(|v| pct(v));
    let (n, b, u) = (get("nsplay"), get("bwrap"), get("unshare"));
    for (which, f) in [("p50", (|p: Pct| p.p50) as fn(Pct) -> Duration), ("p99", |p: Pct| p.p99)] {
        let cell = |p: Option<Pct>| p.map(|p| ms(f(p))).unwrap_or_else(na);
        let (target, result) = match (which, sequential, n, b) {
            ("p50", true, Some(n), Some(b)) => {
                let limit = b.p50.mul_f64(1.2);
                (format!("≤ 1.2 × bwrap = {}", ms(limit)), met(n.p50 <= limit))
            }
            ("p50", true, _, None) => ("≤ 1.2 × bwrap".into(), "n/a (no bwrap)".into()),
            _ => ("—".into(), "—".into()),
        };
        t.row([&format!("{label}, {which}"), &cell(n), &cell(b), &cell(u), "—", &target, &result]);
    }
    if let Some(c) = get(COLD) {
        for (which, d) in [("p50", c.p50), ("p99", c.p99)] {
            let label = format!("{label}, no warm pool (`--warm-pool 0`), {which}");
            t.row([&label, &ms(d), "—", "—", "—", "reported", "—"]);
        }
    }
}

/// One row per number of open sessions: p50 against the raw pty's, and p99 with the middle count.
fn echo_rows(t: &mut Table, plan: &Plan, res: &Results) {
    let raw = pct(&res.echo_raw);
    for (n, samples) in &res.echo {
        let Some(p) = pct(samples) else { continue };
        let mut targets = Vec::new();
        let mut ok = true;
        if let Some(r) = raw {
            let limit = r.p50 + Duration::from_micros(150);
            targets.push(format!("p50 ≤ raw + 150 µs = {}", us(limit)));
            ok &= p.p50 <= limit;
        }
        if *n == plan.echo_mid {
            targets.push("p99 ≤ 2 ms".into());
            ok &= p.p99 <= Duration::from_millis(2);
        }
        let raw_cell = raw.map(|r| format!("{} / {}", us(r.p50), us(r.p99))).unwrap_or_else(na);
        t.row([
            &format!("Echo p50 / p99, {n} session{} open", if *n == 1 { "" } else { "s" }),
            &format!("{} / {}", us(p.p50), us(p.p99)),
            "—",
            "—",
            &raw_cell,
            &targets.join("; "),
            &met(ok),
        ]);
    }
}

/// MB/s of `cat` per CPU limit; only `--cpu 1` has a target (a share of the raw pty's).
fn throughput_rows(t: &mut Table, plan: &Plan, res: &Results) {
    let raw_mbs = median_of(&res.throughput_raw, mb_per_s);
    for (cpu, session) in &res.throughput {
        let Some(v) = median_of(session, mb_per_s) else { continue };
        let (target, result) = match (raw_mbs, *cpu == "1") {
            (Some(r), true) => (
                format!("≥ 90 % of raw = {:.1} MB/s", 0.9 * r),
                format!("{} ({:.0} % of raw)", met(v >= 0.9 * r), 100.0 * v / r),
            ),
            (Some(r), false) => ("reported".into(), format!("{:.0} % of raw", 100.0 * v / r)),
            (None, _) => ("≥ 90 % of raw".into(), "n/a".into()),
        };
        t.row([
            &format!("Throughput, cat {} MiB, --cpu {cpu}{}", plan.throughput_bytes / MIB, runs_note(session.len())),
            &format!("{v:.1} MB/s"),
            "—",
            "—",
            &raw_mbs.map(|r| format!("{r:.1} MB/s")).unwrap_or_else(na),
            &target,
            &result,
        ]);
    }
}

/// The server process's CPU per GB of the same runs, beside the raw pty's reading thread.
fn server_cpu_rows(t: &mut Table, res: &Results) {
    let raw_cpu_gb = median_of(&res.throughput_raw, cpu_per_gb);
    for (cpu, session) in &res.throughput {
        let Some(per_gb) = median_of(session, cpu_per_gb) else { continue };
        t.row([
            &format!("Server CPU per GB of output, --cpu {cpu}{}", runs_note(session.len())),
            &format!("{per_gb:.2} s/GB"),
            "—",
            "—",
            &raw_cpu_gb.map(|c| format!("{c:.2} s/GB (reader)")).unwrap_or_else(na),
            "≤ 3 s/GB",
            &met(per_gb <= 3.0),
        ]);
    }
}

/// What the same runs cost the session's own cgroups (session and relay group), and how long the
/// quota throttled it: reported, no target.
fn session_cpu_rows(t: &mut Table, res: &Results) {
    for (cpu, cost) in &res.session_cost {
        let gb = |bytes: u64| bytes as f64 / 1e9;
        let per_gb: Vec<f64> = cost.iter().map(|(bytes, c, _, _)| c / gb(*bytes)).collect();
        let relay_per_gb: Vec<f64> = cost.iter().map(|(bytes, _, r, _)| r / gb(*bytes)).collect();
        let throttled: Vec<f64> = cost.iter().map(|(_, _, _, t)| *t).collect();
        let (Some(per_gb), Some(relay_per_gb), Some(throttled)) =
            (median(per_gb), median(relay_per_gb), median(throttled))
        else {
            continue;
        };
        t.row([
            &format!("Session CPU per GB of output (cat and tty; relay), --cpu {cpu}{}", runs_note(cost.len())),
            &format!("{per_gb:.2} s/GB, throttled {throttled:.2} s; relay {relay_per_gb:.2} s/GB"),
            "—",
            "—",
            "—",
            "reported",
            "—",
        ]);
    }
}

/// Sessions opened (with the first failure, cut short), the times to open and end them, and
/// memory per idle session.
fn capacity_rows(t: &mut Table, plan: &Plan, res: &Results) {
    let opened = match &res.open_failure {
        Some(f) => format!("{} (then: {})", res.opened, f.chars().take(80).collect::<String>()),
        None => res.opened.to_string(),
    };
    t.row([
        "Capacity: idle sessions opened",
        &opened,
        "—",
        "—",
        "—",
        &plan.sessions.to_string(),
        &met(res.opened >= plan.sessions && res.open_failure.is_none()),
    ]);
    t.row([
        &format!("Capacity: time to open all ({} at a time)", plan.open_concurrency),
        &secs(res.open_time),
        "—",
        "—",
        "—",
        "reported",
        "—",
    ]);
    t.row(["Capacity: time to end all", &secs(res.end_time), "—", "—", "—", "reported", "—"]);
    let rss = res.rss_per_session_kib;
    t.row([
        "Capacity: server RSS per idle session",
        &rss.map(|k| format!("{k:.0} KiB")).unwrap_or_else(na),
        "—",
        "—",
        "—",
        "≤ 128 KiB",
        &rss.map(|k| met(k <= 128.0)).unwrap_or_else(na),
    ]);
    t.row([
        "Capacity: sandbox memory per session",
        &res.sandbox_mem_per_session.map(|b| format!("{:.0} KiB", b / 1024.0)).unwrap_or_else(na),
        "—",
        "—",
        "—",
        "reported",
        "—",
    ]);
}

/// Waits (at most 30 s) until the machine is idle again: ending hundreds of sessions leaves the
/// kernel freeing their cgroups and memory in worker threads for a while, which would land in
/// the next part's numbers.
fn settle(plan: &Plan) {
    if plan.smoke {
        return;
    }
    let busy_idle = || -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let v: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        let idle = v.get(3)? + v.get(4).unwrap_or(&0);
        Some((v.iter().sum::<u64>() - idle, idle))
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let Some((b0, i0)) = busy_idle() else { return };
        std::thread::sleep(Duration::from_millis(500));
        let Some((b1, i1)) = busy_idle() else { return };
        let (busy, idle) = (b1 - b0, i1 - i0);
        if busy * 20 <= busy + idle {
            return;
        }
    }
    progress("the machine did not settle within 30 s; measuring anyway");
}

fn cleanup_cgroups(parent: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(parent)];
    for c in ["memory", "pids", "cpu", "cpuacct", "cpu,cpuacct", "freezer", "unified"] {
        dirs.push(root.join(c).join(parent));
    }
    for d in dirs {
        // Only empty groups go (rmdir refuses anything else): never another instance's sessions.
        let _ = std::fs::remove_dir(d.join("supervisor"));
        let _ = std::fs::remove_dir(&d);
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(plan: &Plan) -> Result<String> {
    let load_before = loadavg();
    let date = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    let started = Instant::now();
    let mut res = Results::default();
    let mut baselines: Vec<(&'static str, &'static [&'static str])> = Vec::new();
    if have("bwrap") {
        baselines.push(("bwrap", BWRAP));
    } else {
        res.notes.push("bwrap is not installed (apt-get install bubblewrap): its column is n/a".into());
    }
    if have("unshare") {
        baselines.push(("unshare", UNSHARE));
    }
    let wants = |part: &str| plan.only.is_empty() || plan.only.iter().any(|p| p == part);
    if wants("echo") || wants("capacity") {
        progress(format!("echo: {} keys on bash on a raw pty", plan.echo_keys));
        res.echo_raw = pty_echo(plan.echo_keys, &plan.state_dir)?;
        part_capacity(plan, &mut res)?;
    }
    if wants("spawn") {
        settle(plan);
        part_spawn(plan, &mut res, &baselines)?;
    }
    if wants("throughput") {
        settle(plan);
        part_throughput(plan, &mut res)?;
    }
    if wants("classroom") {
        settle(plan);
        // With floods, the same room first without the output budget: the baseline of what the
        // budget does for the typists, in the same run.
        if plan.classroom.floods > 0 {
            let off = ["--output-rate".to_string(), "0".to_string()];
            res.classroom_unpaced = Some(classroom::part_classroom(plan, &plan.classroom, "classroom-unpaced", &off)?);
            settle(plan);
        }
        res.classroom = Some(classroom::part_classroom(plan, &plan.classroom, "classroom", &[])?);
    }
    if wants("images") {
        settle(plan);
        res.images = Some(images::part_images(plan)?);
    }

    let mut out = String::new();
    let mode = if plan.smoke { " (smoke mode: the counts are tiny and the numbers mean nothing)" } else { "" };
    let _ = writeln!(out, "## nsplay-bench{mode}\n");
    let _ = writeln!(out, "- Date: {date} (start)");
    let _ = writeln!(out, "- Machine: {}", machine());
    let _ = writeln!(
        out,
        "- Load average (1, 5, 15 min): {load_before} at the start, {} at the end ({:.0} s); other work on the machine shows up in every column",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    let args: Vec<String> = std::iter::once("nsplay-bench".to_string()).chain(std::env::args().skip(1)).collect();
    let _ = writeln!(out, "- Command: `{}`", args.join(" "));
    let _ = writeln!(
        out,
        "- Tools: {}; {}; {}",
        first_line_of("bwrap", "--version"),
        first_line_of("unshare", "--version"),
        first_line_of("bash", "--version")
    );
    for n in &res.notes {
        let _ = writeln!(out, "- {n}");
    }
    out.push('\n');
    out.push_str(&build_table(plan, &res).render());
    Ok(out)
}

fn main() {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("nsplay-bench: must run as root (nsplay creates namespaces, cgroups and mounts)");
        std::process::exit(2);
    }
    let plan = match Plan::from_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("nsplay-bench: {e:#}");
            std::process::exit(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&plan.state_dir) {
        eprintln!("nsplay-bench: state directory {}: {e}", plan.state_dir.display());
        std::process::exit(2);
    }
    // Hundreds of sessions need a few thousand descriptors here and in the server.
    if let Ok((_, hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    let result = run(&plan);
    cleanup_cgroups(&plan.cgroup_parent);
    if plan.remove_state_dir {
        let _ = std::fs::remove_dir_all(&plan.state_dir);
    }
    match result {
        Ok(table) => {
            print!("{table}");
            let _ = std::io::stdout().flush();
        }
        Err(e) => {
            eprintln!("nsplay-bench: {e:#}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = pct(&v).unwrap();
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(pct(&v[..1]).unwrap().p99, Duration::from_millis(1));
        assert!(pct(&[]).is_none());
    }

    #[test]
    fn the_prompt_is_found_across_frames() {
        let mut s = PromptScan::default();
        assert!(!s.feed(b"root@nsplay:~#"));
        assert!(s.feed(b" "));
        let mut s = PromptScan::default();
        assert!(s.feed(b"\x1b[?2004hbash-5.2# "));
        assert!(!PromptScan::default().feed(b"no prompt here"));
    }

    /// A run with every part and every baseline (smoke counts: echo_mid 3, 5 sessions).
    fn full_run() -> (Plan, Results) {
        let plan = Plan::from_args(&Args::parse_from(["nsplay-bench", "--smoke", "--nsplay", "/bin/sh"])).unwrap();
        let series = |base_ms: u64| (1..=10).map(|i| Duration::from_millis(base_ms + i)).collect::<Vec<_>>();
        let echo = |base_us: u64, step: u64| (1..=40).map(|i| Duration::from_micros(base_us + i * step)).collect();
        let mut res = Results::default();
        for (name, ms) in [("nsplay", 40), ("bwrap", 30), ("unshare", 20), (COLD, 90)] {
            res.spawn_seq.insert(name, series(ms));
        }
        for (name, ms) in [("nsplay", 150), ("bwrap", 120), ("unshare", 110)] {
            res.spawn_burst.insert(name, series(ms));
        }
        res.echo_raw = echo(30, 1);
        res.echo = vec![(1, echo(60, 1)), (3, echo(100, 60)), (5, echo(400, 20))];
        let cat = |ms: u64, cpu: f64| (8 << 20, Duration::from_millis(ms), cpu);
        res.throughput = vec![("1", vec![cat(90, 0.03)]), ("0.5", vec![cat(190, 0.031), cat(170, 0.02)])];
        res.throughput_raw = vec![cat(80, 0.01), cat(85, 0.012)];
        res.session_cost = vec![
            ("1", vec![(8 << 20, 0.05, 0.01, 0.0)]),
            ("0.5", vec![(8 << 20, 0.06, 0.012, 0.1), (8 << 20, 0.07, 0.011, 0.12)]),
        ];
        res.ran_capacity = true;
        res.opened = 5;
        res.open_time = Duration::from_millis(1234);
        res.end_time = Duration::from_millis(321);
        res.rss_per_session_kib = Some(97.4);
        res.sandbox_mem_per_session = Some(1_234_567.0);
        res.classroom = Some(classroom::ClassroomResult {
            joined: 6,
            keystrokes: 120,
            echo: (1..=100).map(Duration::from_millis).collect(),
            healthz: vec![Duration::from_millis(3), Duration::from_millis(120)],
            flood_bytes: 50_000_000,
            flood_secs: 5.0,
            mem_per_learner: Some(3.0 * MIB as f64),
            server_rss_kib: 20_480,
            ..Default::default()
        });
        res.images = Some(images::ImagesResult {
            layers: 3,
            layer_bytes: 8_000_512,
            import: Duration::from_millis(400),
            cold_image: series(15),
            cold_host: series(10),
            warm_image: series(4),
            warm_host: series(4),
            idle: 3,
            mem_image: vec![3.0 * MIB as f64],
            mem_host: vec![2.5 * MIB as f64, 1.5 * MIB as f64, 2.0 * MIB as f64],
            cgroup_image: vec![1.5 * MIB as f64],
            cgroup_host: Vec::new(),
            unsteady_image: 0,
            unsteady_host: 1,
        });
        (plan, res)
    }

    fn row<'a>(t: &'a Table, label: &str) -> &'a [String; 7] {
        t.rows.iter().find(|r| r[0] == label).unwrap_or_else(|| panic!("no row {label:?}"))
    }

    #[test]
    fn a_full_run_has_every_row_in_order() {
        let (plan, res) = full_run();
        let t = build_table(&plan, &res);
        let labels: Vec<&str> = t.rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            labels,
            [
                "Spawn, 5 one after another, p50",
                "Spawn, 5 one after another, p99",
                "Spawn, 5 one after another, no warm pool (`--warm-pool 0`), p50",
                "Spawn, 5 one after another, no warm pool (`--warm-pool 0`), p99",
                "Spawn, 2 at once, p50",
                "Spawn, 2 at once, p99",
                "Echo p50 / p99, 1 session open",
                "Echo p50 / p99, 3 sessions open",
                "Echo p50 / p99, 5 sessions open",
                "Throughput, cat 8 MiB, --cpu 1",
                "Throughput, cat 8 MiB, --cpu 0.5, median of 2",
                "Server CPU per GB of output, --cpu 1",
                "Server CPU per GB of output, --cpu 0.5, median of 2",
                "Session CPU per GB of output (cat and tty; relay), --cpu 1",
                "Session CPU per GB of output (cat and tty; relay), --cpu 0.5, median of 2",
                "Capacity: idle sessions opened",
                "Capacity: time to open all (10 at a time)",
                "Capacity: time to end all",
                "Capacity: server RSS per idle session",
                "Capacity: sandbox memory per session",
                "Classroom (6 learners over 2 s, 1 flooding, 1 fork bombs, then 4 s): sessions",
                "Classroom: keystrokes lost",
                "Classroom: typists' keystroke → echo, p50 / p99 / max",
                "Classroom: /healthz p50 / p99",
                "Classroom: flood output delivered to its clients",
                "Classroom: host memory per learner (MemAvailable)",
                "Classroom: server RSS",
                "Images: import of the 8 MB image (3 uncompressed layers)",
                "Images: spawn without a pool (`--warm-pool 0`), 10 one after another, p50 / p99, on the image",
                "Images: spawn without a pool (`--warm-pool 0`), 10 one after another, p50 / p99, on the host root",
                "Images: spawn without a pool (`--warm-pool 0`), p50, image / host root",
                "Images: spawn from the warm pool, 10 one after another, p50 / p99, on the image",
                "Images: spawn from the warm pool, 10 one after another, p50 / p99, on the host root",
                "Images: spawn from the warm pool, p50, image / host root",
                "Images: host memory per idle session on the image (MemAvailable, 3 open)",
                "Images: host memory per idle session on the host root (MemAvailable, 3 open, median of 3)",
            ]
        );
        assert_eq!(row(&t, "Images: import of the 8 MB image (3 uncompressed layers)")[1], "0.40 s, 20 MB/s (8.0 MB)");
        assert_eq!(
            row(&t, "Images: spawn without a pool (`--warm-pool 0`), 10 one after another, p50 / p99, on the image")[1],
            "20.0 ms / 25.0 ms"
        );
        assert_eq!(
            row(&t, "Images: spawn without a pool (`--warm-pool 0`), p50, image / host root")[1..],
            ["1.33×", "—", "—", "—", "≤ 1.5×", "met"]
        );
        assert_eq!(row(&t, "Images: spawn from the warm pool, p50, image / host root")[5..], ["≤ 1.2×", "met"]);
        assert_eq!(
            row(&t, "Images: host memory per idle session on the image (MemAvailable, 3 open)")[1],
            "3.0 MiB; its cgroup: 1.5 MiB"
        );
        assert_eq!(
            row(&t, "Images: host memory per idle session on the host root (MemAvailable, 3 open, median of 3)")[1],
            "2.0 MiB (rounds: 2.5, 1.5, 2.0); 1 of 6 readings while MemAvailable still moved"
        );
        assert_eq!(row(&t, "Classroom: keystrokes lost")[1..], ["0 of 120", "—", "—", "—", "0", "met"]);
        assert_eq!(
            row(&t, "Classroom: typists' keystroke → echo, p50 / p99 / max")[1..],
            ["50.0 ms / 99.0 ms / 100 ms", "—", "—", "—", "p99 ≤ 50 ms", "**missed**"]
        );
        assert_eq!(row(&t, "Classroom: /healthz p50 / p99")[6], "**missed**");
        assert_eq!(
            row(&t, "Classroom: flood output delivered to its clients")[1],
            "10.0 MB/s in all, 10.0 MB/s per flood"
        );
        assert_eq!(row(&t, "Classroom: host memory per learner (MemAvailable)")[1], "3.0 MiB");
        assert_eq!(
            row(&t, "Spawn, 5 one after another, p50")[1..],
            ["45.0 ms", "35.0 ms", "25.0 ms", "—", "≤ 1.2 × bwrap = 42.0 ms", "**missed**"]
        );
        assert_eq!(row(&t, "Spawn, 2 at once, p50")[5..], ["—", "—"]);
        assert_eq!(
            row(&t, "Echo p50 / p99, 3 sessions open")[1..],
            ["1300 µs / 2500 µs", "—", "—", "50 µs / 70 µs", "p50 ≤ raw + 150 µs = 200 µs; p99 ≤ 2 ms", "**missed**"]
        );
        assert_eq!(
            row(&t, "Throughput, cat 8 MiB, --cpu 1")[1..],
            ["93.2 MB/s", "—", "—", "104.9 MB/s", "≥ 90 % of raw = 94.4 MB/s", "**missed** (89 % of raw)"]
        );
        assert_eq!(row(&t, "Throughput, cat 8 MiB, --cpu 0.5, median of 2")[5..], ["reported", "47 % of raw"]);
        assert_eq!(row(&t, "Server CPU per GB of output, --cpu 1")[4], "1.43 s/GB (reader)");
        assert_eq!(
            row(&t, "Session CPU per GB of output (cat and tty; relay), --cpu 0.5, median of 2")[1],
            "8.34 s/GB, throttled 0.12 s; relay 1.43 s/GB"
        );
        assert_eq!(
            row(&t, "Capacity: server RSS per idle session")[1..],
            ["97 KiB", "—", "—", "—", "≤ 128 KiB", "met"]
        );
        assert_eq!(row(&t, "Capacity: sandbox memory per session")[1], "1206 KiB");
        let text = t.render();
        let width = text.lines().next().unwrap().chars().count();
        assert_eq!(text.lines().count(), 2 + t.rows.len());
        assert!(text.starts_with("| Measure ") && text.lines().all(|l| l.chars().count() == width), "{text}");
    }

    #[test]
    fn what_did_not_run_is_n_a_or_left_out() {
        let (plan, mut res) = full_run();
        res.spawn_seq.remove("bwrap");
        res.spawn_seq.remove(COLD);
        res.spawn_burst.clear();
        res.echo_raw.clear();
        res.echo.push((7, Vec::new()));
        res.throughput_raw.clear();
        res.opened = 3;
        res.open_failure = Some(format!("POST /api/sessions: 503 {}", "x".repeat(100)));
        res.sandbox_mem_per_session = None;
        let t = build_table(&plan, &res);
        assert_eq!(
            row(&t, "Spawn, 5 one after another, p50")[2..],
            ["n/a", "25.0 ms", "—", "≤ 1.2 × bwrap", "n/a (no bwrap)"]
        );
        assert!(!t.rows.iter().any(|r| r[0].starts_with("Spawn, 2 at once") || r[0].contains("no warm pool")));
        assert!(!t.rows.iter().any(|r| r[0].contains("7 sessions")), "an echo without samples has no row");
        assert_eq!(row(&t, "Echo p50 / p99, 1 session open")[4..], ["n/a", "", "met"]);
        assert_eq!(row(&t, "Throughput, cat 8 MiB, --cpu 1")[4..], ["n/a", "≥ 90 % of raw", "n/a"]);
        let opened = row(&t, "Capacity: idle sessions opened");
        assert_eq!(opened[1], format!("3 (then: POST /api/sessions: 503 {})", "x".repeat(80 - 24)));
        assert_eq!(opened[6], "**missed**");
        assert_eq!(row(&t, "Capacity: sandbox memory per session")[1], "n/a");
        let images = res.images.as_mut().unwrap();
        images.cold_image = (1..=10).map(|i| Duration::from_millis(20 + i)).collect();
        images.warm_host.clear();
        let t = build_table(&plan, &res);
        assert_eq!(
            row(&t, "Images: spawn without a pool (`--warm-pool 0`), p50, image / host root")[6],
            "**missed**",
            "25 ms against 15 ms is over 1.5×"
        );
        assert_eq!(row(&t, "Images: spawn from the warm pool, p50, image / host root")[5..], ["≤ 1.2×", "n/a"]);
        res.ran_capacity = false;
        res.classroom = None;
        res.images = None;
        res.throughput.clear();
        res.session_cost.clear();
        let t = build_table(&plan, &res);
        assert!(t.rows.iter().all(|r| r[0].starts_with("Spawn") || r[0].starts_with("Echo")), "{}", t.render());
    }
}
