//! The image store: OCI images imported once, their layers unpacked into a content-addressed
//! directory under `<data_dir>/images/` and shared between images, for sessions whose root is
//! an image instead of the host's `/usr` (docs/images.md). No HTTP here and no sessions: the
//! store only reads sources (`source.rs`, `registry.rs`), unpacks layers safely (`unpack.rs`),
//! and records images; the sandbox mounts what [`Store::root_for`] hands it.
//!
//! ```text
//! <data_dir>/images/
//!   .lock                   exclusive while an import, rm or gc changes the store
//!   layers/<diff_id hex>/   one unpacked layer, named by the digest of its uncompressed tar
//!   images/<name>.json      an image: its layers (lowest first), Env, WorkingDir, source
//!   images/<name>.lock      held shared by every server that may start sessions on it
//!   tmp/                    imports in progress (renamed into layers/ when verified)
//! ```

pub mod cmd;
pub mod registry;
pub mod source;
pub mod unpack;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use source::{LayerSource, Resolved, SourceKind};
use unpack::Budget;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0:?} is not a valid image name (1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit)")]
    Name(String),
    #[error("no image named {0:?} in the store: import it with `nsplay image import {0} SOURCE`")]
    Unknown(String),
    #[error("an image named {0:?} exists already: `nsplay image rm {0}` first")]
    Exists(String),
    #[error(
        "image {0:?} is in use by a running nsplay server: stop it, or take the image out of its configuration, first"
    )]
    InUse(String),
    #[error("the image store is busy (another import, rm or gc is running); try again when it ends")]
    Busy,
    #[error("the image has {got} layers, more than the {limit} allowed (max_image_layers)")]
    TooManyLayers { got: usize, limit: usize },
    #[error("{what}: digest mismatch, want {want}, got {got} (a corrupt or tampered blob)")]
    Digest { what: String, want: String, got: String },
    #[error("reading the image: {0}")]
    Source(String),
    #[error("layer {layer}: {source}")]
    Unpack { layer: String, source: unpack::UnpackError },
    #[error("registry: {0}")]
    Registry(String),
    #[error("image store {path}: {source}")]
    Io { path: String, source: io::Error },
}

fn ioerr(path: &Path) -> impl FnOnce(io::Error) -> ImageError + use<> {
    let path = path.display().to_string();
    move |source| ImageError::Io { path, source }
}

/// Bounds of one import.
#[derive(Debug, Clone)]
pub struct ImportLimits {
    /// Most bytes an import may unpack (data plus 512 per entry), all layers together.
    pub max_bytes: u64,
    pub max_layers: usize,
    pub registry: registry::RegistryOptions,
}

/// An image in the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    pub name: String,
    /// Where it came from, as given to `import`.
    pub source: String,
    pub manifest_digest: Option<String>,
    /// The diff_ids of its layers, lowest first.
    pub layers: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// Bytes of its uncompressed layers.
    pub size: u64,
}

