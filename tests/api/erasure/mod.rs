//! What the collector forgets, and what it never keeps.

mod forget;
mod privacy;
mod retention;
mod secret;
