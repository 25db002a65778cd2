//! Root filesystems from OCI images (docs/images.md): images the tests build themselves from
//! Debian's `busybox-static` as OCI layouts of several layers (one whites out a lower file,
//! one makes a directory opaque, one adds a tool), a `docker save`-style archive, a registry
//! (Debian's `docker-registry` on 127.0.0.1, pushed to with `skopeo`), hostile layers that try
//! to write outside the store, and sessions on an image through `nsplay run` and the server.
//! Runs as root; fails, never skips, without it or without the packages tests/run.sh installs.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{BIN, Instance, Server, host_mount_count, wait_until};
use sha2::{Digest, Sha256};

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "id", "dd", "rm", "mkdir", "touch", "stat", "hostname", "grep", "test", "true", "pwd",
    "env", "mount", "umount", "df", "mknod", "wc", "head", "readlink", "tail", "tr",
];

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One entry of a test layer.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
    /// Raw name bytes, for names the tar crate would refuse to write (`../x`, `/x`).
    RawFile(&'a [u8], &'a [u8]),
    RawHard(&'a str, &'a [u8]),
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn raw_name(h: &mut tar::Header, name: &[u8]) {
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name = [0; 100];
    gnu.name[..name.len()].copy_from_slice(name);
}

fn raw_link(h: &mut tar::Header, name: &[u8]) {
    let gnu = h.as_gnu_mut().unwrap();
    gnu.linkname = [0; 100];
    gnu.linkname[..name.len()].copy_from_slice(name);
}

