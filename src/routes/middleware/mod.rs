//! Middleware: the access log, and the per-source limits in front of the
//! routes that do work.

mod access_log;
mod limits;

pub use access_log::access_log;
pub use limits::{limit_requests, limit_sources};
