//! The `images` part (issue #20, docs/images.md): root filesystems from OCI images.
//!
//! The benchmark builds its own image as an OCI image layout in its state directory — the
//! host's bash with the libraries `ldd` names (so a session's terminal finds its shell and its
//! prompt exactly as on the host root), busybox with a few applets, and incompressible filler
//! up to `--images-mb` — imports it with `nsplay image import` (timed), then runs four servers
//! side by side: on the image and on the host root, each without a warm pool and with the
//! default one. Spawns alternate between the image and the host root, so drift in the
//! machine's load hits both alike; the targets are ratios of the two in the same run. Last,
//! what an idle session costs the host on each root (`MemAvailable`).

use std::collections::{BTreeSet, VecDeque};
use std::os::unix::fs::PermissionsExt;

use sha2::{Digest, Sha256};

use super::*;

/// The image's name in the benchmark's store.
const IMAGE: &str = "nsplay-bench";
/// Applets of busybox linked in the image's /bin: what a learner reaches for first.
const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "ps", "mkdir", "rm", "cp", "mv", "grep", "sed", "head", "tail", "wc", "id", "hostname",
    "mount", "env", "sleep", "true", "false", "uname",
];
/// Where Debian's busybox-static puts its binary (tests/run.sh installs the package).
const BUSYBOX: &str = "/bin/busybox";
/// The filler layer's files are at most this large (a layer of one huge file is not typical).
const FILLER_FILE: u64 = 10_000_000;
/// The filler's PRNG seed: the same image, byte for byte, on every run on the same host.
const FILLER_SEED: u64 = 0x6e73_706c_6179_0014;
/// The image's PATH, as Debian's images set it.
const IMAGE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Counts of the images part.
#[derive(Debug, Clone)]
pub(super) struct ImagesPlan {
    /// Target size of the image's layer tars together, in MB (10^6 bytes).
    pub mb: u64,
    /// Rounds of spawns one after another (each round: one spawn on each of the four servers).
    pub spawns: usize,
    /// Idle sessions opened on each root for the memory rows.
    pub sessions: usize,
    /// Times the idle sessions are opened on each root, alternating which goes first.
    pub mem_rounds: usize,
    /// Longest wait for `MemAvailable` to hold still before each reading.
    pub mem_settle: Duration,
}

/// What the images part measured.
#[derive(Debug, Default)]
pub(super) struct ImagesResult {
    pub layers: usize,
    /// Bytes of the layers' (uncompressed) tars together.
    pub layer_bytes: u64,
    pub import: Duration,
    pub cold_image: Vec<Duration>,
    pub cold_host: Vec<Duration>,
    pub warm_image: Vec<Duration>,
    pub warm_host: Vec<Duration>,
    /// Idle sessions open when memory was read (on each root).
    pub idle: usize,
    /// Host memory (`MemAvailable` before minus after) per idle session, in bytes, each round.
    pub mem_image: Vec<f64>,
    pub mem_host: Vec<f64>,
    /// The same sessions' own cgroup memory, per session, in bytes, each round.
    pub cgroup_image: Vec<f64>,
    pub cgroup_host: Vec<f64>,
    /// Readings (two per round: before and after) taken while `MemAvailable` still moved.
    pub unsteady_image: usize,
    pub unsteady_host: usize,
}

// ---------------------------------------------------------------------------------------------
// The image: an OCI layout of uncompressed tar layers.

