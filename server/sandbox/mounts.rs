//! The session's root filesystem. Built in two phases, because the kernel's rules differ:
//!
//! 1. **Host phase** (host root, in a private mount namespace, *before* the session's user
//!    namespace exists): a size-capped tmpfs with read-only, nosuid, nodev binds of the host's
//!    `/usr` and friends, an nsplay-written `/etc`, `/dev` with a few device binds. Mounts made
//!    here become *locked* when the user namespace copies the mount namespace, so the learner
//!    cannot remount `/usr` read-write or peel a bind off.
//! 2. **User-namespace phase** (root of the session's user namespace, PID 1 of its PID
//!    namespace): fresh `/proc`, a read-only sysfs of the session's network namespace, a new
//!    devpts, the `/proc` protections (unlocked on purpose: a locked overmount on `/proc` would
//!    make the kernel refuse every nested `mount -t proc`), then `pivot_root`.
//!
//! The host phase is described as data ([`Step`]) so the plan can be unit-tested without root.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::{Gid, Uid, chdir, pivot_root};

use super::limits::Limits;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{op} {path}: {errno}")]
    Mount { op: &'static str, path: String, errno: Errno },
    #[error("preparing {path} in the session root: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("image root: {0}")]
    Image(String),
}

fn merr(op: &'static str, path: &Path) -> impl FnOnce(Errno) -> MountError + use<> {
    let path = path.display().to_string();
    move |errno| MountError::Mount { op, path, errno }
}

/// One thing to create under the staging root in the host phase. Paths are relative to it.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Tmpfs {
        path: &'static str,
        options: String,
        flags: MsFlags,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: PathBuf,
    },
    File {
        path: String,
        contents: String,
        mode: u32,
    },
    /// Read-only, nosuid, nodev bind of a host directory or file.
    BindRo {
        path: String,
        source: PathBuf,
        dir: bool,
    },
    /// Bind of a host character device (null, zero, …) onto an empty file.
    BindDev {
        path: String,
        source: PathBuf,
    },
}

/// What the plan needs to know about the host: the kind of a path, without following links.
#[derive(Debug, Clone, PartialEq)]
pub enum HostEntry {
    Dir,
    File,
    Symlink(PathBuf),
}

pub trait HostView {
    fn entry(&self, path: &Path) -> Option<HostEntry>;
}

/// The real host, read with `lstat`.
pub struct RealHost;

impl HostView for RealHost {
    fn entry(&self, path: &Path) -> Option<HostEntry> {
        let md = fs::symlink_metadata(path).ok()?;
        if md.file_type().is_symlink() {
            Some(HostEntry::Symlink(fs::read_link(path).ok()?))
        } else if md.is_dir() {
            Some(HostEntry::Dir)
        } else {
            Some(HostEntry::File)
        }
    }
}

/// Top-level host directories shared read-only. On merged-/usr systems the `/bin`-style entries
/// are symlinks into `/usr` and are recreated as symlinks.
const SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Host files under /etc that programs need and that hold nothing secret. No shadow, no ssh
/// keys, no machine-id, no resolv.conf (there is no network).
const ETC_SHARED: &[&str] = &[
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "terminfo",
    "localtime",
    "timezone",
    "inputrc",
    "nsswitch.conf",
    "protocols",
    "services",
    "os-release",
    "debian_version",
    "login.defs",
    "mime.types",
    "locale.alias",
    "iproute2",
];

const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// A deliberately short shell start-up file: a clear prompt, colours, nothing slow.
const BASHRC: &str = r#"# nsplay: you are root in your own namespaces; nothing here touches the host.
[ -z "$PS1" ] && return
PS1='\[\e[1;32m\]\u@\h\[\e[0m\]:\[\e[1;34m\]\w\[\e[0m\]\$ '
alias ls='ls --color=auto'
alias grep='grep --color=auto'
"#;

pub struct RootfsSpec<'a> {
    pub hostname: &'a str,
    pub limits: &'a Limits,
}

