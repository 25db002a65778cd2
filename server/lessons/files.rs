//! Reading files the server does not control, without following them anywhere else: a lesson's
//! images beneath its directory (`RESOLVE_BENEATH`: no `..`, no absolute path, no symlink out),
//! and a session's files under its root as the session sees it (`/proc/<pid>/root` with
//! `RESOLVE_IN_ROOT`: the session's symlinks resolve inside its root, never the host's). Every
//! open is `openat2` from a directory descriptor, non-blocking (a FIFO cannot hold the server),
//! of regular files only, and every read is bounded.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
use nix::sys::stat::{Mode, SFlag, fstat};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FileError {
    #[error("no such file")]
    NotFound,
    #[error("the path leaves its directory or is not allowed")]
    Refused,
    #[error("not a regular file")]
    NotRegular,
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    #[error("cannot read: {0}")]
    Io(String),
}

impl From<nix::Error> for FileError {
    fn from(e: nix::Error) -> Self {
        match e {
            nix::Error::ENOENT | nix::Error::ENOTDIR => FileError::NotFound,
            // What openat2 answers for a path that would leave the directory.
            nix::Error::EXDEV | nix::Error::ELOOP => FileError::Refused,
            e => FileError::Io(e.desc().to_string()),
        }
    }
}

/// `url` as a path beside the lesson (`img/a.png`), or `None` when it is anything else: an
/// address with a scheme, an absolute path, a `..`, a hidden or empty component.
pub fn relative(url: &str) -> Option<String> {
    let url = url.trim();
    if url.is_empty() || url.starts_with('/') || url.contains(':') || url.contains('\\') || url.len() > 255 {
        return None;
    }
    let ok = url.split('/').all(|c| {
        !c.is_empty()
            && !c.starts_with('.')
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    });
    ok.then(|| url.to_string())
}

/// The media types a lesson may ship beside it (by extension).
pub fn image_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}

fn read_bounded(fd: OwnedFd, max: u64) -> Result<Vec<u8>, FileError> {
    let st = fstat(&fd)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(FileError::NotRegular);
    }
    let mut out = Vec::new();
    std::fs::File::from(fd).take(max + 1).read_to_end(&mut out).map_err(|e| FileError::Io(e.to_string()))?;
    if out.len() as u64 > max {
        return Err(FileError::TooLarge(max));
    }
    Ok(out)
}

fn how(resolve: ResolveFlag) -> OpenHow {
    OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(resolve | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Reads `rel` (see [`relative`]) beneath `dir`, at most `max` bytes.
pub fn read_beneath(dir: &Path, rel: &str, max: u64) -> Result<Vec<u8>, FileError> {
    let rel = relative(rel).ok_or(FileError::Refused)?;
    let dirfd = open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let fd = openat2(&dirfd, rel.as_str(), how(ResolveFlag::RESOLVE_BENEATH))?;
    read_bounded(fd, max)
}

/// The root directory process `pid` sees (its mount namespace's, after its chroot).
pub fn root_of(pid: i32) -> Result<OwnedFd, FileError> {
    Ok(open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Reads `path` as resolved inside `root` (a descriptor from [`root_of`]): `..` and symlinks
/// stop at that root. At most `max` bytes.
pub fn read_in_root(root: &OwnedFd, path: &str, max: u64) -> Result<Vec<u8>, FileError> {
    if path.is_empty() || path.contains('\0') {
        return Err(FileError::Refused);
    }
    let fd = openat2(root, path, how(ResolveFlag::RESOLVE_IN_ROOT))?;
    read_bounded(fd, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_beside_the_lesson() {
        assert_eq!(relative("img/a.png").as_deref(), Some("img/a.png"));
        for bad in
            ["/etc/passwd", "../x.png", "a/../../x.png", "https://e.com/a.png", "javascript:x", ".git/x", "a//b", ""]
        {
            assert_eq!(relative(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_stay_beneath_the_directory_and_in_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.png"), b"png").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("sub/out.png")).unwrap();
        std::os::unix::fs::symlink("../a.png", d.path().join("sub/in.png")).unwrap();
        assert_eq!(read_beneath(d.path(), "a.png", 10).unwrap(), b"png");
        assert_eq!(read_beneath(d.path(), "sub/in.png", 10).unwrap(), b"png");
        assert_eq!(read_beneath(d.path(), "sub/out.png", 10), Err(FileError::Refused));
        assert_eq!(read_beneath(d.path(), "../x.png", 10), Err(FileError::Refused));
        assert_eq!(read_beneath(d.path(), "a.png", 2), Err(FileError::TooLarge(2)));
        assert_eq!(read_beneath(d.path(), "sub", 10), Err(FileError::NotRegular));
        // In a root, an absolute symlink resolves inside it: here to the tempdir's own a.png.
        std::os::unix::fs::symlink("/a.png", d.path().join("abs")).unwrap();
        let root = open(d.path(), OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        assert_eq!(read_in_root(&root, "/sub/../../../abs", 10).unwrap(), b"png");
        assert_eq!(read_in_root(&root, "/sub", 10), Err(FileError::NotRegular));
        // A FIFO is refused without blocking.
        nix::unistd::mkfifo(&d.path().join("fifo"), Mode::S_IRWXU).unwrap();
        assert_eq!(read_in_root(&root, "/fifo", 10), Err(FileError::NotRegular));
    }
}
