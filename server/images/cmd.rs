//! `nsplay image …`: the store's command line (settings as for `nsplay serve`: the data
//! directory and the import bounds from `--config`, the environment or flags).

use crate::cli::{ImageCommand, ServeArgs};
use crate::config::Settings;

use super::Store;

/// Runs one `nsplay image` command; returns the exit code.
pub fn main(cmd: &ImageCommand) -> i32 {
    let serve: &ServeArgs = match cmd {
        ImageCommand::Import { serve, .. }
        | ImageCommand::Ls { serve }
        | ImageCommand::Rm { serve, .. }
        | ImageCommand::Gc { serve } => serve,
    };
    let settings = match Settings::resolve(serve) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nsplay: {e}");
            return 2;
        }
    };
    match run(cmd, &settings) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("nsplay image: {e}");
            1
        }
    }
}

fn run(cmd: &ImageCommand, settings: &Settings) -> Result<(), super::ImageError> {
    let store = Store::open(&settings.data_dir)?;
    match cmd {
        ImageCommand::Import { name, source, .. } => {
            let started = std::time::Instant::now();
            let r = store.import(name, source, &settings.import)?;
            println!(
                "imported {} ({} layers, {}, {:.1} s)",
                r.name,
                r.layers.len(),
                nsplay_sandbox::format_size(r.size),
                started.elapsed().as_secs_f64()
            );
        }
        ImageCommand::Ls { .. } => {
            println!("{:<24} {:>6} {:>10}  SOURCE", "NAME", "LAYERS", "SIZE");
            for r in store.list()? {
                println!(
                    "{:<24} {:>6} {:>10}  {}",
                    r.name,
                    r.layers.len(),
                    nsplay_sandbox::format_size(r.size),
                    r.source
                );
            }
        }
        ImageCommand::Rm { name, .. } => {
            let removed = store.remove(name)?;
            println!("removed {name} ({} layers no other image used)", removed.len());
        }
        ImageCommand::Gc { .. } => {
            let removed = store.gc()?;
            println!("removed {} unused layers", removed.len());
        }
    }
    Ok(())
}
