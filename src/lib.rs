//! xmpp-broadcast: an XEP-0114 component that sends an operator's announcement to every
//! registered user of an XMPP domain, at a chosen rate, surviving restarts.
//!
//! Modules in reading order:

/// The GraphQL admin API over HTTP: the only GraphQL.
pub mod admin;
/// The running component: everything wired together.
pub mod app;
/// Broadcast requests, jobs, the worker, the manager and the operations.
pub mod broadcast;
/// The command line.
pub mod cli;
/// The configuration file and its validation.
pub mod config;
/// Reaching a SQL database: the target named in errors, a first connection within a deadline.
pub mod database;
/// The XMPP server's accounts, read from its SQL database.
pub mod directory;
/// What a broadcast job is: the request, its limits, the stored job, its lease and snapshot.
pub mod job;
/// The log's format: one line per event, values escaped and cut.
pub mod logging;
/// The Prometheus metrics.
pub mod metrics;
/// `$N` placeholders rewritten for each SQL dialect.
pub mod placeholders;
/// The job store: the only SQL on our own tables.
pub mod store;
#[cfg(test)]
mod test_support;
/// The component connection and the stanzas: the only XML.
pub mod xmpp;
