//! The FHIR R4 server for medical practices, as a library: the binary `fhir-server` is a
//! thin `main` over [`cli`], and developer tooling (`fhir-tools`) uses the same pieces.
//!
//! The modules, from the HTTP face down: `cli` (commands), `http` (router, formats,
//! connection loop), `interaction` / `ops` / `jobs` (one file per FHIR interaction,
//! operation and background job), `store` (the only place with SQL, besides the search
//! planner), `search` (query parsing and planning), `index` (search-index values), and the
//! pure pieces (`resource`, `error`, `config`).

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod edi_cli;
pub mod error;
pub mod export;
pub mod fhir;
pub mod http;
pub mod import;
pub mod index;
pub mod interaction;
pub mod jobs;
pub mod ops;
pub mod resource;
pub mod search;
pub mod store;