/// The host-phase plan for one session root.
pub fn host_plan(spec: &RootfsSpec<'_>, host: &dyn HostView) -> Vec<Step> {
    let mut plan = Vec::new();
    let dir = |p: &str, mode| Step::Dir { path: p.to_string(), mode };
    for d in ["etc", "dev", "proc", "sys", "root", "home", "tmp", "var", "var/tmp", "run", "mnt", "opt"] {
        let mode = match d {
            "tmp" | "var/tmp" => 0o1777,
            "root" => 0o700,
            "proc" | "sys" => 0o555,
            _ => 0o755,
        };
        plan.push(dir(d, mode));
    }
    for name in SYSTEM_DIRS {
        let host_path = Path::new("/").join(name);
        match host.entry(&host_path) {
            Some(HostEntry::Symlink(target)) => plan.push(Step::Symlink { path: name.to_string(), target }),
            Some(HostEntry::Dir) => {
                plan.push(dir(name, 0o755));
                plan.push(Step::BindRo { path: name.to_string(), source: host_path, dir: true });
            }
            _ => {}
        }
    }
    let file = |p: &str, contents: String| Step::File { path: p.to_string(), contents, mode: 0o644 };
    plan.push(file(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n".into(),
    ));
    plan.push(file("etc/group", "root:x:0:\ntty:x:5:\nusers:x:100:\nnogroup:x:65534:\n".into()));
    plan.push(file("etc/hostname", format!("{}\n", spec.hostname)));
    plan.push(file(
        "etc/hosts",
        format!("127.0.0.1\tlocalhost\n127.0.1.1\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n", spec.hostname),
    ));
    plan.push(file("etc/bash.bashrc", BASHRC.into()));
    plan.push(file(
        "etc/profile",
        "[ -n \"$BASH_VERSION\" ] && [ -f /etc/bash.bashrc ] && . /etc/bash.bashrc\n".into(),
    ));
    plan.push(file("etc/shells", "/bin/sh\n/bin/bash\n/usr/bin/bash\n".into()));
    for name in ETC_SHARED {
        let host_path = Path::new("/etc").join(name);
        let path = format!("etc/{name}");
        match host.entry(&host_path) {
            Some(HostEntry::Dir) => {
                plan.push(dir(&path, 0o755));
                plan.push(Step::BindRo { path, source: host_path, dir: true });
            }
            Some(HostEntry::File) => {
                plan.push(file(&path, String::new()));
                plan.push(Step::BindRo { path, source: host_path, dir: false });
            }
            // A link such as /etc/localtime -> /usr/share/zoneinfo/… resolves inside the
            // session too, because /usr is there.
            Some(HostEntry::Symlink(target)) => plan.push(Step::Symlink { path, target }),
            None => {}
        }
    }
    plan.extend(dev_plan(spec));
    plan
}

/// `/dev`: a small tmpfs of our own; device nodes only as binds of the host's harmless ones.
/// The same on the host root and on an image.
fn dev_plan(spec: &RootfsSpec<'_>) -> Vec<Step> {
    let mut plan = Vec::new();
    let dir = |p: &str, mode| Step::Dir { path: p.to_string(), mode };
    plan.push(Step::Tmpfs {
        path: "dev",
        options: "mode=0755,size=64k,nr_inodes=256".into(),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
    });
    for d in DEVICES {
        plan.push(Step::BindDev { path: format!("dev/{d}"), source: Path::new("/dev").join(d) });
    }
    plan.push(dir("dev/pts", 0o755));
    plan.push(dir("dev/shm", 0o1777));
    plan.push(dir("dev/mqueue", 0o1777));
    for (path, target) in [
        ("dev/ptmx", "pts/ptmx"),
        ("dev/fd", "/proc/self/fd"),
        ("dev/stdin", "/proc/self/fd/0"),
        ("dev/stdout", "/proc/self/fd/1"),
        ("dev/stderr", "/proc/self/fd/2"),
    ] {
        plan.push(Step::Symlink { path: path.into(), target: target.into() });
    }
    plan.push(Step::Tmpfs {
        path: "dev/shm",
        options: format!("mode=1777,size={}", spec.limits.shm_bytes),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
    });
    plan
}

/// Mounts the session's tmpfs root at `stage` and carries out `plan` in it. Runs as host root in
/// a private mount namespace; `owner` is the host uid/gid that is root inside the session.
pub fn build_host_phase(stage: &Path, plan: &[Step], limits: &Limits, owner: u32) -> Result<(), MountError> {
    let opts =
        format!("mode=0755,size={},nr_inodes={},uid={owner},gid={owner}", limits.disk_bytes, limits.disk_inodes());
    mount(Some("nsplay"), stage, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(opts.as_str()))
        .map_err(merr("mount tmpfs on", stage))?;
    run_steps(stage, plan, owner)
}