/// A writer that hashes and counts what passes through it (a layer's digest is its tar's).
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hash.update(&b[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A blob of the layout: its sha256 (hex) and size.
#[derive(Debug, Clone)]
struct Blob {
    hex: String,
    size: u64,
}

/// One layer tar being written straight into the layout's blobs (a 100 MB layer never sits in
/// memory); every parent directory gets its own entry, as `docker save` writes them.
struct Layer {
    tar: tar::Builder<Hashing<std::io::BufWriter<File>>>,
    dirs: BTreeSet<String>,
    tmp: PathBuf,
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    // The image's root owns everything, as in a real base image (the store keeps the owners).
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

impl Layer {
    fn new(blobs: &Path, n: usize) -> Result<Layer> {
        let tmp = blobs.join(format!("layer-{n}.tmp"));
        let f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let w = Hashing { inner: std::io::BufWriter::with_capacity(1 << 20, f), hash: Sha256::new(), bytes: 0 };
        Ok(Layer { tar: tar::Builder::new(w), dirs: BTreeSet::new(), tmp })
    }

    /// Entries for the directories above `path` not written yet.
    fn parents(&mut self, path: &str) -> Result<()> {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let dir = &path[..at + i];
            at += i + 1;
            if self.dirs.insert(dir.to_string()) {
                let mut h = header(tar::EntryType::Directory, 0, 0o755);
                self.tar.append_data(&mut h, dir, std::io::empty())?;
            }
        }
        Ok(())
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        self.parents(path)?;
        if self.dirs.insert(path.to_string()) {
            let mut h = header(tar::EntryType::Directory, 0, mode);
            self.tar.append_data(&mut h, path, std::io::empty())?;
        }
        Ok(())
    }

    fn file(&mut self, path: &str, mode: u32, size: u64, data: impl Read) -> Result<()> {
        self.parents(path)?;
        let mut h = header(tar::EntryType::Regular, size, mode);
        self.tar.append_data(&mut h, path, data).with_context(|| format!("writing {path} into a layer"))?;
        Ok(())
    }

    /// A file of the host at `path` in the image: its content (symbolic links followed, as
    /// `ldd` names a library by a link) and its permission bits.
    fn host_file(&mut self, host: &Path, path: &str) -> Result<()> {
        let f = File::open(host).with_context(|| format!("reading {} for the benchmark's image", host.display()))?;
        let meta = f.metadata()?;
        self.file(path, meta.permissions().mode() & 0o7777, meta.len(), f)
    }

    /// Every directory and regular file under the host's `host`, at the same path in the image.
    fn host_tree(&mut self, host: &Path) -> Result<()> {
        let mut todo = vec![host.to_path_buf()];
        while let Some(d) = todo.pop() {
            self.dir(&image_path(&d)?, 0o755)?;
            let mut entries: Vec<_> = std::fs::read_dir(&d)
                .with_context(|| format!("reading {}", d.display()))?
                .collect::<std::io::Result<_>>()?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let t = e.file_type()?;
                if t.is_dir() {
                    todo.push(e.path());
                } else if t.is_file() {
                    self.host_file(&e.path(), &image_path(&e.path())?)?;
                }
            }
        }
        Ok(())
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.parents(path)?;
        let mut h = header(tar::EntryType::Symlink, 0, 0o777);
        self.tar.append_link(&mut h, path, target)?;
        Ok(())
    }

    /// Ends the tar and names its blob by its digest.
    fn finish(self, blobs: &Path) -> Result<Blob> {
        let Layer { tar, tmp, .. } = self;
        let mut w = tar.into_inner()?;
        w.flush()?;
        let blob = Blob { hex: hex(&w.hash.finalize()), size: w.bytes };
        std::fs::rename(&tmp, blobs.join(&blob.hex))?;
        Ok(blob)
    }
}

/// A host path as a path inside the image (relative, as in a layer tar).
fn image_path(host: &Path) -> Result<String> {
    let s = host.to_str().with_context(|| format!("{} is not UTF-8", host.display()))?;
    Ok(s.trim_start_matches('/').to_string())
}

/// Incompressible bytes from a seeded PRNG (splitmix64): a filler no layer compression or
/// page-cache trick makes cheaper than real content.
struct Noise {
    state: u64,
    left: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The files `ldd` says `program` loads (the dynamic loader included, the vDSO not).
fn ldd_paths(ldd_output: &str, program: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for line in ldd_output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let named = match line.split_once("=>") {
            Some((lib, rest)) => {
                let p = rest.split_whitespace().next().unwrap_or("");
                if !p.starts_with('/') {
                    bail!("ldd {program}: {} is {rest:?}: the image would not run it", lib.trim());
                }
                p
            }
            None => line.split_whitespace().next().unwrap_or(""),
        };
        if named.starts_with('/') {
            out.push(PathBuf::from(named));
        }
    }
    if out.is_empty() {
        bail!("ldd {program} named no library (is it statically linked?):\n{ldd_output}");
    }
    Ok(out)
}

/// The layout's config: the architecture the import looks for (this host's: the image holds
/// this host's programs), Debian's PATH and the directory the shell starts in.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Writes the benchmark's image as an OCI layout at `dir` (empty or new) and returns its layer
/// blobs. Layer 1: the host's bash, the libraries `ldd` names, the terminfo entry and locale
/// the sessions' `TERM` and `LANG` name, /etc/passwd and /etc/group with root and the host's
/// /etc/bash.bashrc (Debian's prompt); layer 2: busybox with a few applets; layer 3:
/// incompressible filler so that the layer tars come to about `mb` MB together.
fn build_layout(dir: &Path, mb: u64) -> Result<Vec<Blob>> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;

    let mut base = Layer::new(&blobs, 1)?;
    for d in ["bin", "etc", "usr/bin", "usr/sbin", "sbin"] {
        base.dir(d, 0o755)?;
    }
    base.dir("root", 0o700)?;
    base.dir("tmp", 0o1777)?;
    base.host_file(Path::new("/bin/bash"), "bin/bash")?;
    let ldd = Command::new("ldd")
        .arg("/bin/bash")
        .output()
        .context("running ldd /bin/bash (Debian's libc-bin has it) to find the shell's libraries")?;
    if !ldd.status.success() {
        bail!("ldd /bin/bash failed ({}): {}", ldd.status, String::from_utf8_lossy(&ldd.stderr));
    }
    for lib in ldd_paths(&String::from_utf8_lossy(&ldd.stdout), "/bin/bash")? {
        base.host_file(&lib, &image_path(&lib)?)?;
    }
    // What readline looks up for TERM=xterm-256color and glibc for LANG=C.UTF-8, where Debian's
    // ncurses-base and libc-bin keep them; what the host lacks, its sessions lack too.
    for t in ["/etc/terminfo", "/lib/terminfo", "/usr/share/terminfo"] {
        let entry = Path::new(t).join("x/xterm-256color");
        if entry.is_file() {
            base.host_file(&entry, &image_path(&entry)?)?;
        }
    }
    let locale = Path::new("/usr/lib/locale/C.utf8");
    if locale.is_dir() {
        base.host_tree(locale)?;
    }
    if Path::new("/etc/bash.bashrc").is_file() {
        base.host_file(Path::new("/etc/bash.bashrc"), "etc/bash.bashrc")?;
    }
    let passwd = b"root:x:0:0:root:/root:/bin/bash\n";
    base.file("etc/passwd", 0o644, passwd.len() as u64, &passwd[..])?;
    let group = b"root:x:0:\n";
    base.file("etc/group", 0o644, group.len() as u64, &group[..])?;
    let base = base.finish(&blobs)?;

    let mut tools = Layer::new(&blobs, 2)?;
    if !Path::new(BUSYBOX).is_file() {
        bail!(
            "{BUSYBOX} does not exist: install Debian's busybox-static (apt-get install -y busybox-static) for the benchmark's image"
        );
    }
    tools.host_file(Path::new(BUSYBOX), "bin/busybox")?;
    for a in APPLETS {
        tools.symlink(&format!("bin/{a}"), "busybox")?;
    }
    let tools = tools.finish(&blobs)?;

    // Each file costs a 512-byte header besides its data (a multiple of 512 here); the end of
    // the tar two zero blocks; the filler's two directories one header each.
    let mut filler = Layer::new(&blobs, 3)?;
    filler.dir("opt/filler", 0o755)?;
    let mut left = (mb * 1_000_000).saturating_sub(base.size + tools.size + 3 * 512 + 1024);
    let mut rng = Noise { state: FILLER_SEED, left: 0 };
    let mut n = 0;
    while left > 512 {
        let size = (left - 512).min(FILLER_FILE) / 512 * 512;
        if size == 0 {
            break;
        }
        rng.left = size;
        filler.file(&format!("opt/filler/part-{n:03}.bin"), 0o644, size, &mut rng)?;
        left -= size + 512;
        n += 1;
    }
    let filler = filler.finish(&blobs)?;

    let layers = vec![base, tools, filler];
    let put = |bytes: Vec<u8>| -> Result<Blob> {
        let blob = Blob { hex: hex(&Sha256::digest(&bytes)), size: bytes.len() as u64 };
        std::fs::write(blobs.join(&blob.hex), &bytes)?;
        Ok(blob)
    };
    let config = put(serde_json::to_vec(&serde_json::json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {"Env": [IMAGE_PATH], "WorkingDir": "/root"},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| format!("sha256:{}", l.hex)).collect::<Vec<_>>()},
    }))?)?;
    let manifest = put(serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", config.hex), "size": config.size},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{}", l.hex),
            "size": l.size,
        })).collect::<Vec<_>>(),
    }))?)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", manifest.hex),
            "size": manifest.size,
            "platform": {"architecture": oci_arch(), "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": IMAGE},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion": "1.0.0"}"#)?;
    Ok(layers)
}

