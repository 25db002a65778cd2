//! Unpacks one layer (a tar stream, plain, gzip- or zstd-compressed) into a new directory of the store,
//! never outside it. Every path of an entry is walked one component at a time from the
//! layer's directory descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, and every entry is created with an `*at` call
//! relative to its parent's descriptor, never through a joined path string: a `../` or
//! absolute name, a symbolic link on the way to a file, or a hard link naming something
//! outside the layer is refused with the entry's name.
//!
//! Whiteouts are turned into overlayfs's own form, because the session root is an overlay
//! mounted by host root (see docs/images.md): `.wh.NAME` becomes a character device 0/0 named
//! `NAME`, `.wh..wh..opq` the `trusted.overlay.opaque=y` attribute of its directory. Device
//! nodes are skipped, extended attributes and capabilities dropped, owners kept (the sessions
//! see them through an idmapped mount).

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, XattrFlags};
use sha2::{Digest, Sha256};

/// Highest uid or gid a layer may give a file: sessions map 65536 ids.
pub const MAX_ID: u64 = 65535;
/// What one entry costs against the size budget besides its data (its inode and header).
const ENTRY_COST: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {path:?} refused: {why}")]
    Refused { path: String, why: &'static str },
    #[error("layer entry {path:?}: {source}")]
    Io { path: String, source: io::Error },
    #[error("reading the layer: {0}")]
    Read(#[source] io::Error),
    #[error("the image needs more than the {limit} bytes allowed (max_image_size); raise it or pick a smaller image")]
    TooLarge { limit: u64 },
}

/// Largest zstd window a layer may use (2^27 = 128 MiB of memory while it is unpacked).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// What an import may still write, shared by all of its layers.
#[derive(Debug)]
pub struct Budget {
    pub limit: u64,
    pub used: u64,
}

impl Budget {
    fn take(&mut self, n: u64) -> Result<(), UnpackError> {
        self.used = self.used.saturating_add(n);
        if self.used > self.limit { Err(UnpackError::TooLarge { limit: self.limit }) } else { Ok(()) }
    }
}

/// The digests of one unpacked layer: of the blob as stored and of the uncompressed tar.
#[derive(Debug, Clone, PartialEq)]
pub struct Digests {
    pub blob: String,
    pub diff_id: String,
    /// Bytes of the uncompressed tar.
    pub size: u64,
}

/// Hashes (and counts) what passes through; fails past `limit` bytes (a decompression bomb
/// stops here, not when the disk is full).
struct Hashing<'a, R> {
    inner: R,
    hash: &'a mut Sha256,
    count: u64,
    limit: u64,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, "over the image size limit"));
        }
        Ok(n)
    }
}

fn hex_digest(h: Sha256) -> String {
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Unpacks the layer read from `blob` into the (empty) directory `dir`. The caller checks the
/// digests and removes `dir` on any error.
pub fn unpack_layer(blob: impl Read, dir: BorrowedFd<'_>, budget: &mut Budget) -> Result<Digests, UnpackError> {
    let mut blob_hash = Sha256::new();
    let mut diff_hash = Sha256::new();
    let size;
    {
        let mut raw = BufReader::new(Hashing { inner: blob, hash: &mut blob_hash, count: 0, limit: budget.limit });
        let magic = raw.fill_buf().map_err(UnpackError::Read)?;
        let decoded: Box<dyn Read + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(raw))
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            // zstd (`tar+zstd` layers; every frame of the blob, as for gzip's members). A frame
            // may ask for a window of up to 2 GiB; past 128 MiB (zstd's own default) it fails.
            let mut z = zstd::stream::read::Decoder::with_buffer(raw).map_err(UnpackError::Read)?;
            z.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(UnpackError::Read)?;
            Box::new(z)
        } else {
            Box::new(raw)
        };
        let left = budget.limit.saturating_sub(budget.used);
        let tar_stream = Hashing { inner: decoded, hash: &mut diff_hash, count: 0, limit: left };
        let mut archive = tar::Archive::new(tar_stream);
        unpack_entries(&mut archive, dir, budget).map_err(|e| match e {
            UnpackError::Read(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                UnpackError::TooLarge { limit: budget.limit }
            }
            e => e,
        })?;
        // The digests cover the whole stream, padding after the end of the archive included.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| {
            if e.kind() == io::ErrorKind::FileTooLarge {
                UnpackError::TooLarge { limit: budget.limit }
            } else {
                UnpackError::Read(e)
            }
        })?;
        size = rest.count;
    }
    Ok(Digests { blob: hex_digest(blob_hash), diff_id: hex_digest(diff_hash), size })
}