/// Carries out `plan` under `stage` (a tree nsplay made, or checked with [`prepare_image_root`]).
fn run_steps(stage: &Path, plan: &[Step], owner: u32) -> Result<(), MountError> {
    let (uid, gid) = (Some(Uid::from_raw(owner)), Some(Gid::from_raw(owner)));
    let io = |path: &Path| {
        let p = path.display().to_string();
        move |source| MountError::Io { path: p, source }
    };
    for step in plan {
        match step {
            Step::Dir { path, mode } => {
                let p = stage.join(path);
                if !p.exists() {
                    fs::create_dir(&p).map_err(io(&p))?;
                }
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(io(&p))?;
                lchown(&p, uid, gid).map_err(merr("chown", &p))?;
            }
            Step::Symlink { path, target } => {
                let p = stage.join(path);
                symlink(target, &p).map_err(io(&p))?;
                lchown(&p, uid, gid).map_err(merr("chown", &p))?;
            }
            Step::File { path, contents, mode } => {
                let p = stage.join(path);
                fs::write(&p, contents).map_err(io(&p))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(io(&p))?;
                lchown(&p, uid, gid).map_err(merr("chown", &p))?;
            }
            Step::Tmpfs { path, options, flags } => {
                let p = stage.join(path);
                let options = format!("{options},uid={owner},gid={owner}");
                mount(Some("nsplay"), &p, Some("tmpfs"), *flags, Some(options.as_str()))
                    .map_err(merr("mount tmpfs on", &p))?;
            }
            Step::BindRo { path, source, dir } => {
                let p = stage.join(path);
                if !dir && !p.exists() {
                    fs::write(&p, "").map_err(io(&p))?;
                }
                bind_readonly(source, &p)?;
            }
            Step::BindDev { path, source } => {
                let p = stage.join(path);
                fs::write(&p, "").map_err(io(&p))?;
                mount(Some(source.as_path()), &p, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .map_err(merr("bind", &p))?;
            }
        }
    }
    Ok(())
}

fn bind_readonly(source: &Path, target: &Path) -> Result<(), MountError> {
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(merr("bind", target))?;
    let ro = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(None::<&str>, target, None::<&str>, ro, None::<&str>).map_err(merr("remount read-only", target))
}

/// A session root built from an OCI image of the image store instead of the host's `/usr`: its
/// unpacked layers (host directories the store owns, lowest first) become the read-only lower
/// directories of an overlay whose upper and work directories live on the session's
/// size-capped tmpfs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageRoot {
    pub layers: Vec<PathBuf>,
    /// The image config's `Env` (`KEY=value`), applied to every terminal's program.
    pub env: Vec<String>,
    /// The image config's `WorkingDir`, where terminals start (else `/root`).
    pub working_dir: Option<String>,
}

/// Most layers an image root may have (overlayfs stacks at most 500; the mount options must
/// fit one page).
pub const MAX_IMAGE_LAYERS: usize = 128;

/// Where the session's root is assembled under `stage`: the tmpfs itself, or on an image the
/// overlay mounted at `stage/root`.
pub fn session_root(stage: &Path, image: bool) -> PathBuf {
    if image { stage.join("root") } else { stage.to_path_buf() }
}

/// What the host phase plans on an image: only `/dev` (everything else is the image's; the few
/// files nsplay writes there are made by [`prepare_image_root`]).
pub fn image_plan(spec: &RootfsSpec<'_>) -> Vec<Step> {
    dev_plan(spec)
}

