//! The FHIR R4 server for medical practices, as a library: the binary `fhir-server` is a
//! thin `main` over [`cli`], and developer tooling (`fhir-tools`) uses the same pieces.
//!
//! The modules form layers, each importing only those below it (see
//! `docs/architecture.md`; `tests/layers.rs` checks it), from the top: `cli` (commands),
//! `http` (router, CapabilityStatement, connection loop), `ops` (one file per operation),
//! `interaction` and `jobs`, `app` and `rest` (shared state; the FHIR request and
//! response), `store` (SQLite and PostgreSQL: the only SQL besides the search planner),
//! `search` (query parsing and planning), `index` and `params` (search parameters and
//! their values), and the bottom: `resource`, `fhir`, `ids`, `config`, `clock`, `error`.

pub mod app;
pub mod audit;
pub mod auth;
pub mod channels;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod fhir;
pub mod http;
pub mod ids;
pub mod index;
pub mod interaction;
pub mod jobs;
pub mod ops;
pub mod params;
pub mod resource;
pub mod rest;
pub mod search;
pub mod store;
pub mod workflows;