/// The components of an entry's name, or why it is refused. `./` prefixes and empty parts are
/// dropped; the layer's root itself is an empty list.
fn components(raw: &[u8]) -> Result<Vec<&OsStr>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path with `..`"),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV
}

/// No `O_NOFOLLOW`: `RESOLVE_NO_SYMLINKS` refuses a link in the last component too, and says so
/// (`ELOOP`, where `O_NOFOLLOW | O_DIRECTORY` would say "not a directory").
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// Opens the directory `comps` beneath `root`, creating missing ones (mode 0755) if `create`.
fn open_dir(root: BorrowedFd<'_>, comps: &[&OsStr], create: bool, path: &str) -> Result<OwnedFd, UnpackError> {
    let refused = |why| UnpackError::Refused { path: path.to_string(), why };
    let io = |e: rustix::io::Errno| UnpackError::Io { path: path.to_string(), source: e.into() };
    let mut cur = rustix::fs::openat2(root, ".", dir_flags(), Mode::empty(), beneath()).map_err(io)?;
    for c in comps {
        let next = match rustix::fs::openat2(&cur, *c, dir_flags(), Mode::empty(), beneath()) {
            Err(rustix::io::Errno::NOENT) if create => {
                rustix::fs::mkdirat(&cur, *c, Mode::from_raw_mode(0o755)).map_err(io)?;
                rustix::fs::openat2(&cur, *c, dir_flags(), Mode::empty(), beneath())
            }
            r => r,
        };
        cur = match next {
            Ok(fd) => fd,
            Err(rustix::io::Errno::LOOP) => return Err(refused("it goes through a symbolic link")),
            Err(rustix::io::Errno::NOTDIR) => return Err(refused("a parent is not a directory")),
            Err(rustix::io::Errno::XDEV) => return Err(refused("it leaves the layer")),
            Err(rustix::io::Errno::NOENT) => return Err(refused("it names something not in this layer")),
            Err(e) => return Err(io(e)),
        };
    }
    Ok(cur)
}

/// Removes `name` in `parent` if it is there and not a directory (a later entry of a layer
/// replaces an earlier one).
fn clear(parent: &OwnedFd, name: &OsStr, path: &str) -> Result<(), UnpackError> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(rustix::io::Errno::ISDIR) => {
            Err(UnpackError::Refused { path: path.to_string(), why: "it replaces a directory of the same layer" })
        }
        Err(e) => Err(UnpackError::Io { path: path.to_string(), source: e.into() }),
    }
}

