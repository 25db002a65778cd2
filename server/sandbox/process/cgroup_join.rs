//! How helpers enter and leave a session's cgroup: a keeper or joiner joins the session's group
//! before it does anything else (so whatever it starts is counted from the first instant), and
//! the spawner moves it out once what it started runs there.

use std::path::{Path, PathBuf};

use nix::unistd::{Pid, getpid};

/// Leaf of a session's cgroup that new terminals join once the session has handed controllers to
/// its child groups (cgroup v2).
const TERMINALS_LEAF: &str = "terminals";

#[derive(Debug, thiserror::Error)]
pub enum CgroupJoinError {
    #[error("creating cgroup {}: {source}", path.display())]
    CreateLeaf { path: PathBuf, source: std::io::Error },
    #[error("joining cgroup {}: {source}", path.display())]
    Join { path: PathBuf, source: std::io::Error },
    #[error("moving helper {pid} to {}: {source}", path.display())]
    MoveHelper { pid: Pid, path: PathBuf, source: std::io::Error },
}

/// Writes the calling process into every `cgroup.procs` file of `procs_files`.
pub fn join(procs_files: &[PathBuf]) -> Result<(), CgroupJoinError> {
    let me = getpid().to_string();
    let write = |path: &Path| {
        std::fs::write(path, &me).map_err(|source| CgroupJoinError::Join { path: path.to_path_buf(), source })
    };
    for f in procs_files {
        match write(f) {
            Ok(()) => {}
            // cgroup v2: the session handed controllers to child groups of its own, so its group
            // may hold no process any more ("no internal processes"): join a leaf inside it.
            Err(CgroupJoinError::Join { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
                let leaf = f.with_file_name(TERMINALS_LEAF);
                match std::fs::create_dir(&leaf) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(source) => return Err(CgroupJoinError::CreateLeaf { path: leaf, source }),
                }
                write(&leaf.join("cgroup.procs"))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves a helper (keeper or joiner: host processes the session cannot see) out of the session's
/// cgroup, once what it started runs there. On v2 the session could otherwise never empty its
/// own group and hand controllers to child groups, as the cgroups lesson does.
pub fn move_helper(pid: Pid, helper_procs_files: &[PathBuf]) -> Result<(), CgroupJoinError> {
    for f in helper_procs_files {
        std::fs::write(f, pid.to_string()).map_err(|source| CgroupJoinError::MoveHelper {
            pid,
            path: f.clone(),
            source,
        })?;
    }
    Ok(())
}