/// An image's lock held shared: while any server holds it, `rm` refuses the image.
#[derive(Debug)]
pub struct Hold(#[allow(dead_code)] Flock<File>);

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, ImageError> {
        let root = data_dir.join("images");
        for d in ["", "layers", "images", "tmp"] {
            let p = root.join(d);
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&p).map_err(ioerr(&p))?;
        }
        // The layers hold whatever owners and modes the images give; only root may walk in.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).map_err(ioerr(&root))?;
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.root.join("images").join(format!("{name}.json"))
    }

    pub fn layer_dir(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("layers").join(source::sha256_hex(diff_id, "layer")?))
    }

    /// Takes the store's lock; `Busy` if someone else has it.
    fn lock(&self) -> Result<Flock<File>, ImageError> {
        let p = self.root.join(".lock");
        let f = File::options().create(true).truncate(false).write(true).open(&p).map_err(ioerr(&p))?;
        Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|_| ImageError::Busy)
    }

    fn image_lock(&self, name: &str) -> Result<File, ImageError> {
        let p = self.root.join("images").join(format!("{name}.lock"));
        File::options().create(true).truncate(false).write(true).open(&p).map_err(ioerr(&p))
    }

    pub fn get(&self, name: &str) -> Result<ImageRecord, ImageError> {
        if !valid_name(name) {
            return Err(ImageError::Name(name.into()));
        }
        let p = self.record_path(name);
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| ImageError::Source(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ImageError::Unknown(name.into())),
            Err(e) => Err(ioerr(&p)(e)),
        }
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(ioerr(&dir))? {
            let e = e.map_err(ioerr(&dir))?;
            let file = e.file_name();
            let Some(name) = file.to_str().and_then(|n| n.strip_suffix(".json")) else { continue };
            out.push(self.get(name)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Marks `name` as in use by this process until the [`Hold`] drops (a server holds every
    /// image it may start sessions on).
    pub fn hold(&self, name: &str) -> Result<Hold, ImageError> {
        self.get(name)?;
        let f = self.image_lock(name)?;
        let held = Flock::lock(f, FlockArg::LockSharedNonblock).map_err(|_| ImageError::Busy)?;
        // It may have been removed between the check and the lock.
        self.get(name)?;
        Ok(Hold(held))
    }

    /// Removes an image (refused while a server holds it), then its layers no other image uses.
    pub fn remove(&self, name: &str) -> Result<Vec<String>, ImageError> {
        let _store = self.lock()?;
        self.get(name)?;
        let f = self.image_lock(name)?;
        let _held = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|_| ImageError::InUse(name.into()))?;
        let p = self.record_path(name);
        fs::remove_file(&p).map_err(ioerr(&p))?;
        let lock = self.root.join("images").join(format!("{name}.lock"));
        let _ = fs::remove_file(lock);
        self.gc_locked()
    }

    /// Removes every layer no image refers to, and what failed imports left in `tmp/`.
    pub fn gc(&self) -> Result<Vec<String>, ImageError> {
        let _store = self.lock()?;
        self.gc_locked()
    }

    fn gc_locked(&self) -> Result<Vec<String>, ImageError> {
        let mut keep = std::collections::HashSet::new();
        for r in self.list()? {
            for l in &r.layers {
                keep.insert(source::sha256_hex(l, "layer")?);
            }
        }
        let mut removed = Vec::new();
        let layers = self.root.join("layers");
        for e in fs::read_dir(&layers).map_err(ioerr(&layers))? {
            let e = e.map_err(ioerr(&layers))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                // remove_dir_all never follows a symbolic link out of the tree.
                fs::remove_dir_all(e.path()).map_err(ioerr(&e.path()))?;
                removed.push(format!("sha256:{name}"));
            }
        }
        self.clean_tmp()?;
        Ok(removed)
    }

    fn clean_tmp(&self) -> Result<(), ImageError> {
        let tmp = self.root.join("tmp");
        for e in fs::read_dir(&tmp).map_err(ioerr(&tmp))? {
            let e = e.map_err(ioerr(&tmp))?;
            fs::remove_dir_all(e.path()).map_err(ioerr(&e.path()))?;
        }
        Ok(())
    }

    /// A new empty directory under `tmp/`, removed again when the guard drops.
    fn temp_dir(&self, what: &str) -> Result<TempDir, ImageError> {
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(|e| ImageError::Source(format!("getrandom: {e}")))?;
        let p = self.root.join("tmp").join(format!("{what}.{}", hex::encode(rnd)));
        fs::DirBuilder::new().mode(0o755).create(&p).map_err(ioerr(&p))?;
        Ok(TempDir(Some(p)))
    }

    /// Imports `source` as `name`: reads its manifest and config, unpacks each layer the store
    /// does not have yet (verified against both digests, then renamed into `layers/`), and
    /// records the image. On error nothing new stays behind but layers already verified.
    pub fn import(&self, name: &str, source: &str, limits: &ImportLimits) -> Result<ImageRecord, ImageError> {
        if !valid_name(name) {
            return Err(ImageError::Name(name.into()));
        }
        let _store = self.lock()?;
        match self.get(name) {
            Ok(_) => return Err(ImageError::Exists(name.into())),
            Err(ImageError::Unknown(_)) => {}
            Err(e) => return Err(e),
        }
        self.clean_tmp()?;
        let mut budget = Budget { limit: limits.max_bytes, used: 0 };
        // Kept until the import ends: an archive's files are read from here.
        let mut _archive_dir = None;
        let resolved: Resolved = match source.parse::<SourceKind>()? {
            SourceKind::Layout(dir) => source::oci_layout(&dir)?,
            SourceKind::Archive(file) => {
                let tmp = self.temp_dir("archive")?;
                let f = File::open(&file).map_err(ioerr(&file))?;
                let dirfd = File::open(tmp.path()).map_err(ioerr(tmp.path()))?;
                // The archive is itself unpacked with the layer unpacker: its names are no more
                // trusted than a layer's, and its size counts against the same budget.
                unpack::unpack_layer(f, std::os::fd::AsFd::as_fd(&dirfd), &mut budget)
                    .map_err(|source| ImageError::Unpack { layer: file.display().to_string(), source })?;
                let r = source::docker_archive(tmp.path())?;
                _archive_dir = Some(tmp);
                r
            }
            SourceKind::Registry(reference) => {
                let tmp = self.temp_dir("pull")?;
                let r = registry::pull(&reference, tmp.path(), limits)?;
                _archive_dir = Some(tmp);
                r
            }
        };
        if resolved.layers.len() > limits.max_layers {
            return Err(ImageError::TooManyLayers { got: resolved.layers.len(), limit: limits.max_layers });
        }
        let mut size = 0;
        for layer in &resolved.layers {
            size += self.add_layer(layer, &mut budget)?;
        }
        let cfg = resolved.config.config().clone().unwrap_or_default();
        let record = ImageRecord {
            name: name.into(),
            source: source.into(),
            manifest_digest: resolved.manifest_digest,
            layers: resolved.layers.iter().map(|l| l.diff_id.clone()).collect(),
            env: cfg.env().clone().unwrap_or_default(),
            working_dir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
            size,
        };
        let p = self.record_path(name);
        let tmp = p.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(&record).map_err(|e| ImageError::Source(e.to_string()))?;
        fs::write(&tmp, json).map_err(ioerr(&tmp))?;
        fs::rename(&tmp, &p).map_err(ioerr(&p))?;
        Ok(record)
    }

    /// Unpacks one layer unless the store has it; returns the bytes of its uncompressed tar
    /// (0 when it was there already).
    fn add_layer(&self, layer: &LayerSource, budget: &mut Budget) -> Result<u64, ImageError> {
        let dest = self.layer_dir(&layer.diff_id)?;
        if dest.is_dir() {
            return Ok(0);
        }
        let tmp = self.temp_dir("layer")?;
        let f = File::open(&layer.file).map_err(ioerr(&layer.file))?;
        let dirfd = File::open(tmp.path()).map_err(ioerr(tmp.path()))?;
        let got = unpack::unpack_layer(f, std::os::fd::AsFd::as_fd(&dirfd), budget)
            .map_err(|source| ImageError::Unpack { layer: layer.diff_id.clone(), source })?;
        if let Some(want) = &layer.blob
            && *want != got.blob
        {
            return Err(ImageError::Digest { what: format!("layer blob {want}"), want: want.clone(), got: got.blob });
        }
        if got.diff_id != layer.diff_id {
            return Err(ImageError::Digest {
                what: "layer (uncompressed)".into(),
                want: layer.diff_id.clone(),
                got: got.diff_id,
            });
        }
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).map_err(ioerr(tmp.path()))?;
        fs::rename(tmp.path(), &dest).map_err(ioerr(&dest))?;
        tmp.keep();
        Ok(got.size)
    }

    /// What the sandbox needs to build a session root on `name`.
    pub fn root_for(&self, name: &str) -> Result<nsplay_sandbox::ImageRoot, ImageError> {
        let r = self.get(name)?;
        let layers = r.layers.iter().map(|l| self.layer_dir(l)).collect::<Result<Vec<_>, _>>()?;
        Ok(nsplay_sandbox::ImageRoot { layers, env: r.env, working_dir: r.working_dir })
    }
}

/// The images a server may start sessions on, read from the store under `data_dir`, each
/// held (so `nsplay image rm` refuses it) for as long as the returned holds live. No names:
/// the store is not even opened.
pub fn load_for_server(
    data_dir: &Path,
    names: &[String],
) -> Result<(std::collections::HashMap<String, nsplay_sandbox::ImageRoot>, Vec<Hold>), ImageError> {
    let mut roots = std::collections::HashMap::new();
    let mut holds = Vec::new();
    if names.is_empty() {
        return Ok((roots, holds));
    }
    let store = Store::open(data_dir)?;
    for n in names {
        holds.push(store.hold(n)?);
        let root = store.root_for(n)?;
        for l in &root.layers {
            if !l.is_dir() {
                return Err(ImageError::Source(format!(
                    "image {n}: layer {} is missing from the store; import the image again",
                    l.display()
                )));
            }
        }
        roots.insert(n.clone(), root);
    }
    Ok((roots, holds))
}

/// A directory under `tmp/` removed when dropped, unless kept.
struct TempDir(Option<PathBuf>);

impl TempDir {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("a temp dir not yet kept")
    }
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_are_plain() {
        for ok in ["busybox", "a", "deb-12.1_x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-x", "A", "a/b", "..", ".x", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
