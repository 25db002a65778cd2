//! nsplay: a self-hosted web playground for Linux namespaces and cgroups.
//!
//! # Layout
//!
//! The sandbox core is its own crate, `nsplay-sandbox` (`server/sandbox/`); this crate is the
//! server on top of it. Layers point one way: web → session → sandbox, with lessons beside
//! session (called from web); the crate boundary makes the sandbox unable to reach up.
//!
//! - `session`: live sessions and their terminals (output ring, attached clients, flow
//!   control, lifecycle, the warm pool, admission). HTTP-free; knows nothing of lessons.
//! - `lessons`: the lesson catalog and the checks that read a session's kernel state from the
//!   host.
//! - `text`: the one catalog of user-facing text (`web/ui.toml`), English and Japanese.
//! - `web`: axum routes, the WebSocket bridge, pages and embedded assets. Extracts, calls
//!   `session` and `lessons`, maps errors.
//! - `classroom`: rooms with join codes, learners, their progress from the host-side checks, and
//!   the instructor's access; `store`: where those live (SQLite by default, through sqlx).
//! - `cli`, `config` and `run`: the command line, settings, and `nsplay run`; `check_host`:
//!   `nsplay check-host` (the probes are the sandbox's `hostcheck`); `signals`: SIGINT and
//!   SIGTERM for the commands that own sessions.
//!
//! Modules are private; the binary and the tests use the few items re-exported here.

mod check_host;
mod classroom;
mod cli;
mod config;
pub mod images;
mod lessons;
mod lessons_cmd;
mod run;
mod session;
pub mod signals;
mod store;
mod text;
mod web;

pub use check_host::check_host;
pub use classroom::{Classroom, open as open_classroom};
pub use cli::{CheckHostArgs, Cli, Command, LessonsCommand, ServeArgs};
pub use config::Settings;
pub use lessons::{Catalog, Hierarchy, Lesson};
pub use lessons_cmd::main as lessons_main;
pub use run::run;
pub use session::Manager;
pub use session::admission::FILES_ADMIT_PERCENT;
pub use web::conn::{ConnLimits, Tls};
pub use web::{Service, Stopped, serve};