/// The host phase on an image: the session's tmpfs at `stage` holds `upper/`, `work/` and one
/// mount point per layer, `lower/N`, where the layer is bound read-only and *idmapped* through
/// `userns` (the layers keep the image's owners, uid 0 and so on; the session's user namespace
/// maps them from `owner` on, so the idmap shows root's files as owned by the session's root).
/// The overlay goes on `stage/root`, the layer binds are detached again (the overlay holds its
/// own references), the image root is prepared, and `plan` (the `/dev` steps) runs in it.
/// Runs as host root in the keeper's private mount namespace, like [`build_host_phase`]: every
/// mount here is locked once the session's user namespace copies the namespace.
pub fn build_image_phase(
    stage: &Path,
    image: &ImageRoot,
    spec: &RootfsSpec<'_>,
    plan: &[Step],
    owner: u32,
    userns: std::os::fd::BorrowedFd<'_>,
) -> Result<(), MountError> {
    if image.layers.is_empty() || image.layers.len() > MAX_IMAGE_LAYERS {
        return Err(MountError::Image(format!("{} layers (1 to {MAX_IMAGE_LAYERS} allowed)", image.layers.len())));
    }
    let limits = spec.limits;
    let opts =
        format!("mode=0755,size={},nr_inodes={},uid={owner},gid={owner}", limits.disk_bytes, limits.disk_inodes());
    mount(Some("nsplay"), stage, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(opts.as_str()))
        .map_err(merr("mount tmpfs on", stage))?;
    let io = |path: &Path| {
        let p = path.display().to_string();
        move |source| MountError::Io { path: p, source }
    };
    let (uid, gid) = (Some(Uid::from_raw(owner)), Some(Gid::from_raw(owner)));
    for d in ["upper", "work", "root", "lower"] {
        let p = stage.join(d);
        fs::create_dir(&p).map_err(io(&p))?;
    }
    // The overlay's root takes the upper directory's owner: the session's root.
    lchown(&stage.join("upper"), uid, gid).map_err(merr("chown", &stage.join("upper")))?;
    let mut lowers = Vec::new();
    for (i, layer) in image.layers.iter().enumerate() {
        let p = stage.join("lower").join(i.to_string());
        fs::create_dir(&p).map_err(io(&p))?;
        crate::sys::bind_idmapped(layer, &p, userns).map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EINVAL) {
                " (the image store's filesystem may not support idmapped mounts: ext4, xfs and btrfs do, tmpfs \
                 from Linux 6.3, 9p and NFS do not; put data_dir on one that does)"
            } else {
                ""
            };
            MountError::Image(format!("idmapped bind of layer {}: {e}{hint}", layer.display()))
        })?;
        lowers.push(p);
    }
    // overlayfs lists lower directories topmost first.
    let lowerdir: Vec<String> = lowers.iter().rev().map(|p| p.display().to_string()).collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        stage.join("upper").display(),
        stage.join("work").display()
    );
    let root = session_root(stage, true);
    mount(Some("nsplay"), &root, Some("overlay"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(options.as_str()))
        .map_err(merr("mount overlay on", &root))?;
    for p in &lowers {
        umount2(p, MntFlags::MNT_DETACH).map_err(merr("detach layer", p))?;
    }
    prepare_image_root(&root, spec.hostname, owner)?;
    run_steps(&root, plan, owner)
}

/// Makes sure the image root has real directories where nsplay mounts (`/dev`, `/proc`,
/// `/sys`, and `/tmp`, `/root`, `/etc` for the session), and writes `/etc/hostname` and
/// `/etc/hosts`. The image, not nsplay, made this tree: a symbolic link where a directory
/// should be (`/etc -> /host/etc`) is replaced, never followed, because every step here
/// is relative to a directory descriptor opened with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`.
pub fn prepare_image_root(root: &Path, hostname: &str, owner: u32) -> Result<(), MountError> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    use nix::sys::stat::{FchmodatFlags, Mode, fchmodat, mkdirat};
    use nix::unistd::{UnlinkatFlags, unlinkat};
    let how = |flags: OFlag, mode: u32| {
        OpenHow::new().flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW).mode(Mode::from_bits_truncate(mode)).resolve(
            ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        )
    };
    let fail = |what: &str| {
        let path = root.join(what).display().to_string();
        move |errno: Errno| MountError::Mount { op: "prepare", path, errno }
    };
    // The overlay's root itself is nsplay's mount point; only what is beneath it is the image's.
    let top = nix::fcntl::open(
        root,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail(""))?;
    let (uid, gid) = (Some(Uid::from_raw(owner)), Some(Gid::from_raw(owner)));
    for (name, mode) in
        [("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("tmp", 0o1777), ("root", 0o700), ("etc", 0o755)]
    {
        match openat2(&top, name, how(OFlag::O_DIRECTORY | OFlag::O_RDONLY, 0)) {
            Ok(_) => continue,
            Err(Errno::ENOENT) => {}
            // Not a directory (a file or a link): it goes, in the upper layer only.
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                unlinkat(&top, name, UnlinkatFlags::NoRemoveDir).map_err(fail(name))?
            }
            Err(e) => return Err(fail(name)(e)),
        }
        mkdirat(&top, name, Mode::from_bits_truncate(mode)).map_err(fail(name))?;
        fchmodat(&top, name, Mode::from_bits_truncate(mode), FchmodatFlags::NoFollowSymlink).map_err(fail(name))?;
        nix::unistd::fchownat(&top, name, uid, gid, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).map_err(fail(name))?;
    }
    let etc = openat2(&top, "etc", how(OFlag::O_DIRECTORY | OFlag::O_RDONLY, 0)).map_err(fail("etc"))?;
    let hosts = format!("127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (name, contents) in [("hostname", format!("{hostname}\n")), ("hosts", hosts)] {
        match unlinkat(&etc, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(fail(name)(e)),
        }
        let fd =
            openat2(&etc, name, how(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY, 0o644)).map_err(fail(name))?;
        let mut f = fs::File::from(fd);
        std::io::Write::write_all(&mut f, contents.as_bytes()).map_err(io_at(root, name))?;
        nix::unistd::fchown(&f, uid, gid).map_err(fail(name))?;
    }
    Ok(())
}