fn unpack_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    root: BorrowedFd<'_>,
    budget: &mut Budget,
) -> Result<(), UnpackError> {
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        let raw = entry.path_bytes().into_owned();
        let path = String::from_utf8_lossy(&raw).into_owned();
        let header = entry.header();
        let size = header.entry_size().map_err(UnpackError::Read)?;
        budget.take(ENTRY_COST.saturating_add(size))?;
        let comps = components(&raw).map_err(|why| UnpackError::Refused { path: path.clone(), why })?;
        let kind = header.entry_type();
        let mode = Mode::from_raw_mode(header.mode().map_err(UnpackError::Read)? & 0o7777);
        let (uid, gid) = (header.uid().map_err(UnpackError::Read)?, header.gid().map_err(UnpackError::Read)?);
        if uid > MAX_ID || gid > MAX_ID {
            return Err(UnpackError::Refused { path, why: "owner outside the 65536 ids a session maps" });
        }
        let owner = (rustix::fs::Uid::from_raw(uid as u32), rustix::fs::Gid::from_raw(gid as u32));
        let io = |source: rustix::io::Errno| UnpackError::Io { path: path.clone(), source: source.into() };
        let Some((name, parents)) = comps.split_last() else {
            // The layer's root directory itself: the store's directory stands for it.
            continue;
        };
        let name_bytes = name.as_bytes();
        if name_bytes.starts_with(b".wh.") {
            let parent = open_dir(root, parents, true, &path)?;
            if name_bytes == b".wh..wh..opq" {
                rustix::fs::fsetxattr(&parent, "trusted.overlay.opaque", b"y", XattrFlags::empty()).map_err(io)?;
            } else if name_bytes.starts_with(b".wh..wh.") {
                // aufs bookkeeping (`.wh..wh.plnk` and the like): nothing for overlayfs.
            } else {
                let hidden = OsStr::from_bytes(&name_bytes[4..]);
                if hidden.is_empty() || hidden == "." || hidden == ".." {
                    return Err(UnpackError::Refused { path, why: "whiteout of no name" });
                }
                clear(&parent, hidden, &path)?;
                rustix::fs::mknodat(
                    &parent,
                    hidden,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(io)?;
            }
            continue;
        }
        let parent = open_dir(root, parents, true, &path)?;
        match kind {
            tar::EntryType::Directory => {
                match rustix::fs::openat2(&parent, *name, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty(), beneath()) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::NOENT) => rustix::fs::mkdirat(&parent, *name, mode).map_err(io)?,
                    Err(e) => return Err(io(e)),
                }
                let dir = open_dir(parent.as_fd(), &[name], false, &path)?;
                rustix::fs::fchmod(&dir, mode).map_err(io)?;
                rustix::fs::fchown(&dir, Some(owner.0), Some(owner.1)).map_err(io)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear(&parent, name, &path)?;
                let fd = rustix::fs::openat2(
                    &parent,
                    *name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                    beneath(),
                )
                .map_err(io)?;
                let mut file = std::fs::File::from(fd);
                io::copy(&mut entry, &mut file).map_err(UnpackError::Read)?;
                rustix::fs::fchown(&file, Some(owner.0), Some(owner.1)).map_err(io)?;
                // After the chown, which clears set-id bits.
                rustix::fs::fchmod(&file, mode).map_err(io)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(UnpackError::Refused { path: path.clone(), why: "symbolic link without a target" })?
                    .into_owned();
                clear(&parent, name, &path)?;
                // The target is only text: nothing here ever follows a link.
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, *name).map_err(io)?;
                rustix::fs::chownat(&parent, *name, Some(owner.0), Some(owner.1), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(UnpackError::Refused { path: path.clone(), why: "hard link without a target" })?
                    .into_owned();
                let tcomps = components(&target)
                    .map_err(|why| UnpackError::Refused { path: path.clone(), why: hard_link_why(why) })?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(UnpackError::Refused { path, why: "hard link to the layer's root" });
                };
                let tparent = open_dir(root, tparents, false, &path)?;
                clear(&parent, name, &path)?;
                match rustix::fs::linkat(&tparent, *tname, &parent, *name, AtFlags::empty()) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::NOENT) => {
                        return Err(UnpackError::Refused { path, why: "hard link to a file not in this layer" });
                    }
                    Err(rustix::io::Errno::PERM) => {
                        return Err(UnpackError::Refused { path, why: "hard link to a directory" });
                    }
                    Err(e) => return Err(io(e)),
                }
            }
            tar::EntryType::Fifo => {
                clear(&parent, name, &path)?;
                rustix::fs::mknodat(&parent, *name, FileType::Fifo, mode, 0).map_err(io)?;
                rustix::fs::chownat(&parent, *name, Some(owner.0), Some(owner.1), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io)?;
            }
            // Device nodes are skipped (a session's /dev is nsplay's); anything else (sockets,
            // sparse-file or volume headers) has no place in a root filesystem.
            _ => {}
        }
    }
    Ok(())
}

fn hard_link_why(why: &'static str) -> &'static str {
    match why {
        "absolute path" => "hard link to an absolute path (outside the layer)",
        _ => "hard link with `..` (outside the layer)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_and_escapes_refused() {
        assert_eq!(components(b"./usr//bin/").unwrap(), ["usr", "bin"]);
        assert!(components(b"./").unwrap().is_empty());
        assert_eq!(components(b"/etc/passwd"), Err("absolute path"));
        assert_eq!(components(b"a/../../x"), Err("path with `..`"));
        assert_eq!(components(b"..").unwrap_err(), "path with `..`");
    }
}