/// An uncompressed layer tar.
fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(p) => {
                let mut h = header(tar::EntryType::Directory, 0, 0o755);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            E::File(p, data, mode) => {
                let mut h = header(tar::EntryType::Regular, data.len() as u64, *mode);
                b.append_data(&mut h, p, *data).unwrap();
            }
            E::Link(p, target) => {
                let mut h = header(tar::EntryType::Symlink, 0, 0o777);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::Hard(p, target) => {
                let mut h = header(tar::EntryType::Link, 0, 0o644);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::RawFile(name, data) => {
                let mut h = header(tar::EntryType::Regular, data.len() as u64, 0o644);
                raw_name(&mut h, name);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            E::RawHard(name, target) => {
                let mut h = header(tar::EntryType::Link, 0, 0o644);
                raw_name(&mut h, name.as_bytes());
                raw_link(&mut h, target);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(data).unwrap();
    g.finish().unwrap()
}

/// How a layout's layer blobs are stored.
#[derive(Clone, Copy, PartialEq)]
enum Pack {
    Plain,
    Gzip,
    Zstd,
}

/// Writes an OCI image layout at `dir` with `layers` (uncompressed tars; each stored as
/// `pack` says), and the config's Env and WorkingDir. Returns the layer blobs' paths.
fn write_layout(dir: &Path, layers: &[Vec<u8>], pack: Pack, env: &[&str], workdir: &str) -> Vec<PathBuf> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, PathBuf) {
        let d = sha(bytes);
        let p = blobs.join(d.strip_prefix("sha256:").unwrap());
        std::fs::write(&p, bytes).unwrap();
        (d, p)
    };
    let mut descs = Vec::new();
    let mut paths = Vec::new();
    for l in layers {
        let (blob, media) = match pack {
            Pack::Plain => (l.clone(), "application/vnd.oci.image.layer.v1.tar"),
            Pack::Gzip => (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip"),
            Pack::Zstd => (zstd::encode_all(&l[..], 3).unwrap(), "application/vnd.oci.image.layer.v1.tar+zstd"),
        };
        let (d, p) = put(&blob);
        descs.push(serde_json::json!({"mediaType": media, "digest": d, "size": blob.len()}));
        paths.push(p);
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": env, "WorkingDir": workdir},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let (cd, _) = put(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": descs,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let (md, _) = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "test"}}],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
    paths
}

/// The test image's three layers: busybox with its applets, a passwd, a file and a directory
/// to hide later; whiteout + opaque directory; a tool.
fn test_layers() -> Vec<Vec<u8>> {
    let busybox = std::fs::read(BUSYBOX).expect("Debian's busybox-static (tests/run.sh installs it)");
    let links: Vec<String> = APPLETS.iter().map(|a| format!("bin/{a}")).collect();
    let mut base = vec![
        E::Dir("bin"),
        E::File("bin/busybox", &busybox, 0o755),
        E::Dir("etc"),
        E::File("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644),
        E::File("etc/group", b"root:x:0:\n", 0o644),
        E::File("etc/removed.txt", b"you should not see me\n", 0o644),
        E::Dir("opt"),
        E::Dir("opt/dir"),
        E::File("opt/dir/a", b"a\n", 0o644),
        E::File("opt/dir/b", b"b\n", 0o644),
        E::Hard("opt/a-again", "opt/dir/a"),
        E::Dir("root"),
    ];
    for l in &links {
        base.push(E::Link(l, "busybox"));
    }
    let whiteouts = vec![
        E::File("etc/.wh.removed.txt", b"", 0o644),
        E::File("opt/dir/.wh..wh..opq", b"", 0o644),
        E::File("opt/dir/c", b"c\n", 0o644),
    ];
    let tool = vec![
        E::Dir("usr"),
        E::Dir("usr/bin"),
        E::File("usr/bin/hello", b"#!/bin/sh\necho hello-from-the-image\n", 0o755),
    ];
    vec![layer(&base), layer(&whiteouts), layer(&tool)]
}

fn build_test_image(dir: &Path) -> Vec<PathBuf> {
    write_layout(dir, &test_layers(), Pack::Gzip, &["PATH=/usr/bin:/bin", "IMAGE_MARK=layered"], "/opt")
}

fn nsplay(args: &[&str]) -> (String, i32) {
    let out = Command::new(BIN).args(args).stdin(Stdio::null()).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (text, out.status.code().unwrap_or(-1))
}

fn import(data: &Path, name: &str, source: &str, extra: &[&str]) -> (String, i32) {
    let d = data.display().to_string();
    let mut a = vec!["image", "import", name, source, "--data-dir", &d];
    a.extend_from_slice(extra);
    nsplay(&a)
}

/// Every file and directory under `dir`, relative.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Builds the test image and imports it into `inst`'s store as `name`; returns the data dir.
fn imported(inst: &Instance, name: &str) -> PathBuf {
    let layout = inst.state.path().join("layout");
    if !layout.exists() {
        build_test_image(&layout);
    }
    let data = inst.state.path().join("data");
    let (out, code) = import(&data, name, layout.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{out}");
    data
}

#[test]
fn an_oci_layout_imports_once_and_its_layers_are_shared_and_collected() {
    let inst = Instance::new();
    let layout = inst.state.path().join("layout");
    build_test_image(&layout);
    let data = inst.state.path().join("data");
    let (out, code) = import(&data, "bb", layout.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported bb (3 layers"), "{out}");
    let layers = data.join("images/layers");
    assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 3);
    // Converted whiteouts: a 0/0 character device and the opaque attribute.
    let store_layer = |i: usize| layers.join(sha(&test_layers()[i]).strip_prefix("sha256:").unwrap());
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let wh = std::fs::symlink_metadata(store_layer(1).join("etc/removed.txt")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "{wh:?}");
    let opq = Command::new("getfattr")
        .args(["-n", "trusted.overlay.opaque", "--only-values"])
        .arg(store_layer(1).join("opt/dir"))
        .output()
        .expect("getfattr (Debian's attr, tests/run.sh installs it)");
    assert_eq!(String::from_utf8_lossy(&opq.stdout), "y", "{opq:?}");
    // A hard link stays one inode.
    let (a, b) = (
        std::fs::metadata(store_layer(0).join("opt/dir/a")).unwrap(),
        std::fs::metadata(store_layer(0).join("opt/a-again")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());
    // The same name again is refused; another name shares every layer.
    let (out, code) = import(&data, "bb", layout.to_str().unwrap(), &[]);
    assert_ne!(code, 0);
    assert!(out.contains("exists already"), "{out}");
    let (out, code) = import(&data, "bb2", &format!("oci:{}", layout.display()), &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 3, "layers are shared");
    let (ls, code) = nsplay(&["image", "ls", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{ls}");
    assert!(ls.contains("bb ") && ls.contains("bb2 "), "{ls}");
    let (out, code) = nsplay(&["image", "rm", "bb", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 3, "bb2 still uses them");
    let (out, code) = nsplay(&["image", "rm", "bb2", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 0, "unreferenced layers are collected");
    let (out, _) = nsplay(&["image", "rm", "bb2", "--data-dir", data.to_str().unwrap()]);
    assert!(out.contains("no image named \"bb2\""), "{out}");
}

#[test]
fn a_docker_save_archive_imports() {
    let inst = Instance::new();
    let dir = inst.state.path().join("archive");
    std::fs::create_dir_all(&dir).unwrap();
    let layers = test_layers();
    let mut b = tar::Builder::new(Vec::new());
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let name = format!("{i}/layer.tar");
        let mut h = header(tar::EntryType::Regular, l.len() as u64, 0o644);
        b.append_data(&mut h, &name, l.as_slice()).unwrap();
        names.push(name);
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Env": ["A=1"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}}))
    .unwrap();
    let mut h = header(tar::EntryType::Regular, config.len() as u64, 0o644);
    b.append_data(&mut h, "config.json", config.as_slice()).unwrap();
    let manifest =
        serde_json::to_vec(&serde_json::json!([{"Config": "config.json", "RepoTags": ["t:1"], "Layers": names}]))
            .unwrap();
    let mut h = header(tar::EntryType::Regular, manifest.len() as u64, 0o644);
    b.append_data(&mut h, "manifest.json", manifest.as_slice()).unwrap();
    let archive = dir.join("image.tar");
    std::fs::write(&archive, b.into_inner().unwrap()).unwrap();
    let data = inst.state.path().join("data");
    let (out, code) = import(&data, "saved", archive.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported saved (3 layers"), "{out}");
    assert!(tree(&data.join("images/tmp")).is_empty(), "the unpacked archive is gone");
}

/// Imports a one-layer image of `entries`; asserts it fails saying `want`, that nothing was
/// written to the decoy directory outside the store, and that the store has no layer.
fn hostile(inst: &Instance, what: &str, entries: &[E<'_>], want: &str, outside: &Path) {
    let layout = inst.state.path().join(format!("hostile-{what}"));
    write_layout(&layout, &[layer(entries)], Pack::Plain, &[], "/");
    let data = inst.state.path().join("data");
    let (out, code) = import(&data, what, layout.to_str().unwrap(), &[]);
    println!("=== hostile layer {what}:\n{out}");
    assert_ne!(code, 0, "{what}: {out}");
    assert!(out.contains(want), "{what}: want {want:?} in {out}");
    assert!(tree(outside).is_empty(), "{what} wrote outside the store: {:?}", tree(outside));
    assert!(tree(&data.join("images/layers")).is_empty(), "{what} left a layer behind");
    assert!(tree(&data.join("images/tmp")).is_empty(), "{what} left its temp dir behind");
    assert!(tree(&data.join("images/images")).iter().all(|f| f.ends_with(".lock")), "{what} recorded an image");
}

#[test]
fn hostile_layers_never_write_outside_the_store() {
    let inst = Instance::new();
    let outside = inst.state.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let o = outside.display().to_string();
    // The store is <state>/data/images; ../../../outside from a layer's root is <state>/outside.
    hostile(&inst, "dotdot", &[E::RawFile(b"../../../outside/pwned", b"x")], "path with `..`", &outside);
    let abs = format!("{o}/pwned");
    hostile(&inst, "absolute", &[E::RawFile(abs.as_bytes(), b"x")], "absolute path", &outside);
    hostile(
        &inst,
        "through-symlink",
        &[E::Link("esc", &o), E::File("esc/pwned", b"x", 0o644)],
        "goes through a symbolic link",
        &outside,
    );
    hostile(
        &inst,
        "hardlink-absolute",
        &[E::RawHard("passwd", b"/etc/passwd")],
        "hard link to an absolute path",
        &outside,
    );
    hostile(
        &inst,
        "hardlink-dotdot",
        &[E::RawHard("passwd", b"../../../../../etc/passwd")],
        "hard link with `..`",
        &outside,
    );
    hostile(
        &inst,
        "hardlink-through-symlink",
        &[E::Link("root", "/"), E::Hard("passwd", "root/etc/passwd")],
        "goes through a symbolic link",
        &outside,
    );
    // A blob that is not what its manifest says.
    let layout = inst.state.path().join("tampered");
    let blobs = write_layout(&layout, &[layer(&[E::File("f", b"honest", 0o644)])], Pack::Plain, &[], "/");
    std::fs::write(&blobs[0], layer(&[E::File("f", b"tamper", 0o644)])).unwrap();
    let data = inst.state.path().join("data");
    let (out, code) = import(&data, "tampered", layout.to_str().unwrap(), &[]);
    assert_ne!(code, 0);
    assert!(out.contains("digest mismatch"), "{out}");
    assert!(tree(&data.join("images/layers")).is_empty());
    // Bigger than the import may write.
    too_big_for_the_limit(&inst, "big", Pack::Gzip);
    assert!(tree(&data.join("images/layers")).is_empty());
}

/// Imports a layer of 3 MiB that compresses to a few hundred bytes (a bomb, packed as `pack`)
/// against a 1 MiB `max_image_size`: refused, and nothing left in the store's `tmp/`.
fn too_big_for_the_limit(inst: &Instance, name: &str, pack: Pack) {
    let data = inst.state.path().join("data");
    let big = vec![7u8; 3 << 20];
    let layout = inst.state.path().join(name);
    write_layout(&layout, &[layer(&[E::File("big", &big, 0o644)])], pack, &[], "/");
    let (out, code) = import(&data, name, layout.to_str().unwrap(), &["--max-image-size", "1M"]);
    assert_ne!(code, 0);
    assert!(out.contains("max_image_size"), "{out}");
    assert!(tree(&data.join("images/tmp")).is_empty());
}

/// `tar+zstd` layers (what `skopeo copy --dest-compress-format zstd` writes) import like gzip
/// ones, verified against the same digests, and a zstd bomb stops at the size limit.
#[test]
fn zstd_layers_import_and_a_zstd_bomb_stops_at_the_size_limit() {
    let inst = Instance::new();
    let data = inst.state.path().join("data");
    let layout = inst.state.path().join("zstd");
    let text: &[u8] = b"from a zstd layer\n";
    write_layout(&layout, &[layer(&[E::File("hello.txt", text, 0o644)])], Pack::Zstd, &[], "/");
    let (out, code) = import(&data, "zstd", layout.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported zstd (1 layer"), "{out}");
    let layers = data.join("images/layers");
    let found = tree(&layers).into_iter().find(|p| p.ends_with("/hello.txt")).expect("the layer's file in the store");
    assert_eq!(std::fs::read(layers.join(found)).unwrap(), text);
    too_big_for_the_limit(&inst, "zstd-big", Pack::Zstd);
}

#[test]
fn a_session_on_an_image_sees_the_image_with_its_whiteouts_and_writes_are_capped() {
    let inst = Instance::new();
    let layout = inst.state.path().join("layout");
    build_test_image(&layout);
    let data = inst.state.path().join("data");
    let (out, code) = import(&data, "bb", layout.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{out}");
    let before = tree(&data.join("images"));
    let mounts_before = host_mount_count();
    let d = data.display().to_string();
    let script = "echo pwd=$(pwd) mark=$IMAGE_MARK; hello; cat /etc/passwd; \
                  test -e /etc/removed.txt && echo WHITEOUT-FAILED; echo dir=$(ls /opt/dir | tr -d ' '); \
                  ls /opt/dir; test -e /usr/lib && echo HOST-USR-VISIBLE; test -e /usr/bin/python3 && echo HOST-USR-VISIBLE; \
                  echo uid=$(id -u) owner=$(stat -c %u /etc/passwd) host=$(hostname) hosts=$(grep -c nsplay /etc/hosts); \
                  echo changed > /etc/passwd && echo wrote-etc; rm /opt/dir/c && echo removed-c; \
                  dd if=/dev/zero of=/root/fill bs=1M count=64 2>&1 | grep -o 'No space left on device'; echo dd-done; \
                  echo 1 > /proc/sysrq-trigger 2>/dev/null || echo sysrq-refused; \
                  mknod /root/sda b 8 0 2>/dev/null && head -c1 /root/sda 2>/dev/null || echo no-devices; \
                  umount /dev/null 2>/dev/null || echo dev-locked; \
                  mount -o remount,suid / 2>/dev/null && echo REMOUNT-SUID || echo root-stays-nosuid";
    let (out, code) = inst.run_with(&["--image", "bb", "--data-dir", &d, "--disk", "8M"], script);
    println!("{out}");
    assert_eq!(code, 0, "{out}");
    for want in [
        "pwd=/opt mark=layered",
        "hello-from-the-image",
        "root:x:0:0:root:/root:/bin/sh",
        "uid=0 owner=0 host=nsplay hosts=1",
        "wrote-etc",
        "removed-c",
        "No space left on device",
        "dd-done",
        "sysrq-refused",
        "no-devices",
        "dev-locked",
        "root-stays-nosuid",
    ] {
        assert!(out.contains(want), "missing {want:?} in {out}");
    }
    assert!(out.contains("dir=c\n"), "the opaque directory shows only the upper layer's file: {out}");
    for bad in ["WHITEOUT-FAILED", "HOST-USR-VISIBLE", "REMOUNT-SUID"] {
        assert!(!out.contains(bad), "{bad}: {out}");
    }
    // The session wrote only to its own upper directory: the store is as it was.
    // (But for the image's lock file, which `nsplay run` held.)
    let no_locks = |t: Vec<String>| t.into_iter().filter(|f| !f.ends_with(".lock") || f == ".lock").collect::<Vec<_>>();
    assert_eq!(no_locks(tree(&data.join("images"))), no_locks(before));
    let passwd = std::fs::read(
        data.join("images/layers").join(sha(&test_layers()[0]).strip_prefix("sha256:").unwrap()).join("etc/passwd"),
    )
    .unwrap();
    assert_eq!(passwd, b"root:x:0:0:root:/root:/bin/sh\n");
    assert!(wait_until(5, || host_mount_count() == mounts_before), "mounts left behind");
    // An unknown image: a clear error, nothing started.
    let (out, code) = inst.run_with(&["--image", "nope", "--data-dir", &d], "true");
    assert_ne!(code, 0);
    assert!(out.contains("no image named \"nope\""), "{out}");
}

/// The shell-only escape probes of tests/probes.rs (tests/common/escapes.rs), each in a session
/// on the image, held to the same verdicts as on the host root; and the image's own: its
/// overlay cannot be unmounted or detached to look beneath it.
#[test]
fn the_escape_probes_hold_on_an_image_and_its_overlay_cannot_be_peeled_off() {
    let inst = Instance::new();
    let d = imported(&inst, "bb").display().to_string();
    let on_image = ["--image", "bb", "--data-dir", d.as_str()];
    for e in common::escapes::ALL {
        let (out, _) = inst.run_with(&on_image, e.script);
        println!("=== probe on an image: {}\n{out}", e.what);
        (e.verdict)(&out);
    }
    let (out, code) = inst.run_with(
        &on_image,
        "umount / 2>/dev/null && echo RESULT unmounted root; umount -l / 2>/dev/null && echo RESULT detached root; \
         echo RESULT root $(grep -c ' / / ' /proc/self/mountinfo) $(grep ' / / ' /proc/self/mountinfo | grep -o 'overlay'); \
         hello; echo done",
    );
    println!("=== probe on an image: unmount or detach the root overlay\n{out}");
    assert_eq!(code, 0, "{out}");
    let r = common::results(&out);
    assert!(!r.contains_key("unmounted") && !r.contains_key("detached"), "{out}");
    assert_eq!(r["root"], "1 overlay", "the session's root is not the image's one overlay: {out}");
    assert!(out.contains("hello-from-the-image"), "{out}");
}

/// Starts Debian's docker-registry on 127.0.0.1 with its own config and storage (never the
/// system service); returns it and its address.
fn registry(dir: &Path) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            storage.display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .args(["serve"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Debian's docker-registry (tests/run.sh installs it)");
    assert!(wait_until(10, || std::net::TcpStream::connect(&addr).is_ok()), "the registry did not listen on {addr}");
    (child, addr)
}

#[test]
fn an_image_pushed_to_a_registry_imports_by_reference_and_by_digest() {
    let inst = Instance::new();
    let layout = inst.state.path().join("layout");
    build_test_image(&layout);
    let (reg, addr) = registry(&inst.state.path().join("registry"));
    let push = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:test", layout.display()))
        .arg(format!("docker://{addr}/test/bb:1"))
        .output()
        .expect("Debian's skopeo (tests/run.sh installs it)");
    let data = inst.state.path().join("data");
    let _reg = KillOnDrop(reg);
    {
        assert!(push.status.success(), "skopeo: {}", String::from_utf8_lossy(&push.stderr));
        let (out, code) = import(&data, "pulled", &format!("{addr}/test/bb:1"), &[]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("imported pulled (3 layers"), "{out}");
        let manifest = std::fs::read_to_string(data.join("images/images/pulled.json")).unwrap();
        let rec: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        let digest = rec["manifest_digest"].as_str().unwrap().to_string();
        let (out, code) = import(&data, "by-digest", &format!("{addr}/test/bb@{digest}"), &[]);
        assert_eq!(code, 0, "{out}");
        // An unknown tag: the registry's answer, no image.
        let (out, code) = import(&data, "missing", &format!("{addr}/test/bb:nope"), &[]);
        assert_ne!(code, 0, "{out}");
        assert!(out.contains("registry"), "{out}");
        let d = data.display().to_string();
        let (out, code) = inst.run_with(&["--image", "pulled", "--data-dir", &d], "hello; echo $IMAGE_MARK");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("hello-from-the-image") && out.contains("layered"), "{out}");
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_starts_sessions_on_its_image_refuses_unknown_ones_and_leaves_nothing() {
    let inst = Instance::new();
    imported(&inst, "bb");
    imported(&inst, "bb2");
    let mounts_before = host_mount_count();
    let args = ["--image", "bb", "--images-allowed", "bb2", "--warm-pool", "1", "--drain-timeout", "1s"];
    let server = Server::start_in(inst, &args);
    let http = reqwest::Client::new();
    let create = |body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{}/api/sessions", server.base);
        async move { http.post(url).json(&body).send().await.unwrap() }
    };
    // An image not offered: 400, nothing started.
    let r = create(serde_json::json!({"image": "nope"})).await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unknown_image", "{body}");
    // The default image (pooled) and an allowed one (built on demand).
    for image in [None, Some("bb2")] {
        let body = match image {
            Some(i) => serde_json::json!({"image": i}),
            None => serde_json::json!({}),
        };
        let r = create(body).await;
        assert_eq!(r.status(), 201, "{image:?}");
        let s: serde_json::Value = r.json().await.unwrap();
        let mut term = common::term::Term::connect(&server, s["terminal"].as_str().unwrap()).await;
        // The first prompt first (what is typed before the shell reads is echoed early), then
        // short commands: ash echoes a line longer than the terminal with wrapping.
        term.expect("# ", 10).await;
        let mut out = term.cmd("hello").await;
        out += &term.cmd("test -e /etc/removed.txt || echo white-$IMAGE_MARK").await;
        assert!(out.contains("hello-from-the-image") && out.contains("white-layered"), "{out}");
        let id = s["id"].as_str().unwrap();
        let r = http.delete(format!("{}/api/sessions/{id}", server.base)).send().await.unwrap();
        assert!(r.status().is_success());
    }
    // In use: rm refuses.
    let d = server.inst.state.path().join("data").display().to_string();
    let (out, code) = nsplay(&["image", "rm", "bb", "--data-dir", &d]);
    assert_ne!(code, 0);
    assert!(out.contains("in use by a running nsplay server"), "{out}");
    // SIGKILL with a session (and a pooled one) live: the restart reclaims them.
    let r = create(serde_json::json!({})).await;
    assert_eq!(r.status(), 201);
    let old = format!("nsplay-{}-", server.pid());
    let mut server = server.crash_and_restart(&args);
    // The killed server's sessions (named after its pid) are reclaimed at the restart.
    let old_groups = |s: &Server| {
        s.inst
            .session_groups()
            .into_iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&old))
            .count()
    };
    assert!(wait_until(10, || old_groups(&server) == 0), "{:?}", server.inst.session_groups());
    assert!(wait_until(10, || server.log.lock().unwrap().contains("reclaimed")), "{}", server.log.lock().unwrap());
    server.stop_with(nix::sys::signal::Signal::SIGINT);
    let log = server.log.lock().unwrap().clone();
    assert!(wait_until(10, || host_mount_count() == mounts_before), "mounts left behind\n{log}");
    assert!(server.inst.session_groups().is_empty(), "{:?}\n{log}", server.inst.session_groups());
    let (out, code) = nsplay(&["image", "rm", "bb", "--data-dir", &d]);
    assert_eq!(code, 0, "{out}");
}

/// A classroom room whose first lesson names an image: its learners' sessions start on that
/// image (as a lesson page's do), under the room's lower limits.
#[tokio::test(flavor = "multi_thread")]
async fn a_rooms_learners_get_their_first_lessons_image_under_the_rooms_limits() {
    const TOKEN: &str = "images-test-admin-token-0123456789";
    let inst = Instance::new();
    imported(&inst, "bb");
    let lessons = inst.state.path().join("lessons");
    std::fs::create_dir_all(&lessons).unwrap();
    std::fs::write(
        lessons.join("on-busybox.toml"),
        "topic = \"on-busybox\"\ntitle.en = \"On busybox\"\nsummary.en = \"A lesson on an image.\"\nintro.en = \"On busybox.\"\nimage = \"bb\"\n\n[[steps]]\nid = \"look\"\n\
         commands = [\"hello\"]\ntitle.en = \"Look\"\ntext.en = \"Run it.\"\n",
    )
    .unwrap();
    let lessons = lessons.display().to_string();
    let server = Server::start_in(inst, &["--lessons", &lessons, "--admin-token", TOKEN, "--drain-timeout", "1s"]);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/rooms", server.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"title": "Images", "lessons": ["on-busybox"], "capacity": 2, "limits": {"memory": "96M"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let code = r.json::<serde_json::Value>().await.unwrap()["code"].as_str().unwrap().to_string();
    let r = http.post(format!("{}/api/join/{code}", server.base)).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let joined: serde_json::Value = r.json().await.unwrap();
    let id = joined["session"].as_str().unwrap();
    let mut term = common::term::Term::connect(&server, &format!("/api/sessions/{id}/terminals/0")).await;
    term.expect("# ", 20).await;
    let mut out = term.cmd("hello").await;
    out += &term.cmd("echo mark-$IMAGE_MARK").await;
    assert!(
        out.contains("hello-from-the-image") && out.contains("mark-layered"),
        "the room's session is not on the lesson's image: {out}"
    );
    let s: serde_json::Value =
        http.get(format!("{}/api/sessions/{id}", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(s["limits"]["memory_bytes"], 96 << 20, "{s}");
}

/// A room that names an image: its sessions start on it whatever its lessons say, and
/// "prepare" builds them ahead on it, so its joiners get sessions of the reserve. An image the
/// server does not offer rooms is refused when the room is made.
#[tokio::test(flavor = "multi_thread")]
async fn a_room_on_an_image_prepares_its_sessions_on_it_and_its_joiners_take_them() {
    const TOKEN: &str = "images-test-admin-token-0123456789";
    let inst = Instance::new();
    imported(&inst, "bb");
    // One pooled session beside the reserve of two: the instance has four id ranges.
    let args = ["--images-allowed", "bb", "--admin-token", TOKEN, "--drain-timeout", "1s", "--warm-pool", "1"];
    let server = Server::start_in(inst, &args);
    let http = reqwest::Client::new();
    let post = |path: String, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{}{path}", server.base);
        async move { http.post(url).bearer_auth(TOKEN).json(&body).send().await.unwrap() }
    };
    let room =
        |image: &str| serde_json::json!({"title": "On an image", "lessons": ["uts"], "capacity": 2, "image": image});
    let r = post("/api/rooms".into(), room("nope")).await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_room", "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("nope"), "{body}");

    let r = post("/api/rooms".into(), room("bb")).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let made: serde_json::Value = r.json().await.unwrap();
    assert_eq!(made["image"], "bb", "{made}");
    let (id, code) = (made["id"].as_str().unwrap().to_string(), made["code"].as_str().unwrap().to_string());
    let prepared = || {
        let http = http.clone();
        let url = format!("{}/api/rooms/{id}", server.base);
        async move {
            let r: serde_json::Value = http.get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
            r["prepared"].clone()
        }
    };
    let r = post(format!("/api/rooms/{id}/prepare"), serde_json::json!({"expected": 2})).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let mut state = serde_json::Value::Null;
    for _ in 0..300 {
        state = prepared().await;
        if state["ready"] == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(state["ready"], 2, "the room's reserve was not built: {state}");

    let r = http.post(format!("{}/api/join/{code}", server.base)).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let joined: serde_json::Value = r.json().await.unwrap();
    // The joiner took a session of the reserve: one is left of two.
    let state = prepared().await;
    assert_eq!(state["ready"], 1, "the join did not take a session of the room's reserve: {state}");
    let sid = joined["session"].as_str().unwrap();
    let mut term = common::term::Term::connect(&server, &format!("/api/sessions/{sid}/terminals/0")).await;
    term.expect("# ", 20).await;
    let mut out = term.cmd("hello").await;
    out += &term.cmd("echo mark-$IMAGE_MARK").await;
    assert!(
        out.contains("hello-from-the-image") && out.contains("mark-layered"),
        "the room's session is not on the room's image (its lesson names none): {out}"
    );
}
