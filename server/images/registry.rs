//! Pulling an image from a registry through `oci-client` (the OCI distribution API): its
//! manifest (the one for this machine's platform from an index), config and layer blobs, into
//! a temporary directory of the store, each blob bounded by the import's size limit. The
//! blobs are then unpacked and verified like those of a layout. Plain HTTP only for loopback
//! registries and those named in `insecure_registries`; credentials from a
//! `docker login`-style JSON file (`{"auths": {"host:port": {"auth": base64("user:pass")}}}`).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::AsyncWrite;

use super::source::{LayerSource, Resolved, sha256_hex};
use super::{ImageError, ImportLimits};

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host:port`) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// A `docker login`-style credentials file.
    pub auth_file: Option<PathBuf>,
}

fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The credentials for `registry` from `file`, or anonymous.
fn auth_for(registry: &str, file: Option<&Path>) -> Result<RegistryAuth, ImageError> {
    let Some(file) = file else { return Ok(RegistryAuth::Anonymous) };
    let bytes = super::source::read_json(file, None)?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Registry(format!("{}: {e}", file.display())))?;
    let Some(entry) = v.get("auths").and_then(|a| a.get(registry)) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) else {
        return Err(ImageError::Registry(format!("{}: auths.{registry} has no \"auth\"", file.display())));
    };
    let decoded =
        base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ImageError::Registry(format!("{}: auths.{registry}.auth is not base64", file.display())))?;
    let (user, pass) = decoded.split_once(':').ok_or_else(|| {
        ImageError::Registry(format!("{}: auths.{registry}.auth is not base64 of user:password", file.display()))
    })?;
    Ok(RegistryAuth::Basic(user.into(), pass.into()))
}

/// An `AsyncWrite` to a file that fails past `left` bytes.
struct Bounded {
    file: tokio::fs::File,
    left: u64,
}

impl AsyncWrite for Bounded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if buf.len() as u64 > self.left {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "the blob is larger than max_image_size",
            )));
        }
        let r = Pin::new(&mut self.file).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.left -= n as u64;
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

/// Pulls `reference` into `dir` (blobs only; unpacking is the store's).
pub fn pull(reference: &str, dir: &Path, limits: &ImportLimits) -> Result<Resolved, ImageError> {
    let image: Reference = reference.parse().map_err(|e| {
        ImageError::Registry(format!("{reference:?} is not an image reference (host:port/name:tag or @sha256:…): {e}"))
    })?;
    let registry = image.resolve_registry().to_string();
    let mut insecure = limits.registry.insecure.clone();
    if is_loopback(&registry) {
        insecure.push(registry.clone());
    }
    let auth = auth_for(&registry, limits.registry.auth_file.as_deref())?;
    let config = ClientConfig { protocol: ClientProtocol::HttpsExcept(insecure), ..Default::default() };
    let client = Client::new(config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImageError::Registry(format!("starting the runtime: {e}")))?;
    let reg = |e: oci_client::errors::OciDistributionError| ImageError::Registry(format!("{registry}: {e}"));
    rt.block_on(async {
        let (manifest, digest, config_json) = client.pull_manifest_and_config(&image, &auth).await.map_err(reg)?;
        if manifest.layers.len() > limits.max_layers {
            return Err(ImageError::TooManyLayers { got: manifest.layers.len(), limit: limits.max_layers });
        }
        let config: oci_spec::image::ImageConfiguration = serde_json::from_str(&config_json)
            .map_err(|e| ImageError::Registry(format!("{reference}: image config: {e}")))?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::Source(format!(
                "the manifest has {} layers but the config {} diff_ids",
                manifest.layers.len(),
                diff_ids.len()
            )));
        }
        let mut left = limits.max_bytes;
        let mut layers = Vec::new();
        for (d, diff_id) in manifest.layers.iter().zip(diff_ids) {
            if d.size < 0 || d.size as u64 > left {
                return Err(ImageError::Unpack {
                    layer: d.digest.clone(),
                    source: super::unpack::UnpackError::TooLarge { limit: limits.max_bytes },
                });
            }
            let file = dir.join(sha256_hex(&d.digest, "layer")?);
            let out = tokio::fs::File::create(&file)
                .await
                .map_err(|e| ImageError::Io { path: file.display().to_string(), source: e })?;
            let mut out = Bounded { file: out, left };
            client.pull_blob(&image, d, &mut out).await.map_err(reg)?;
            left = out.left;
            layers.push(LayerSource { file, blob: Some(d.digest.clone()), diff_id });
        }
        Ok(Resolved { layers, config, manifest_digest: Some(digest) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_registries_are_plain_http_by_default() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(!is_loopback("registry.example:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
