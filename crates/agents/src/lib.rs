//! The Agent PaaS agent runtime: the tool-calling loop, built-in tools and guardrails.
//!
//! - [`runtime`]: one run of an agent — model calls, tool calls, guardrails, events — over any
//!   `paas_llm::Provider`. It stores nothing and knows no tenants: the caller feeds it the
//!   conversation and keeps what it returns.
//! - [`tools`]: the built-in tools an agent may call (`calculator`, `current_time`,
//!   `http_fetch`) and the registry the runtime looks them up in.

pub mod runtime;
pub mod tools;
