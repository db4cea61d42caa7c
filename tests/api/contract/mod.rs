//! What is promised outside the collector: the OpenAPI document, the
//! documented commands, the repository and its module graph, and the
//! clients.

mod architecture;
mod client;
mod consent;
mod docs_commands;
mod openapi;
mod php_client;
mod project;
