//! nsplay: a self-hosted web playground for Linux namespaces and cgroups.
//!
//! Layout (one folder per layer; each depends only on the ones above it):
//!
//! - [`sandbox`]: the core. Namespaces, mounts, cgroups, ptys, init and the single-threaded
//!   spawner. Knows nothing about HTTP.
//! - [`session`]: live sessions and their terminals (output ring, attached clients, flow
//!   control, lifecycle). Also HTTP-free.
//! - [`web`]: axum routes, the WebSocket bridge, pages and embedded assets. Extracts, calls
//!   `session`, maps errors.
//! - [`cli`] and [`run`]: the command line (`nsplay serve`, `nsplay run`).

pub mod cli;
pub mod config;
pub mod lessons;
pub mod run;
pub mod sandbox;
pub mod session;
pub mod web;
