//! The built-in mock model: no key, no network, deterministic.
//!
//! It answers the last user message, streaming the reply word by word (15 ms apart by default)
//! after a short "thought", and reports usage. When the agent offers tools it uses them the way
//! a real model would:
//!
//! - an arithmetic expression in the message (`what is 12 * (3 + 4)?`) → `calculator`;
//! - the words "time" or "date" → `current_time` (in the time zone named after " in ", else UTC);
//! - an `http://` or `https://` URL → `http_fetch`;
//!
//! and once the tool's result is in the conversation, it answers with it.
//!
//! Directives in the user message, written `[mock:…]`, make it misbehave on purpose for tests
//! and demos:
//!
//! | directive | effect |
//! |---|---|
//! | `[mock:delay_ms=N]` | N ms between chunks |
//! | `[mock:chunks=N]` | answer with N numbered words (a long answer) |
//! | `[mock:reply=TEXT]` | answer exactly TEXT (up to the closing `]`) |
//! | `[mock:tool=NAME ARGS]` | call tool NAME with the JSON ARGS |
//! | `[mock:loop]` | keep calling the same tool with the same arguments |
//! | `[mock:error=KIND]` | fail before the first byte: `rate_limited`, `unavailable`, `timeout`, `bad_response`, `unauthorized`, `rejected` |
//! | `[mock:fail_after=N]` | stream N chunks, then fail as if the connection were cut |
//! | `[mock:no_usage]` | report no usage (so it is estimated and marked so) |

use std::time::Duration;

use futures_util::stream;
use serde_json::json;

use crate::types::{BoxFuture, estimate_prompt_tokens, estimate_tokens};
use crate::{
    ChatRequest, EventStream, FinishReason, LlmError, MessageRole, Provider, StreamEvent, ToolCall,
    Usage,
};

/// The mock provider. See the module docs.
#[derive(Clone, Debug)]
pub struct MockProvider {
    chunk_delay: Duration,
}

impl Default for MockProvider {
    fn default() -> Self {
        Self::new(Duration::from_millis(15))
    }
}

impl MockProvider {
    /// A mock that waits `chunk_delay` between streamed chunks (unless a directive says
    /// otherwise).
    pub fn new(chunk_delay: Duration) -> Self {
        Self { chunk_delay }
    }
}

/// Directives found in the last user message.
#[derive(Debug, Default)]
struct Directives {
    delay_ms: Option<u64>,
    chunks: Option<usize>,
    reply: Option<String>,
    tool: Option<(String, String)>,
    looping: bool,
    error: Option<String>,
    fail_after: Option<usize>,
    no_usage: bool,
}

fn parse_directives(text: &str) -> (Directives, String) {
    let mut directives = Directives::default();
    let mut plain = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("[mock:") {
        plain.push_str(&rest[..start]);
        let after = &rest[start + "[mock:".len()..];
        let Some(end) = find_closing(after) else {
            plain.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let body = &after[..end];
        rest = &after[end + 1..];
        let (key, value) = body.split_once('=').unwrap_or((body, ""));
        match key.trim() {
            "delay_ms" => directives.delay_ms = value.trim().parse().ok(),
            "chunks" => {
                directives.chunks = value.trim().parse().ok().map(|n: usize| n.min(100_000))
            }
            "reply" => directives.reply = Some(value.to_owned()),
            "tool" => {
                let value = value.trim();
                let (name, args) = value.split_once(' ').unwrap_or((value, "{}"));
                directives.tool = Some((name.to_owned(), args.trim().to_owned()));
            }
            "loop" => directives.looping = true,
            "error" => directives.error = Some(value.trim().to_owned()),
            "fail_after" => directives.fail_after = value.trim().parse().ok(),
            "no_usage" => directives.no_usage = true,
            _ => {}
        }
    }
    plain.push_str(rest);
    (directives, plain.trim().to_owned())
}

/// The index of the `]` closing a directive, skipping brackets nested in JSON arguments.
fn find_closing(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ']' if depth == 0 => return Some(i),
            ']' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The longest run of arithmetic (digits, operators, parentheses) holding a digit and an
/// operator between numbers.
fn find_expression(text: &str) -> Option<String> {
    let is_math = |c: char| c.is_ascii_digit() || " .+-*/^%()".contains(c);
    let mut best: Option<&str> = None;
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), '\0')))
    {
        match (is_math(c) && c != '\0', start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                let candidate = text[s..i].trim();
                let has_digit = candidate.chars().any(|c| c.is_ascii_digit());
                let has_op = candidate
                    .trim_start_matches(['-', '('])
                    .chars()
                    .any(|c| "+-*/^%".contains(c));
                if has_digit && has_op && best.is_none_or(|b| candidate.len() > b.len()) {
                    best = Some(candidate);
                }
                start = None;
            }
            _ => {}
        }
    }
    best.map(|b| {
        b.trim_end_matches(['+', '-', '*', '/', '^', '%', '.', ' '])
            .to_owned()
    })
}