/// `nsplay image import` of the layout into the store under `data`: its wall time.
fn import(plan: &Plan, data: &Path, layout: &Path) -> Result<Duration> {
    // The layout was just written: its writeback would otherwise land in the import's time.
    nix::unistd::sync();
    let t0 = Instant::now();
    let out = Command::new(&plan.nsplay)
        .args(["image", "import", IMAGE])
        .arg(layout)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {} image import", plan.nsplay.display()))?;
    let dt = t0.elapsed();
    if !out.status.success() {
        bail!(
            "{} image import {IMAGE} {} --data-dir {} failed ({}): {}{}",
            plan.nsplay.display(),
            layout.display(),
            data.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(dt)
}

// ---------------------------------------------------------------------------------------------
// The servers and the measurements.

/// The four servers, by index.
const IMAGE_COLD: usize = 0;
const HOST_COLD: usize = 1;
const IMAGE_WARM: usize = 2;
const HOST_WARM: usize = 3;
const NAMES: [&str; 4] = ["images-image-cold", "images-host-cold", "images-image-warm", "images-host-warm"];

/// Servers that stop, and cgroup parents that go, whatever way the part ends.
struct Fleet {
    servers: Vec<Server>,
    parents: Vec<String>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for s in self.servers.drain(..) {
            s.stop();
        }
        for p in &self.parents {
            cleanup_cgroups(p);
        }
    }
}

/// The end of a server's log (Server::start writes it into the server's state directory), for
/// an error that should say what the server said.
fn log_tail(plan: &Plan, name: &str) -> String {
    let text = std::fs::read_to_string(plan.state_dir.join(format!("{name}.log"))).unwrap_or_default();
    let start = text.char_indices().rev().nth(1500).map_or(0, |(i, _)| i);
    format!("the {name} server's log ends:\n{}", &text[start..])
}

/// Waits until the server's warm pool is full: `nsplay_pool_ready` above 0 and unchanged for
/// a second (the pool's size is the server's default; this benchmark does not assume it).
async fn wait_pool_full(srv: &Server) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last, mut since) = (0.0, Instant::now());
    loop {
        let text = srv.http.get(format!("{}/metrics", srv.base)).send().await?.error_for_status()?.text().await?;
        let ready = text
            .lines()
            .find_map(|l| l.strip_prefix("nsplay_pool_ready "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if ready != last {
            (last, since) = (ready, Instant::now());
        } else if ready > 0.0 && since.elapsed() >= Duration::from_secs(1) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("its warm pool did not fill within 60 s (nsplay_pool_ready {ready})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `MemAvailable` once it holds still (within 2 MiB over 2 s), or when `max_wait` is up:
/// (bytes, whether it held still). Ended sessions give their memory back for seconds afterwards
/// (the kernel frees much of it in deferred work), and a reading taken meanwhile would count
/// that as the next sessions' savings.
async fn steady_mem_available(max_wait: Duration) -> Result<(u64, bool)> {
    const EVERY: Duration = Duration::from_millis(250);
    const WINDOW: usize = 9;
    const SPREAD: u64 = 2 * MIB;
    let start = Instant::now();
    let mut last = VecDeque::with_capacity(WINDOW);
    loop {
        let m = mem_available().context("no MemAvailable in /proc/meminfo")?;
        if last.len() == WINDOW {
            last.pop_front();
        }
        last.push_back(m);
        let (lo, hi) = last.iter().fold((u64::MAX, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        if last.len() == WINDOW && hi - lo <= SPREAD {
            return Ok((m, true));
        }
        if start.elapsed() >= max_wait {
            return Ok((m, false));
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// `n` idle sessions opened on `srv`, each with its socket attached and at its prompt: host
/// memory (`MemAvailable` before minus after, each once it holds still) and the sessions' own
/// cgroup memory, per session, in bytes, and how many of the two readings were taken while it
/// still moved. Ends the sessions again.
async fn idle_memory(srv: &Server, n: usize, conc: usize, settle: Duration) -> Result<(f64, f64, usize)> {
    let (before, steady0) = steady_mem_available(settle).await?;
    let mut open = Vec::new();
    let failure = open_until(srv, &mut open, n, conc).await;
    let (after, steady1) = steady_mem_available(settle).await?;
    let mut cgroup = 0u64;
    let mut err = failure.map(|f| anyhow!("opening {n} idle sessions: {f}"));
    if err.is_none() {
        for s in &open {
            match srv.memory_bytes(&s.id).await {
                Ok(b) => cgroup += b,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
    }
    srv.end_all(open, conc).await?;
    if let Some(e) = err {
        return Err(e);
    }
    let unsteady = [steady0, steady1].iter().filter(|s| !**s).count();
    Ok(((before as f64 - after as f64) / n as f64, cgroup as f64 / n as f64, unsteady))
}

/// Builds and imports the image, then spawns and idle sessions on it and on the host root.
pub(super) fn part_images(plan: &Plan) -> Result<ImagesResult> {
    let dir = plan.state_dir.join("images");
    // A state directory kept from an earlier run (--state-dir) must not hold an old image.
    let _ = std::fs::remove_dir_all(&dir);
    let r = run_images(plan, &dir);
    // The layout, the store and the servers' state: nothing of it is needed afterwards.
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn run_images(plan: &Plan, dir: &Path) -> Result<ImagesResult> {
    let ip = &plan.images;
    let layout = dir.join("layout");
    let data = dir.join("data");
    progress(format!("images: building a {} MB image (OCI layout, 3 uncompressed layers)", ip.mb));
    let layers = build_layout(&layout, ip.mb)
        .with_context(|| format!("building the benchmark's image in {}", layout.display()))?;
    let mut res =
        ImagesResult { layers: layers.len(), layer_bytes: layers.iter().map(|l| l.size).sum(), ..Default::default() };
    progress(format!("images: nsplay image import of {:.1} MB", res.layer_bytes as f64 / 1e6));
    res.import = import(plan, &data, &layout)?;

    // Four servers beside each other, each with its own state directory, cgroup parent and id
    // range (the ranges of servers running together must not overlap).
    let mut fleet = Fleet { servers: Vec::new(), parents: Vec::new() };
    let mut plans = Vec::new();
    for (slot, name) in NAMES.iter().enumerate() {
        let mut p = plan_beside(plan, &dir.join(name), name, slot as u32)?;
        let mut extra: Vec<String> = Vec::new();
        if slot == IMAGE_COLD || slot == IMAGE_WARM {
            p.data_dir = Some(data.clone());
            extra.extend(["--image".to_string(), IMAGE.to_string()]);
        }
        if slot == IMAGE_COLD || slot == HOST_COLD {
            extra.extend(["--warm-pool".to_string(), "0".to_string()]);
        }
        fleet.parents.push(p.cgroup_parent.clone());
        fleet.servers.push(Server::start(&p, name, &extra).with_context(|| format!("starting the {name} server"))?);
        plans.push(p);
    }
    // What went wrong on server `i`, with what it logged.
    let failed = |i: usize, what: &str| format!("{what} on the {} server; {}", NAMES[i], log_tail(&plans[i], NAMES[i]));
    let rt = rt()?;
    let srv = &fleet.servers;
    for i in [IMAGE_WARM, HOST_WARM] {
        rt.block_on(wait_pool_full(&srv[i])).with_context(|| failed(i, "waiting for the warm pool"))?;
    }

    progress(format!(
        "images: {} rounds of spawns on the image and the host root, without and with a warm pool, alternating",
        ip.spawns
    ));
    let mut times: [Vec<Duration>; 4] = Default::default();
    for round in 0..ip.spawns {
        for (a, b) in [(IMAGE_COLD, HOST_COLD), (IMAGE_WARM, HOST_WARM)] {
            // Which of the two goes first alternates: the second follows the first's teardown,
            // which may cost it.
            let order = if round % 2 == 0 { [a, b] } else { [b, a] };
            for i in order {
                let (t, s) = rt.block_on(srv[i].spawn()).with_context(|| failed(i, "a spawn"))?;
                times[i].push(t);
                rt.block_on(srv[i].delete(&s.id)).with_context(|| failed(i, "deleting a session"))?;
                drop(s);
            }
        }
    }
    [res.cold_image, res.cold_host, res.warm_image, res.warm_host] = times;

    // Memory on the servers without a pool: nothing is being built before or after, so the
    // difference is the idle sessions alone. MemAvailable is the whole machine's, so anything
    // else running moves it: a few rounds, alternating which root goes first, and the median.
    res.idle = ip.sessions;
    progress(format!(
        "images: host memory of {} idle sessions on the image and on the host root, {} rounds",
        ip.sessions, ip.mem_rounds
    ));
    for round in 0..ip.mem_rounds {
        let order = if round % 2 == 0 { [IMAGE_COLD, HOST_COLD] } else { [HOST_COLD, IMAGE_COLD] };
        for i in order {
            let (m, c, u) = rt
                .block_on(idle_memory(&srv[i], ip.sessions, plan.open_concurrency, ip.mem_settle))
                .with_context(|| failed(i, &format!("{} idle sessions", ip.sessions)))?;
            let (mem, cg, unsteady) = if i == IMAGE_COLD {
                (&mut res.mem_image, &mut res.cgroup_image, &mut res.unsteady_image)
            } else {
                (&mut res.mem_host, &mut res.cgroup_host, &mut res.unsteady_host)
            };
            mem.push(m);
            cg.push(c);
            *unsteady += u;
            if u > 0 {
                progress(format!(
                    "images: MemAvailable did not hold still within {} s on the {} server: other work on the machine",
                    ip.mem_settle.as_secs(),
                    NAMES[i]
                ));
            }
        }
    }
    drop(fleet);
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// Rows.

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / MIB as f64)
}

/// The ratio row of image over host root, p50 against p50, with its target.
fn ratio_row(t: &mut Table, label: &str, image: &[Duration], host: &[Duration], limit: f64) {
    let target = format!("≤ {limit}×");
    match (pct(image), pct(host)) {
        (Some(i), Some(h)) if !h.p50.is_zero() => {
            let r = i.p50.as_secs_f64() / h.p50.as_secs_f64();
            t.row([label, &format!("{r:.2}×"), "—", "—", "—", &target, &met(r <= limit)]);
        }
        _ => t.row([label, "n/a", "—", "—", "—", &target, "n/a"]),
    }
}

pub(super) fn image_rows(t: &mut Table, ip: &ImagesPlan, r: &ImagesResult) {
    let mb = r.layer_bytes as f64 / 1e6;
    let secs_f = r.import.as_secs_f64();
    t.row([
        &format!("Images: import of the {:.0} MB image ({} uncompressed layers)", ip.mb, r.layers),
        &format!("{:.2} s, {:.0} MB/s ({mb:.1} MB)", secs_f, if secs_f > 0.0 { mb / secs_f } else { 0.0 }),
        "—",
        "—",
        "—",
        "reported",
        "—",
    ]);
    let p = |v: &[Duration]| pct(v).map(|p| format!("{} / {}", ms(p.p50), ms(p.p99))).unwrap_or_else(na);
    let n = r.cold_image.len();
    for (kind, image, host, limit) in [
        ("without a pool (`--warm-pool 0`)", &r.cold_image, &r.cold_host, 1.5),
        ("from the warm pool", &r.warm_image, &r.warm_host, 1.2),
    ] {
        for (root, v) in [("the image", image), ("the host root", host)] {
            t.row([
                &format!("Images: spawn {kind}, {n} one after another, p50 / p99, on {root}"),
                &p(v),
                "—",
                "—",
                "—",
                "reported",
                "—",
            ]);
        }
        ratio_row(t, &format!("Images: spawn {kind}, p50, image / host root"), image, host, limit);
    }
    for (root, mem, cg, unsteady) in [
        ("the image", &r.mem_image, &r.cgroup_image, r.unsteady_image),
        ("the host root", &r.mem_host, &r.cgroup_host, r.unsteady_host),
    ] {
        // The median, then every round's value when there were several (how far apart they are
        // is what the machine's other work did to them), then the sessions' own cgroups.
        let rounds = match mem.len() {
            0 | 1 => String::new(),
            _ => format!(
                " (rounds: {})",
                mem.iter().map(|m| format!("{:.1}", m / MIB as f64)).collect::<Vec<_>>().join(", ")
            ),
        };
        let mut cell = match (median(mem.clone()), median(cg.clone())) {
            (Some(m), Some(c)) => format!("{}{rounds}; its cgroup: {}", mib(m), mib(c)),
            (Some(m), None) => format!("{}{rounds}", mib(m)),
            _ => na(),
        };
        if unsteady > 0 {
            let _ = write!(cell, "; {unsteady} of {} readings while MemAvailable still moved", 2 * mem.len());
        }
        t.row([
            &format!(
                "Images: host memory per idle session on {root} (MemAvailable, {} open{})",
                r.idle,
                runs_note(mem.len())
            ),
            &cell,
            "—",
            "—",
            "—",
            "reported",
            "—",
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_names_the_libraries_and_the_loader_not_the_vdso() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd1b5f1000)\n\
                   \tlibtinfo.so.6 => /lib/x86_64-linux-gnu/libtinfo.so.6 (0x00007f0933a00000)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0932eea000)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f0933253000)\n";
        let got = ldd_paths(out, "/bin/bash").unwrap();
        assert_eq!(
            got,
            ["/lib/x86_64-linux-gnu/libtinfo.so.6", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
                .map(PathBuf::from)
        );
        let err = ldd_paths("\tlibfoo.so.1 => not found\n", "/bin/x").unwrap_err().to_string();
        assert!(err.contains("libfoo.so.1") && err.contains("not found"), "{err}");
        assert!(ldd_paths("\tstatically linked\n", "/bin/x").is_err());
    }

    #[test]
    fn the_filler_is_seeded_and_as_long_as_asked() {
        let read = |n: u64| {
            let mut v = Vec::new();
            Noise { state: FILLER_SEED, left: n }.read_to_end(&mut v).unwrap();
            v
        };
        let (a, b) = (read(1001), read(1001));
        assert_eq!(a.len(), 1001);
        assert_eq!(a, b);
        assert_ne!(a[..8], a[8..16]);
    }

    #[test]
    fn a_layer_blob_is_named_by_the_sha256_of_its_tar() {
        let dir = std::env::temp_dir().join(format!("nsplay-bench-layer-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut l = Layer::new(&dir, 1).unwrap();
        l.file("a/b/c.txt", 0o644, 3, &b"abc"[..]).unwrap();
        l.symlink("a/link", "b/c.txt").unwrap();
        let blob = l.finish(&dir).unwrap();
        let bytes = std::fs::read(dir.join(&blob.hex)).unwrap();
        assert_eq!(blob.size, bytes.len() as u64);
        assert_eq!(blob.hex, hex(&Sha256::digest(&bytes)));
        let mut names = Vec::new();
        for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        // Each parent directory once, before what it holds.
        assert_eq!(names, ["a", "a/b", "a/b/c.txt", "a/link"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