fn io_at(root: &Path, name: &str) -> impl FnOnce(std::io::Error) -> MountError + use<> {
    let path = root.join("etc").join(name).display().to_string();
    move |source| MountError::Io { path, source }
}

/// A user namespace that maps 0… to `base`… (`count` ids), to idmap the image's layers: a
/// child unshares one and waits; its host-root parent (the keeper, still outside) writes the
/// maps, keeps a descriptor of the namespace and lets the child exit.
pub fn mapping_userns(base: u32, count: u32) -> Result<std::os::fd::OwnedFd, MountError> {
    use nix::unistd::{ForkResult, pipe, read, write};
    let fail =
        |op: &'static str| move |errno: Errno| MountError::Mount { op, path: "idmap user namespace".into(), errno };
    let (ready_r, ready_w) = pipe().map_err(fail("pipe"))?;
    let (go_r, go_w) = pipe().map_err(fail("pipe"))?;
    match crate::sys::fork_single_threaded().map_err(fail("fork"))? {
        ForkResult::Child => {
            drop((ready_r, go_w));
            let _ = crate::harden::die_with_parent();
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = write(&ready_w, &[u8::from(ok)]);
            let mut b = [0u8; 1];
            let _ = read(&go_r, &mut b);
            std::process::exit(0)
        }
        ForkResult::Parent { child } => {
            drop((ready_w, go_r));
            let result = (|| {
                let mut b = [0u8; 1];
                if read(&ready_r, &mut b).map_err(fail("read"))? != 1 || b[0] != 1 {
                    return Err(MountError::Image("the idmap helper could not create a user namespace".into()));
                }
                let proc = PathBuf::from(format!("/proc/{child}"));
                let map = format!("0 {base} {count}\n");
                for f in ["uid_map", "gid_map"] {
                    fs::write(proc.join(f), &map)
                        .map_err(|source| MountError::Io { path: proc.join(f).display().to_string(), source })?;
                }
                let ns = fs::File::open(proc.join("ns/user"))
                    .map_err(|source| MountError::Io { path: proc.join("ns/user").display().to_string(), source })?;
                Ok(std::os::fd::OwnedFd::from(ns))
            })();
            drop(go_w);
            let _ = nix::sys::wait::waitpid(child, None);
            result
        }
    }
}

/// Entries of the session's /proc that are made read-only (they reach global kernel state).
pub const PROC_READONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];
/// Entries of the session's /proc hidden behind /dev/null: they leak host memory or timing,
/// or (`cmdline`, `config.gz`) describe the host's kernel and its boot. The first ones stay
/// closed by the kernel's own checks when a session's root peels a mask off (docs/security.md);
/// the last two are world-readable kernel-wide, so their mask only keeps them out of casual view.
pub const PROC_MASKED: &[&str] =
    &["kcore", "keys", "timer_list", "sched_debug", "kallsyms", "kpagecount", "kpageflags", "cmdline", "config.gz"];