/// The text with URLs removed (their digits and slashes are not arithmetic).
fn without_urls(text: &str) -> String {
    text.split_whitespace()
        .filter(|word| !word.contains("://"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn find_url(text: &str) -> Option<String> {
    let start = text.find("https://").or_else(|| text.find("http://"))?;
    let url: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !"\"'<>)]".contains(*c))
        .collect();
    Some(url.trim_end_matches(['.', ',', '?', '!']).to_owned())
}

fn find_timezone(text: &str) -> String {
    text.split_whitespace()
        .skip_while(|w| !w.eq_ignore_ascii_case("in"))
        .nth(1)
        .map(|w| w.trim_end_matches(['?', '.', '!', ',']).to_owned())
        .filter(|w| w.contains('/') || w.eq_ignore_ascii_case("utc"))
        .unwrap_or_else(|| "UTC".to_owned())
}

/// What the mock decided to do this turn.
enum Plan {
    Call { thought: String, call: ToolCall },
    Answer { thought: String, text: String },
}

fn offered(request: &ChatRequest, name: &str) -> bool {
    request.tools.iter().any(|t| t.name == name)
}

fn plan(request: &ChatRequest, directives: &Directives, question: &str) -> Plan {
    let calls_so_far = request
        .messages
        .iter()
        .map(|m| m.tool_calls.len())
        .sum::<usize>();
    let call_id = format!("call_{}", calls_so_far + 1);
    let last = request.messages.last();
    let answering_tool = last.is_some_and(|m| m.role == MessageRole::Tool);

    if let Some((name, args)) = &directives.tool
        && (!answering_tool || directives.looping)
    {
        return Plan::Call {
            thought: format!("I will call the {name} tool."),
            call: ToolCall {
                id: call_id,
                name: name.clone(),
                arguments: args.clone(),
            },
        };
    }
    if answering_tool {
        let result = last.map(|m| m.content.as_str()).unwrap_or_default();
        let tool = request
            .messages
            .iter()
            .rev()
            .flat_map(|m| m.tool_calls.iter())
            .find(|c| last.and_then(|m| m.tool_call_id.as_deref()) == Some(c.id.as_str()))
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "tool".to_owned());
        return Plan::Answer {
            thought: format!("The {tool} tool answered; I can reply now."),
            text: format!("The {tool} tool returned: {result}"),
        };
    }
    if offered(request, "http_fetch")
        && let Some(url) = find_url(question)
    {
        return Plan::Call {
            thought: format!("I should read {url} first."),
            call: ToolCall {
                id: call_id,
                name: "http_fetch".into(),
                arguments: json!({ "url": url }).to_string(),
            },
        };
    }
    if offered(request, "calculator")
        && let Some(expression) = find_expression(&without_urls(question))
    {
        return Plan::Call {
            thought: format!(
                "This needs arithmetic: I will evaluate {expression} with the calculator."
            ),
            call: ToolCall {
                id: call_id,
                name: "calculator".into(),
                arguments: json!({ "expression": expression }).to_string(),
            },
        };
    }
    let lower = question.to_lowercase();
    if offered(request, "current_time") && (lower.contains("time") || lower.contains("date")) {
        let timezone = find_timezone(question);
        return Plan::Call {
            thought: format!("I need the current time in {timezone}."),
            call: ToolCall {
                id: call_id,
                name: "current_time".into(),
                arguments: json!({ "timezone": timezone }).to_string(),
            },
        };
    }
    let text = if let Some(reply) = &directives.reply {
        reply.clone()
    } else if let Some(n) = directives.chunks {
        (1..=n)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    } else if question.is_empty() {
        "Hello! I am the built-in mock model. Configure a provider to talk to a real one."
            .to_owned()
    } else {
        format!(
            "You said: \"{question}\". I am the built-in mock model, so I can only echo you, do \
             arithmetic, tell the time and fetch pages when those tools are enabled. Configure a \
             provider to talk to a real model."
        )
    };
    Plan::Answer {
        thought: "Let me think about how to answer that.".to_owned(),
        text,
    }
}

/// Splits text into word chunks that keep their trailing space, as real streams do.
fn chunks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        current.push(c);
        if c == ' ' {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn error_for(kind: &str) -> LlmError {
    match kind {
        "rate_limited" => LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        },
        "timeout" => LlmError::Timeout("mock timeout".into()),
        "bad_response" => LlmError::BadResponse("mock bad response".into()),
        "unauthorized" => LlmError::Unauthorized("mock unauthorized".into()),
        "rejected" => LlmError::Rejected("the mock was told to refuse this request".into()),
        _ => LlmError::Unavailable("mock unavailable".into()),
    }
}

impl Provider for MockProvider {
    fn kind(&self) -> &'static str {
        "mock"
    }

    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<EventStream, LlmError>> {
        let default_delay = self.chunk_delay;
        Box::pin(async move {
            let last_user = request
                .messages
                .iter()
                .rev()
                .find(|m| m.role == MessageRole::User)
                .map(|m| m.content.clone())
                .unwrap_or_default();
            let (directives, question) = parse_directives(&last_user);
            if let Some(kind) = &directives.error {
                return Err(error_for(kind));
            }
            let delay = directives
                .delay_ms
                .map(Duration::from_millis)
                .unwrap_or(default_delay);
            let prompt_tokens = estimate_prompt_tokens(&request);

            let mut events: Vec<Result<StreamEvent, LlmError>> = Vec::new();
            let mut completion = 0u32;
            // Like a real model, everything it produces (thoughts included) counts against
            // `max_tokens`, and it stops with `length` rather than go beyond it.
            let budget = request.max_tokens.unwrap_or(u32::MAX);
            let finish = match plan(&request, &directives, &question) {
                Plan::Call { thought, call } => {
                    let cost = estimate_tokens(&thought) + estimate_tokens(&call.arguments) + 3;
                    if cost > budget {
                        FinishReason::Length
                    } else {
                        completion += cost;
                        events.extend(
                            chunks(&thought)
                                .into_iter()
                                .map(|c| Ok(StreamEvent::Reasoning(c))),
                        );
                        events.push(Ok(StreamEvent::ToolCall(call)));
                        FinishReason::ToolCalls
                    }
                }
                Plan::Answer { thought, text } => {
                    let thought_cost = estimate_tokens(&thought);
                    if thought_cost <= budget {
                        completion += thought_cost;
                        events.extend(
                            chunks(&thought)
                                .into_iter()
                                .map(|c| Ok(StreamEvent::Reasoning(c))),
                        );
                    }
                    let mut finish = FinishReason::Stop;
                    for chunk in chunks(&text) {
                        let cost = estimate_tokens(&chunk).max(1);
                        if completion + cost > budget {
                            finish = FinishReason::Length;
                            break;
                        }
                        completion += cost;
                        events.push(Ok(StreamEvent::Text(chunk)));
                    }
                    finish
                }
            };
            if let Some(n) = directives.fail_after {
                events.truncate(n);
                events.push(Err(LlmError::BadResponse(
                    "the connection was cut mid-stream".into(),
                )));
            } else {
                let estimated = directives.no_usage;
                events.push(Ok(StreamEvent::Usage(Usage {
                    prompt_tokens,
                    completion_tokens: completion,
                    estimated,
                })));
                events.push(Ok(StreamEvent::Finish(finish)));
            }
            let paced = stream::unfold(
                (events.into_iter(), true),
                move |(mut rest, first)| async move {
                    let next = rest.next()?;
                    if !first && !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((next, (rest, false)))
                },
            );
            Ok(Box::pin(paced) as EventStream)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatMessage, ToolSpec, collect};

    fn tool(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: String::new(),
            parameters: json!({}),
        }
    }

    fn request(messages: Vec<ChatMessage>, tools: &[&str]) -> ChatRequest {
        ChatRequest {
            model: "mock".into(),
            messages,
            tools: tools.iter().map(|t| tool(t)).collect(),
            temperature: None,
            max_tokens: None,
        }
    }

    fn conversation(system: &str, user: &str) -> Vec<ChatMessage> {
        vec![ChatMessage::system(system), ChatMessage::user(user)]
    }

    fn fast() -> MockProvider {
        MockProvider::new(Duration::ZERO)
    }

    #[tokio::test]
    async fn it_answers_deterministically_with_usage() {
        let req = request(conversation("be nice", "hello"), &[]);
        let a = collect(fast().stream(req.clone()).await.unwrap())
            .await
            .unwrap();
        let b = collect(fast().stream(req).await.unwrap()).await.unwrap();
        assert_eq!(a, b);
        assert!(a.text.starts_with("You said: \"hello\""));
        assert!(!a.reasoning.is_empty());
        assert!(a.usage.prompt_tokens > 0 && a.usage.completion_tokens > 0);
        assert!(!a.usage.estimated);
        assert_eq!(a.finish_reason, FinishReason::Stop);
    }

    #[tokio::test]
    async fn it_calls_the_calculator_then_answers_with_the_result() {
        let mut messages = conversation("", "what is 12 * (3 + 4)?");
        let first = collect(
            fast()
                .stream(request(messages.clone(), &["calculator"]))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(first.finish_reason, FinishReason::ToolCalls);
        let call = first.tool_calls[0].clone();
        assert_eq!(call.name, "calculator");
        assert_eq!(call.arguments, r#"{"expression":"12 * (3 + 4)"}"#);
        messages.push(ChatMessage::assistant_tool_calls("", vec![call.clone()]));
        messages.push(ChatMessage::tool_result(call.id, "84"));
        let second = collect(
            fast()
                .stream(request(messages, &["calculator"]))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(second.text, "The calculator tool returned: 84");
        assert_eq!(second.finish_reason, FinishReason::Stop);
    }

    #[tokio::test]
    async fn it_uses_only_the_tools_it_is_offered() {
        let answer = collect(
            fast()
                .stream(request(conversation("", "what is 2+2"), &[]))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        assert!(answer.tool_calls.is_empty());
        let time = collect(
            fast()
                .stream(request(
                    conversation("", "what time is it in Europe/Paris?"),
                    &["current_time"],
                ))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(
            time.tool_calls[0].arguments,
            r#"{"timezone":"Europe/Paris"}"#
        );
        let fetch = collect(
            fast()
                .stream(request(
                    conversation("", "summarise https://example.com/a."),
                    &["http_fetch"],
                ))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(
            fetch.tool_calls[0].arguments,
            r#"{"url":"https://example.com/a"}"#
        );
    }

    #[tokio::test]
    async fn directives_make_it_misbehave_on_purpose() {
        let Err(err) = fast()
            .stream(request(
                conversation("", "[mock:error=rate_limited] hi"),
                &[],
            ))
            .await
        else {
            panic!("the mock was told to fail");
        };
        assert_eq!(err.code(), "upstream_rate_limited");
        let stream = fast()
            .stream(request(
                conversation("", "[mock:chunks=10][mock:fail_after=3]"),
                &[],
            ))
            .await
            .unwrap();
        assert_eq!(
            collect(stream).await.unwrap_err().code(),
            "upstream_bad_response"
        );
        let looped = request(
            vec![
                ChatMessage::user(r#"[mock:tool=calculator {"expression": "[1]"}][mock:loop]"#),
                ChatMessage::assistant_tool_calls(
                    "",
                    vec![ToolCall {
                        id: "call_1".into(),
                        name: "calculator".into(),
                        arguments: "{}".into(),
                    }],
                ),
                ChatMessage::tool_result("call_1", "1"),
            ],
            &["calculator"],
        );
        let again = collect(fast().stream(looped).await.unwrap()).await.unwrap();
        assert_eq!(again.tool_calls[0].arguments, r#"{"expression": "[1]"}"#);
        assert_eq!(again.tool_calls[0].id, "call_2");
        let long = collect(
            fast()
                .stream(request(conversation("", "[mock:chunks=50]"), &[]))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        assert!(long.text.ends_with("word50"));
        let exact = collect(
            fast()
                .stream(request(conversation("", "[mock:reply=Exactly this.]"), &[]))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(exact.text, "Exactly this.");
        let unmetered = collect(
            fast()
                .stream(request(conversation("", "[mock:no_usage] hi"), &[]))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        assert!(unmetered.usage.estimated);
    }

    #[tokio::test]
    async fn max_tokens_cuts_the_answer() {
        let mut req = request(conversation("", "[mock:chunks=100]"), &[]);
        req.max_tokens = Some(20);
        let answer = collect(fast().stream(req).await.unwrap()).await.unwrap();
        assert_eq!(answer.finish_reason, FinishReason::Length);
        assert!(answer.usage.completion_tokens <= 20);
    }

    #[tokio::test]
    async fn urls_are_fetched_not_computed() {
        let question = "fetch http://169.254.169.254/latest/meta-data";
        let req = request(conversation("", question), &["calculator", "http_fetch"]);
        let answer = collect(fast().stream(req).await.unwrap()).await.unwrap();
        assert_eq!(answer.tool_calls[0].name, "http_fetch");
    }

    #[test]
    fn expressions_are_found_in_prose() {
        assert_eq!(
            find_expression("what is 12 * (3 + 4)?").as_deref(),
            Some("12 * (3 + 4)")
        );
        assert_eq!(
            find_expression("compute 2^10 please").as_deref(),
            Some("2^10")
        );
        assert_eq!(find_expression("I have 3 apples"), None);
        assert_eq!(
            find_expression("call me at 555-1234").as_deref(),
            Some("555-1234")
        );
    }
}
