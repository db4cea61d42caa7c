//! The sending side: what an install runs to report, and a library for
//! products that would rather call it from Rust.
//!
//! - [`optin`]: the administrator's choice and the install's random id.
//!   Nothing is sent without an explicit opt-in.
//! - [`report`]: builds the v1 report, checks it against the collector's
//!   catalog before it leaves the machine, and explains it field by field.
//! - [`transport`]: HTTP with a timeout, retries with backoff and jitter
//!   that keep the same `report_id`, and erasure requests.
//! - [`command`]: `anonstats send`.
//!
//! ```no_run
//! use anonstats::catalog::Catalog;
//! use anonstats::client::{Client, Draft, Options};
//!
//! let client = Client::new("http://127.0.0.1:8080", Options::default());
//! let catalog = client.fetch_catalog()?;
//! let draft = Draft {
//!     event: Some("install".into()),
//!     version: Some("4.10.1".into()),
//!     ..Draft::default()
//! };
//! let report = draft.finish(&catalog, uuid::Uuid::new_v4(), None);
//! assert!(report.check(&catalog).is_ok());
//! client.send_report(&report.body())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod command;
pub mod optin;
pub mod report;
pub mod transport;

pub use optin::OptIn;
pub use report::{explain, Check, Draft, Outgoing};
pub use transport::{Client, Delivery, Options, SendError};