/// User-namespace phase: fresh proc/sysfs/devpts, the /proc protections, then `pivot_root`.
/// Runs as PID 1 of the session, root in its user namespace, before the old root goes away
/// (the kernel only allows a new proc or sysfs where one is already fully visible).
pub fn finish_in_userns(stage: &Path) -> Result<(), MountError> {
    let none = None::<&str>;
    // The staging tmpfs is locked (it came from the host); a bind of it onto itself gives a
    // mount of our own that pivot_root accepts as the new root.
    mount(Some(stage), stage, none, MsFlags::MS_BIND | MsFlags::MS_REC, none).map_err(merr("bind", stage))?;
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc = stage.join("proc");
    mount(Some("proc"), &proc, Some("proc"), nosuid_nodev_noexec, none).map_err(merr("mount proc on", &proc))?;
    let sys = stage.join("sys");
    // Read-only as a mount, not as a superblock: a read-only superblock would force every
    // nested `mount -t sysfs` (in `unshare -n`) to be read-only too, or be refused. Where the
    // sysfs nsplay sees is itself read-only (a container's), the kernel lets a user namespace
    // mount sysfs only read-only: then it is read-only from the start.
    mount(Some("sysfs"), &sys, Some("sysfs"), nosuid_nodev_noexec, none)
        .or_else(|e| match e {
            Errno::EPERM => mount(Some("sysfs"), &sys, Some("sysfs"), nosuid_nodev_noexec | MsFlags::MS_RDONLY, none),
            e => Err(e),
        })
        .map_err(merr("mount sysfs on", &sys))?;
    let ro = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | nosuid_nodev_noexec;
    mount(none, &sys, none, ro, none).map_err(merr("remount read-only", &sys))?;
    let pts = stage.join("dev/pts");
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(format!("newinstance,ptmxmode=0666,mode=0620,gid=5,max={}", crate::consts::SESSION_PTYS).as_str()),
    )
    .map_err(merr("mount devpts on", &pts))?;
    let mq = stage.join("dev/mqueue");
    mount(Some("mqueue"), &mq, Some("mqueue"), nosuid_nodev_noexec, none).map_err(merr("mount mqueue on", &mq))?;
    for name in PROC_READONLY {
        let p = proc.join(name);
        if p.exists() {
            mount(Some(&p), &p, none, MsFlags::MS_BIND | MsFlags::MS_REC, none).map_err(merr("bind", &p))?;
            let ro = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | nosuid_nodev_noexec;
            mount(none, &p, none, ro, none).map_err(merr("remount read-only", &p))?;
        }
    }
    let null = stage.join("dev/null");
    for name in PROC_MASKED {
        let p = proc.join(name);
        if p.is_file() {
            mount(Some(&null), &p, none, MsFlags::MS_BIND, none).map_err(merr("mask", &p))?;
        }
    }
    // pivot_root(".", ".") stacks the old root under the new one; detaching "." then removes
    // the host's tree from this namespace without needing a directory for it.
    chdir(stage).map_err(merr("chdir", stage))?;
    pivot_root(".", ".").map_err(merr("pivot_root to", stage))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(merr("detach old root", Path::new("/")))?;
    chdir("/").map_err(merr("chdir", Path::new("/")))?;
    Ok(())
}

/// An `O_PATH` descriptor of the root of the session's devpts instance at `/dev/pts` (called by
/// init right after [`finish_in_userns`], before any of the session's code runs), checked to be
/// a devpts. Joiners open new ptys relative to it (see `pty::open_in_session`).
pub fn session_devpts() -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::OFlag;
    let fd = nix::fcntl::open(
        "/dev/pts",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    if nix::sys::statfs::fstatfs(&fd)?.filesystem_type() != nix::sys::statfs::DEVPTS_SUPER_MAGIC {
        return Err(std::io::Error::other("/dev/pts is not a devpts"));
    }
    Ok(fd)
}

