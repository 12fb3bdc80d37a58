//! Placeholder: replaced by the agent runtime.
