//! The `current_time` tool: the current date and time in an IANA time zone.

use std::str::FromStr;
use std::sync::Arc;

use chrono::SecondsFormat;
use chrono_tz::Tz;
use paas_core::{Clock, SystemClock};
use paas_llm::ToolSpec;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{BoxFuture, Tool, ToolError, parse_arguments};

/// The `current_time` tool. The clock is injected so tests can pin it.
#[derive(Clone, Debug)]
pub struct CurrentTime {
    clock: Arc<dyn Clock>,
}

impl CurrentTime {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }

    /// The real wall clock.
    pub fn system() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl Default for CurrentTime {
    fn default() -> Self {
        Self::system()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    #[serde(default)]
    timezone: Option<String>,
}

/// What the model gets back, in this field order.
#[derive(Serialize)]
struct Output<'a> {
    timezone: &'a str,
    iso8601: String,
    unix: i64,
    weekday: String,
}

impl Tool for CurrentTime {
    fn name(&self) -> &'static str {
        "current_time"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().into(),
            description: "Returns the current date and time (ISO 8601 with the UTC offset, Unix \
                          seconds and the weekday) in a time zone."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "timezone": {
                        "type": "string",
                        "description": "An IANA time zone name such as \"Europe/Paris\" or \
                                        \"America/New_York\". Defaults to \"UTC\".",
                    }
                },
                "additionalProperties": false,
            }),
        }
    }

    fn call(&self, arguments: serde_json::Value) -> BoxFuture<'_, Result<String, ToolError>> {
        Box::pin(async move {
            let Arguments { timezone } = parse_arguments(arguments)?;
            let tz = parse_zone(timezone.as_deref().unwrap_or(""))?;
            let now = self.clock.now().with_timezone(&tz);
            let output = Output {
                timezone: tz.name(),
                iso8601: now.to_rfc3339_opts(SecondsFormat::Secs, false),
                unix: now.timestamp(),
                weekday: now.format("%A").to_string(),
            };
            serde_json::to_string(&output).map_err(|err| ToolError::Failed(err.to_string()))
        })
    }
}

/// An IANA zone name, matched exactly and then ignoring case; empty means UTC.
fn parse_zone(name: &str) -> Result<Tz, ToolError> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    if let Ok(tz) = Tz::from_str(name) {
        return Ok(tz);
    }
    chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| {
            let shown: String = name.chars().take(64).collect();
            ToolError::InvalidArguments(format!(
                "unknown time zone '{shown}'; use an IANA name such as \"Europe/Paris\", \
                 \"America/New_York\" or \"UTC\""
            ))
        })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use paas_core::FixedClock;

    use super::*;

    fn tool() -> CurrentTime {
        let at: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-25T18:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        CurrentTime::new(Arc::new(FixedClock::new(at)))
    }

    #[tokio::test]
    async fn tells_the_time_in_a_zone() {
        let out = tool()
            .call(json!({"timezone": "Europe/Paris"}))
            .await
            .unwrap();
        assert_eq!(
            out,
            r#"{"timezone":"Europe/Paris","iso8601":"2026-11-25T19:04:05+01:00","unix":1795629845,"weekday":"Wednesday"}"#
        );
        // Across the date line the same instant is already Thursday.
        let out = tool()
            .call(json!({"timezone": "pacific/auckland"}))
            .await
            .unwrap();
        assert_eq!(
            out,
            r#"{"timezone":"Pacific/Auckland","iso8601":"2026-11-26T07:04:05+13:00","unix":1795629845,"weekday":"Thursday"}"#
        );
    }

    #[tokio::test]
    async fn defaults_to_utc() {
        let expected = r#"{"timezone":"UTC","iso8601":"2026-11-25T18:04:05+00:00","unix":1795629845,"weekday":"Wednesday"}"#;
        for arguments in [
            json!({}),
            serde_json::Value::Null,
            json!({"timezone": null}),
            json!({"timezone": " "}),
        ] {
            assert_eq!(tool().call(arguments).await.unwrap(), expected);
        }
    }

    #[tokio::test]
    async fn refuses_unknown_zones_with_an_example() {
        for arguments in [
            json!({"timezone": "Mars/Olympus_Mons"}),
            json!({"timezone": "CEST+99"}),
        ] {
            let err = tool().call(arguments).await.unwrap_err();
            assert_eq!(err.code(), "invalid_arguments");
            assert!(err.to_string().contains("Europe/Paris"), "{err}");
        }
        let err = tool().call(json!({"timezone": 1})).await.unwrap_err();
        assert_eq!(err.code(), "invalid_arguments");
    }

    #[tokio::test]
    async fn the_system_clock_is_close_to_now() {
        let out = CurrentTime::system().call(json!({})).await.unwrap();
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        let unix = value["unix"].as_i64().unwrap();
        assert!((unix - Utc::now().timestamp()).abs() < 5);
    }
}
