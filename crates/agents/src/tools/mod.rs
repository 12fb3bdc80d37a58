//! The built-in tools an agent may call, and the registry the runtime finds them in.
//!
//! A tool takes the model's arguments as JSON and returns a string for the model (plain text
//! or compact JSON), or a [`ToolError`] the runtime reports back to the model. Tools bound their
//! own work (input sizes, recursion, bytes read, time), even though the runtime also enforces a
//! per-call timeout.
//!
//! - `calculator`: arithmetic with a hand-written parser; never `eval`, never panics.
//! - `current_time`: the time in an IANA time zone, from an injectable [`paas_core::Clock`].
//! - `http_fetch`: a text-only GET of a public URL. Every hop (including each redirect) is
//!   checked with [`paas_net::resolve_checked`] and the connection is pinned to the checked
//!   address, so neither a redirect nor DNS rebinding can reach a private address.
//!
//! What this module must not do: run the tool-calling loop, know about tenants or
//! persistence, or let a tool reach the network without the outbound policy.

mod calculator;
mod current_time;
mod html;
mod http_fetch;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use paas_llm::ToolSpec;
use serde::de::DeserializeOwned;

pub use calculator::Calculator;
pub use current_time::CurrentTime;
pub use http_fetch::HttpFetch;

/// A boxed future, as the object-safe [`Tool`] trait needs.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The names of the built-in tools, in the order [`ToolRegistry::names`] lists them.
pub const BUILTIN_TOOLS: [&str; 3] = ["calculator", "current_time", "http_fetch"];

/// Why a tool call produced no result. The message is written for the model to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not match the tool's schema or make no sense (a syntax error in an
    /// expression, an unknown time zone, a malformed URL).
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool ran and failed (division by zero, a timeout, a non-text response…).
    #[error("tool failed: {0}")]
    Failed(String),
    /// The call was refused by policy (a private address, a non-http scheme, credentials in a
    /// URL); nothing was fetched.
    #[error("blocked: {0}")]
    Blocked(String),
}

impl ToolError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            ToolError::InvalidArguments(_) => "invalid_arguments",
            ToolError::Failed(_) => "tool_failed",
            ToolError::Blocked(_) => "blocked",
        }
    }
}

/// Something the model can call.
pub trait Tool: Send + Sync + Debug {
    /// The name the model calls it by (one of [`BUILTIN_TOOLS`] for the built-ins).
    fn name(&self) -> &'static str;

    /// The name, a description for the model, and the JSON Schema of the arguments.
    fn spec(&self) -> ToolSpec;

    /// Runs the tool on the model's arguments (a JSON object).
    fn call(&self, arguments: serde_json::Value) -> BoxFuture<'_, Result<String, ToolError>>;
}

/// Limits of the `http_fetch` tool.
#[derive(Clone, Debug)]
pub struct HttpFetchConfig {
    /// Which addresses may be contacted; checked on every hop.
    pub outbound: paas_net::OutboundPolicy,
    /// The whole fetch, all redirects included (default 10 s).
    pub timeout: Duration,
    /// Body bytes read at most; the rest is not downloaded (default 256 KiB).
    pub max_bytes: usize,
    /// Redirects followed at most (default 5).
    pub max_redirects: usize,
}

impl Default for HttpFetchConfig {
    fn default() -> Self {
        Self {
            outbound: paas_net::OutboundPolicy::public_only(),
            timeout: Duration::from_secs(10),
            max_bytes: 256 * 1024,
            max_redirects: 5,
        }
    }
}

/// The tools available to agents, by name.
#[derive(Clone, Debug)]
pub struct ToolRegistry {
    tools: BTreeMap<&'static str, Arc<dyn Tool>>,
}

impl ToolRegistry {
    /// The built-in tools, with the system clock and the given `http_fetch` limits.
    pub fn builtin(http: HttpFetchConfig) -> Self {
        Self {
            tools: BTreeMap::new(),
        }
        .with_tool(Arc::new(Calculator))
        .with_tool(Arc::new(CurrentTime::system()))
        .with_tool(Arc::new(HttpFetch::new(http)))
    }

    /// Adds a tool, replacing any tool of the same name (tests, or a built-in with another
    /// clock).
    pub fn with_tool(mut self, tool: Arc<dyn Tool>) -> Self {
        self.tools.insert(tool.name(), tool);
        self
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.get(name).cloned()
    }

    /// Every tool's name, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.tools.keys().copied().collect()
    }

    /// The specs of the named tools, in the order given; unknown names are skipped.
    pub fn specs(&self, names: &[String]) -> Vec<ToolSpec> {
        names
            .iter()
            .filter_map(|name| self.tools.get(name.as_str()))
            .map(|tool| tool.spec())
            .collect()
    }
}

/// Reads a tool's arguments into its argument type; `null` counts as `{}`.
fn parse_arguments<T: DeserializeOwned>(arguments: serde_json::Value) -> Result<T, ToolError> {
    let arguments = match arguments {
        serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
        other => other,
    };
    serde_json::from_value(arguments).map_err(|err| ToolError::InvalidArguments(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_holds_the_builtins() {
        let registry = ToolRegistry::builtin(HttpFetchConfig::default());
        assert_eq!(registry.names(), BUILTIN_TOOLS.to_vec());
        for name in BUILTIN_TOOLS {
            let tool = registry.get(name).unwrap();
            assert_eq!(tool.name(), name);
            let spec = tool.spec();
            assert_eq!(spec.name, name);
            assert!(!spec.description.is_empty());
            assert_eq!(spec.parameters["type"], "object");
        }
        assert!(registry.get("shell").is_none());
    }

    #[test]
    fn specs_follow_the_requested_order_and_skip_unknown_names() {
        let registry = ToolRegistry::builtin(HttpFetchConfig::default());
        let names = ["http_fetch", "nope", "calculator"].map(String::from);
        let specs: Vec<String> = registry.specs(&names).into_iter().map(|s| s.name).collect();
        assert_eq!(specs, ["http_fetch", "calculator"]);
        assert!(registry.specs(&[]).is_empty());
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(
            ToolError::InvalidArguments("x".into()).code(),
            "invalid_arguments"
        );
        assert_eq!(ToolError::Failed("x".into()).code(), "tool_failed");
        assert_eq!(ToolError::Blocked("x".into()).code(), "blocked");
        assert_eq!(
            ToolError::Blocked("169.254.169.254 is not a public address".into()).to_string(),
            "blocked: 169.254.169.254 is not a public address"
        );
    }

    #[test]
    fn default_http_limits() {
        let config = HttpFetchConfig::default();
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert_eq!(config.max_bytes, 262_144);
        assert_eq!(config.max_redirects, 5);
        assert_eq!(config.outbound, paas_net::OutboundPolicy::public_only());
    }
}
