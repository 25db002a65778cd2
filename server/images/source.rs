//! Where an image comes from, read into one shape ([`Resolved`]): its layers (each a blob to
//! open, with the digests it must have), and its configuration. An OCI image layout directory,
//! a `docker save` / `podman save` archive (either the older `manifest.json` form or an OCI
//! layout inside the tar), or (in `registry.rs`) a registry.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};

use super::ImageError;

/// Manifests, indexes and configurations are small; a larger one is refused unread.
pub const MAX_JSON: u64 = 4 << 20;

/// One layer to unpack.
#[derive(Debug, Clone)]
pub struct LayerSource {
    pub file: PathBuf,
    /// The digest of the blob as stored, where the source names it.
    pub blob: Option<String>,
    /// The digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

/// An image read from its source, not yet unpacked.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub layers: Vec<LayerSource>,
    pub config: ImageConfiguration,
    /// The manifest's digest (for `image ls`), where there is one.
    pub manifest_digest: Option<String>,
}

/// Reads a small JSON file, bounded, checking its digest when one is given.
pub fn read_json(path: &Path, digest: Option<&str>) -> Result<Vec<u8>, ImageError> {
    let what = path.display().to_string();
    let f = File::open(path).map_err(|e| ImageError::Source(format!("{what}: {e}")))?;
    let mut buf = Vec::new();
    f.take(MAX_JSON + 1).read_to_end(&mut buf).map_err(|e| ImageError::Source(format!("{what}: {e}")))?;
    if buf.len() as u64 > MAX_JSON {
        return Err(ImageError::Source(format!("{what} is larger than {MAX_JSON} bytes")));
    }
    if let Some(want) = digest {
        let got = format!("sha256:{}", hex::encode(Sha256::digest(&buf)));
        if got != want {
            return Err(ImageError::Digest { what, want: want.to_string(), got });
        }
    }
    Ok(buf)
}

/// `sha256:<64 hex>` → the hex, or an error naming `what`.
pub fn sha256_hex(digest: &str, what: &str) -> Result<String, ImageError> {
    let hex = digest.strip_prefix("sha256:").filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    match hex {
        Some(h) => Ok(h.to_ascii_lowercase()),
        None => Err(ImageError::Source(format!("{what}: {digest:?} is not a sha256 digest"))),
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Source(format!("{what}: {e}")))
}

fn this_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/…`).
pub fn oci_layout(dir: &Path) -> Result<Resolved, ImageError> {
    if !dir.join("oci-layout").is_file() || !dir.join("index.json").is_file() {
        return Err(ImageError::Source(format!(
            "{} is not an OCI image layout (no oci-layout and index.json)",
            dir.display()
        )));
    }
    let blob_path = |digest: &str, what: &str| -> Result<PathBuf, ImageError> {
        Ok(dir.join("blobs/sha256").join(sha256_hex(digest, what)?))
    };
    let mut index: ImageIndex = parse(&read_json(&dir.join("index.json"), None)?, "index.json")?;
    // An index may point to a further index (a multi-platform image): follow up to two.
    for _ in 0..3 {
        let manifests = index.manifests();
        let pick = manifests
            .iter()
            .find(|d| {
                d.platform().as_ref().is_some_and(|p| p.architecture().to_string() == this_arch())
                    || manifests.len() == 1
            })
            .or_else(|| manifests.iter().find(|d| d.platform().is_none()))
            .ok_or_else(|| ImageError::Source(format!("the layout has no manifest for {}", this_arch())))?
            .clone();
        let digest = pick.digest().to_string();
        let bytes = read_json(&blob_path(&digest, "manifest")?, Some(&digest))?;
        if *pick.media_type() == MediaType::ImageIndex {
            index = parse(&bytes, "nested index")?;
            continue;
        }
        let manifest: ImageManifest = parse(&bytes, "manifest")?;
        let cdigest = manifest.config().digest().to_string();
        let config: ImageConfiguration =
            parse(&read_json(&blob_path(&cdigest, "config")?, Some(&cdigest))?, "image config")?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::Source(format!(
                "the manifest has {} layers but the config {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (d, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let blob = d.digest().to_string();
            sha256_hex(diff_id, "diff_id")?;
            layers.push(LayerSource { file: blob_path(&blob, "layer")?, blob: Some(blob), diff_id: diff_id.clone() });
        }
        return Ok(Resolved { layers, config, manifest_digest: Some(digest) });
    }
    Err(ImageError::Source("indexes nested more than three deep".into()))
}

/// The `manifest.json` of a `docker save` archive (the older form).
#[derive(serde::Deserialize)]
struct DockerManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// A `docker save` / `podman save` archive already unpacked (by the store's own careful
/// unpacker) into `dir`.
pub fn docker_archive(dir: &Path) -> Result<Resolved, ImageError> {
    if dir.join("oci-layout").is_file() && dir.join("index.json").is_file() {
        return oci_layout(dir);
    }
    let list: Vec<DockerManifest> = parse(&read_json(&dir.join("manifest.json"), None)?, "manifest.json")?;
    let [m] = list.as_slice() else {
        return Err(ImageError::Source(format!("the archive holds {} images; save exactly one", list.len())));
    };
    // Names inside the archive are relative and were unpacked beneath `dir`; refuse any other.
    let inside = |name: &str| -> Result<PathBuf, ImageError> {
        if name.starts_with('/') || name.split('/').any(|c| c == "..") {
            return Err(ImageError::Source(format!("manifest.json names {name:?} outside the archive")));
        }
        Ok(dir.join(name))
    };
    let config: ImageConfiguration = parse(&read_json(&inside(&m.config)?, None)?, "image config")?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != m.layers.len() {
        return Err(ImageError::Source(format!(
            "manifest.json has {} layers but the config {} diff_ids",
            m.layers.len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    for (name, diff_id) in m.layers.iter().zip(diff_ids) {
        sha256_hex(diff_id, "diff_id")?;
        layers.push(LayerSource { file: inside(name)?, blob: None, diff_id: diff_id.clone() });
    }
    Ok(Resolved { layers, config, manifest_digest: None })
}

/// What `SOURCE` of `nsplay image import` names.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    Layout(PathBuf),
    Archive(PathBuf),
    Registry(String),
}

impl FromStr for SourceKind {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, ImageError> {
        let path = Path::new(s);
        if let Some(rest) = s.strip_prefix("oci:") {
            return Ok(SourceKind::Layout(rest.into()));
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            return Ok(SourceKind::Archive(rest.into()));
        }
        if path.is_dir() {
            return Ok(SourceKind::Layout(path.into()));
        }
        if path.is_file() {
            return Ok(SourceKind::Archive(path.into()));
        }
        if s.starts_with('/') || s.starts_with('.') {
            return Err(ImageError::Source(format!("{s}: no such directory or archive")));
        }
        Ok(SourceKind::Registry(s.to_string()))
    }
}
