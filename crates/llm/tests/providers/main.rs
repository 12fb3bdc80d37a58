//! The HTTP provider clients against local fixture servers that speak each provider's wire
//! format, failures included. One test binary (one link) for all of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod anthropic;
mod failures;
mod fixture;
mod glm;
mod openai;
