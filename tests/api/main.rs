//! Integration tests: the exporter against the simulated Respan API, over real
//! HTTP on 127.0.0.1.

mod cli;
mod crawl;
mod deploy;
mod exposition;
mod failures;
mod helpers;
mod http;
mod incremental;
mod properties;
mod retries;
mod web;