/// Validates a hostname for the session (RFC 1123 label, what `sethostname` and people accept).
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn lchown(path: &Path, uid: Option<Uid>, gid: Option<Gid>) -> nix::Result<()> {
    nix::unistd::fchownat(nix::fcntl::AT_FDCWD, path, uid, gid, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeHost(HashMap<&'static str, HostEntry>);
    impl HostView for FakeHost {
        fn entry(&self, path: &Path) -> Option<HostEntry> {
            self.0.get(path.to_str().unwrap()).cloned()
        }
    }

    fn merged_usr_host() -> FakeHost {
        FakeHost(HashMap::from([
            ("/usr", HostEntry::Dir),
            ("/bin", HostEntry::Symlink("usr/bin".into())),
            ("/lib", HostEntry::Symlink("usr/lib".into())),
            ("/lib64", HostEntry::Symlink("usr/lib64".into())),
            ("/sbin", HostEntry::Symlink("usr/sbin".into())),
            ("/etc/ld.so.cache", HostEntry::File),
            ("/etc/alternatives", HostEntry::Dir),
            ("/etc/localtime", HostEntry::Symlink("/usr/share/zoneinfo/Etc/UTC".into())),
            ("/etc/shadow", HostEntry::File),
            ("/etc/machine-id", HostEntry::File),
            ("/etc/ssh", HostEntry::Dir),
        ]))
    }

    fn plan() -> Vec<Step> {
        let limits = Limits { memory_bytes: 256 << 20, pids: 128, cpu: 0.5, disk_bytes: 64 << 20, shm_bytes: 16 << 20 };
        host_plan(&RootfsSpec { hostname: "box", limits: &limits }, &merged_usr_host())
    }

    #[test]
    fn usr_is_bound_read_only_and_bin_links_are_recreated() {
        let plan = plan();
        assert!(plan.contains(&Step::BindRo { path: "usr".into(), source: "/usr".into(), dir: true }));
        assert!(plan.contains(&Step::Symlink { path: "bin".into(), target: "usr/bin".into() }));
        assert!(!plan.iter().any(|s| matches!(s, Step::BindRo { path, .. } if path == "bin")));
    }

    #[test]
    fn nothing_secret_from_etc_is_shared() {
        let plan = plan();
        let shared: Vec<&str> = plan
            .iter()
            .filter_map(|s| match s {
                Step::BindRo { source, .. } => source.to_str(),
                _ => None,
            })
            .collect();
        assert!(shared.contains(&"/etc/ld.so.cache"));
        for secret in ["/etc/shadow", "/etc/machine-id", "/etc/ssh", "/etc/gshadow"] {
            assert!(!shared.contains(&secret), "{secret} must not be shared");
        }
    }

    #[test]
    fn writable_dirs_and_devices_are_planned() {
        let plan = plan();
        for (p, m) in [("tmp", 0o1777), ("var/tmp", 0o1777), ("root", 0o700), ("home", 0o755), ("run", 0o755)] {
            assert!(plan.contains(&Step::Dir { path: p.into(), mode: m }), "{p}");
        }
        let devs: Vec<&str> = plan
            .iter()
            .filter_map(|s| match s {
                Step::BindDev { path, .. } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(devs, ["dev/null", "dev/zero", "dev/full", "dev/random", "dev/urandom", "dev/tty"]);
        let shm = plan.iter().find_map(|s| match s {
            Step::Tmpfs { path: "dev/shm", options, .. } => Some(options.clone()),
            _ => None,
        });
        assert_eq!(shm.as_deref(), Some("mode=1777,size=16777216"));
        // /dev must exist as a tmpfs before anything is created inside it.
        let dev_at = plan.iter().position(|s| matches!(s, Step::Tmpfs { path: "dev", .. })).unwrap();
        let null_at = plan.iter().position(|s| matches!(s, Step::BindDev { .. })).unwrap();
        assert!(dev_at < null_at);
    }

    #[test]
    fn an_image_root_plans_only_dev_and_lives_beside_its_overlay_dirs() {
        let limits = Limits { memory_bytes: 256 << 20, pids: 128, cpu: 0.5, disk_bytes: 64 << 20, shm_bytes: 16 << 20 };
        let plan = image_plan(&RootfsSpec { hostname: "box", limits: &limits });
        assert!(plan.iter().all(|s| match s {
            Step::Tmpfs { path, .. } => path.starts_with("dev"),
            Step::Dir { path, .. } | Step::Symlink { path, .. } | Step::BindDev { path, .. } =>
                path.starts_with("dev/"),
            _ => false,
        }));
        // Nothing of the host's /usr or /etc on an image.
        assert!(!plan.iter().any(|s| matches!(s, Step::BindRo { .. } | Step::File { .. })));
        assert_eq!(session_root(Path::new("/run/nsplay/root"), true), Path::new("/run/nsplay/root/root"));
        assert_eq!(session_root(Path::new("/run/nsplay/root"), false), Path::new("/run/nsplay/root"));
    }

    #[test]
    fn hostname_lands_in_etc() {
        let plan = plan();
        assert!(plan.contains(&Step::File { path: "etc/hostname".into(), contents: "box\n".into(), mode: 0o644 }));
        assert!(valid_hostname("my-new-hostname"));
        assert!(!valid_hostname("bad host"));
        assert!(!valid_hostname("-x"));
        assert!(!valid_hostname(&"a".repeat(64)));
    }
}
