#![doc = include_str!("../README.md")]

pub mod cache;
pub mod cli;
pub mod config;
pub mod dto;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod redis;
pub mod routes;
pub mod runs;
pub mod server;
pub mod services;
pub mod state;
pub mod telemetry;
pub mod throttle;
pub mod web;

pub use config::Config;
pub use state::AppState;
