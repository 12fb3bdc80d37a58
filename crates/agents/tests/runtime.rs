//! The tool-calling loop over the mock model: answers, tool rounds, every guardrail, failures,
//! cancellation.

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use paas_agents::runtime::{Guardrails, LimitReason, RunEvent, RunResult, RunSpec, run};
use paas_agents::tools::{BoxFuture, HttpFetchConfig, Tool, ToolError, ToolRegistry};
use paas_llm::mock::MockProvider;
use paas_llm::{ChatMessage, MessageRole, ToolSpec};
use paas_models::RunStatus;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn limits() -> Guardrails {
    Guardrails {
        max_steps: 8,
        max_tokens: 4096,
        timeout: Duration::from_secs(10),
        tool_timeout: Duration::from_secs(2),
        max_repeats: 2,
    }
}

fn spec(tools: &[&str], limits: Guardrails) -> RunSpec {
    RunSpec {
        system_prompt: "You are a test agent.".into(),
        model: "mock".into(),
        temperature: None,
        tools: tools.iter().map(|t| (*t).to_owned()).collect(),
        limits,
        budget: None,
    }
}

async fn go(message: &str, spec: RunSpec, registry: ToolRegistry) -> (RunResult, Vec<RunEvent>) {
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let provider = Arc::new(MockProvider::new(Duration::ZERO));
    let result = run(
        provider,
        &registry,
        &spec,
        vec![ChatMessage::user(message)],
        CancellationToken::new(),
        sender,
    )
    .await;
    let mut events = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        events.push(event);
    }
    (result, events)
}

fn registry() -> ToolRegistry {
    ToolRegistry::builtin(HttpFetchConfig::default())
}

fn text(events: &[RunEvent]) -> String {
    events
        .iter()
        .filter_map(|e| {
            if let RunEvent::Message(t) = e {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect()
}

#[tokio::test]
async fn a_plain_question_gets_thoughts_an_answer_usage_and_done() {
    let (result, events) = go("hello", spec(&[], limits()), registry()).await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.steps, 1);
    assert!(matches!(events.first(), Some(RunEvent::Thought(_))));
    assert!(text(&events).starts_with("You said: \"hello\""));
    let usage = events
        .iter()
        .find_map(|e| {
            if let RunEvent::Usage(u) = e {
                Some(*u)
            } else {
                None
            }
        })
        .unwrap();
    assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0 && !usage.estimated);
    assert!(matches!(
        events.last(),
        Some(RunEvent::Done {
            status: RunStatus::Completed,
            steps: 1,
            ..
        })
    ));
    assert_eq!(result.transcript.len(), 1);
    assert_eq!(result.transcript[0].message.role, MessageRole::Assistant);
    assert!(!result.transcript[0].reasoning.is_empty());
}

#[tokio::test]
async fn tool_calls_run_and_their_results_reach_the_model() {
    let (result, events) = go(
        "what is 6 * 7?",
        spec(&["calculator"], limits()),
        registry(),
    )
    .await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.steps, 2);
    let call = events
        .iter()
        .find(|e| matches!(e, RunEvent::ToolCall { .. }))
        .unwrap();
    assert_eq!(
        call,
        &RunEvent::ToolCall {
            id: "call_1".into(),
            name: "calculator".into(),
            arguments: r#"{"expression":"6 * 7"}"#.into()
        }
    );
    let output = events
        .iter()
        .find(|e| matches!(e, RunEvent::ToolResult { .. }))
        .unwrap();
    assert_eq!(
        output,
        &RunEvent::ToolResult {
            id: "call_1".into(),
            name: "calculator".into(),
            content: "42".into(),
            is_error: false
        }
    );
    assert_eq!(text(&events), "The calculator tool returned: 42");
    let roles: Vec<_> = result.transcript.iter().map(|t| t.message.role).collect();
    assert_eq!(
        roles,
        [
            MessageRole::Assistant,
            MessageRole::Tool,
            MessageRole::Assistant
        ]
    );
    assert_eq!(
        result.transcript[1].tool_name.as_deref(),
        Some("calculator")
    );
    assert_eq!(
        result.usage.completion_tokens,
        result
            .transcript
            .iter()
            .map(|t| t.usage.completion_tokens)
            .sum::<u32>()
    );
}

#[tokio::test]
async fn max_steps_ends_a_run_that_keeps_calling_tools() {
    let limits = Guardrails {
        max_steps: 3,
        max_repeats: 100,
        ..limits()
    };
    let message = r#"[mock:tool=calculator {"expression": "1+1"}][mock:loop]"#;
    let (result, events) = go(message, spec(&["calculator"], limits), registry()).await;
    assert_eq!(result.status, RunStatus::Limited);
    assert_eq!(result.limit, Some(LimitReason::MaxSteps));
    assert_eq!(result.steps, 3);
    assert!(events.iter().any(|e| matches!(
        e,
        RunEvent::Limit {
            reason: LimitReason::MaxSteps,
            ..
        }
    )));
}

#[tokio::test]
async fn the_same_tool_call_repeating_ends_the_run() {
    let message = r#"[mock:tool=calculator {"expression": "1+1"}][mock:loop]"#;
    let (result, events) = go(message, spec(&["calculator"], limits()), registry()).await;
    assert_eq!(result.limit, Some(LimitReason::RepeatedToolCall));
    let calls = events
        .iter()
        .filter(|e| matches!(e, RunEvent::ToolCall { .. }))
        .count();
    assert_eq!(
        calls, 2,
        "two identical calls are allowed, the third is not made"
    );
}

#[tokio::test]
async fn max_tokens_cuts_the_answer_and_keeps_the_part_written() {
    let limits = Guardrails {
        max_tokens: 20,
        ..limits()
    };
    let (result, events) = go("[mock:chunks=500]", spec(&[], limits), registry()).await;
    assert_eq!(result.limit, Some(LimitReason::MaxTokens));
    assert!(result.usage.completion_tokens <= 20);
    assert!(text(&events).starts_with("word1 "));
    assert_eq!(result.transcript[0].message.content, text(&events));
}

#[tokio::test]
async fn the_wall_clock_limit_stops_a_slow_run() {
    let limits = Guardrails {
        timeout: Duration::from_millis(500),
        ..limits()
    };
    let (result, events) = go(
        "[mock:delay_ms=30][mock:chunks=100]",
        spec(&[], limits),
        registry(),
    )
    .await;
    assert_eq!(result.limit, Some(LimitReason::Timeout));
    assert!(!text(&events).is_empty(), "the partial answer was streamed");
    assert!(
        result.usage.estimated,
        "cut before the provider reported usage: estimated"
    );
    assert!(result.usage.completion_tokens > 0);
}

#[tokio::test]
async fn a_provider_failure_is_an_error_event_and_keeps_the_partial_answer() {
    let (result, events) = go("[mock:error=rate_limited]", spec(&[], limits()), registry()).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(
        result.error.as_ref().map(|e| e.0.as_str()),
        Some("upstream_rate_limited")
    );
    assert_eq!(
        result.usage.total(),
        0,
        "nothing was sent, nothing is billed"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, RunEvent::Error { code, .. } if code == "upstream_rate_limited"))
    );

    let (result, events) = go(
        "[mock:chunks=50][mock:fail_after=12]",
        spec(&[], limits()),
        registry(),
    )
    .await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(
        result.error.as_ref().map(|e| e.0.as_str()),
        Some("upstream_bad_response")
    );
    assert!(!text(&events).is_empty());
    assert_eq!(
        result.transcript[0].message.content,
        text(&events),
        "the partial answer is kept"
    );
    assert!(
        result.usage.estimated
            && result.usage.completion_tokens > 0
            && result.usage.prompt_tokens > 0
    );
}

#[tokio::test]
async fn tools_the_agent_lacks_or_bad_arguments_are_reported_to_the_model() {
    let (result, events) = go(
        r#"[mock:tool=http_fetch {"url": "https://example.com"}]"#,
        spec(&["calculator"], limits()),
        registry(),
    )
    .await;
    assert_eq!(result.status, RunStatus::Completed);
    assert!(events.iter().any(|e| matches!(e, RunEvent::ToolResult { is_error: true, content, .. } if content.contains("no tool named"))));
    let (_, events) = go(
        "[mock:tool=calculator not-json]",
        spec(&["calculator"], limits()),
        registry(),
    )
    .await;
    assert!(events.iter().any(|e| matches!(e, RunEvent::ToolResult { is_error: true, content, .. } if content.contains("not valid JSON"))));
}

#[derive(Debug)]
struct Sleepy;

impl Tool for Sleepy {
    fn name(&self) -> &'static str {
        "sleepy"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "sleepy".into(),
            description: "sleeps".into(),
            parameters: json!({"type": "object"}),
        }
    }

    fn call(&self, _arguments: serde_json::Value) -> BoxFuture<'_, Result<String, ToolError>> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok("late".into())
        })
    }
}

#[tokio::test]
async fn a_tool_overrunning_its_timeout_ends_the_run_with_a_tool_timeout_limit() {
    let limits = Guardrails {
        tool_timeout: Duration::from_millis(100),
        ..limits()
    };
    let registry = registry().with_tool(Arc::new(Sleepy));
    let started = std::time::Instant::now();
    let (result, events) = go("[mock:tool=sleepy {}]", spec(&["sleepy"], limits), registry).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the run ended at the tool's timeout, not when the tool finished"
    );
    assert_eq!(result.status, RunStatus::Limited);
    assert_eq!(result.limit, Some(LimitReason::ToolTimeout));
    assert_eq!(LimitReason::ToolTimeout.as_str(), "tool_timeout");
    assert_eq!(result.steps, 1, "the model is not called again");
    // The timed-out call keeps an error result, then `limit` and `done` end the run.
    let tail: Vec<&RunEvent> = events
        .iter()
        .skip_while(|e| !matches!(e, RunEvent::ToolCall { .. }))
        .collect();
    assert!(matches!(tail[0], RunEvent::ToolCall { name, .. } if name == "sleepy"));
    assert!(
        matches!(tail[1], RunEvent::ToolResult { is_error: true, content, .. } if content.contains("did not finish"))
    );
    match tail[2] {
        RunEvent::Limit { reason, message } => {
            assert_eq!(*reason, LimitReason::ToolTimeout);
            assert!(message.contains("tool call"), "{message}");
        }
        other => panic!("expected a limit event, got {other:?}"),
    }
    assert!(matches!(
        tail[3],
        RunEvent::Done {
            status: RunStatus::Limited,
            ..
        }
    ));
    assert_eq!(tail.len(), 4);
    let wire = serde_json::to_value(tail[2]).unwrap();
    assert_eq!(wire["data"]["reason"], "tool_timeout");
    // The transcript pairs the assistant's tool call with its (error) result.
    assert_eq!(result.transcript.len(), 2);
    let call_id = &result.transcript[0].message.tool_calls[0].id;
    let answer = &result.transcript[1];
    assert_eq!(answer.message.role, MessageRole::Tool);
    assert_eq!(answer.message.tool_call_id.as_ref(), Some(call_id));
    assert!(answer.is_error);
    assert_eq!(answer.tool_name.as_deref(), Some("sleepy"));
}

#[tokio::test]
async fn cancelling_stops_the_run_promptly() {
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let provider = Arc::new(MockProvider::new(Duration::from_millis(50)));
    let spec = spec(&[], limits());
    let registry = registry();
    let canceller = cancel.clone();
    let handle = tokio::spawn(async move {
        run(
            provider,
            &registry,
            &spec,
            vec![ChatMessage::user("[mock:chunks=1000]")],
            cancel,
            sender,
        )
        .await
    });
    // Wait for the answer to start, then cancel.
    while !matches!(receiver.recv().await, Some(RunEvent::Message(_))) {}
    canceller.cancel();
    let result = tokio::time::timeout(Duration::from_secs(2), handle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.status, RunStatus::Cancelled);
    assert!(
        !result.transcript.is_empty(),
        "what was written before the cancel is kept"
    );
}

#[tokio::test]
async fn a_dropped_watcher_does_not_stop_the_run() {
    let (sender, receiver) = mpsc::unbounded_channel();
    drop(receiver);
    let provider = Arc::new(MockProvider::new(Duration::ZERO));
    let result = run(
        provider,
        &registry(),
        &spec(&["calculator"], limits()),
        vec![ChatMessage::user("2+2")],
        CancellationToken::new(),
        sender,
    )
    .await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(
        result.transcript.last().map(|t| t.message.content.as_str()),
        Some("The calculator tool returned: 4")
    );
}

/// A budget that grants up to `left` more tokens in total and records what was asked.
#[derive(Debug)]
struct Allowance {
    left: std::sync::Mutex<u64>,
    asked: std::sync::Mutex<Vec<u64>>,
}

impl paas_agents::runtime::TokenBudget for Allowance {
    fn reserve(&self, tokens: u64) -> futures_util::future::BoxFuture<'_, bool> {
        self.asked.lock().unwrap().push(tokens);
        let mut left = self.left.lock().unwrap();
        let granted = *left >= tokens;
        if granted {
            *left -= tokens;
        }
        Box::pin(async move { granted })
    }
}

fn budgeted(tools: &[&str], left: u64) -> (RunSpec, Arc<Allowance>, ChatMessage) {
    let allowance = Arc::new(Allowance {
        left: std::sync::Mutex::new(left),
        asked: std::sync::Mutex::new(Vec::new()),
    });
    let mut spec = spec(tools, limits());
    let question = ChatMessage::user("what is 6 * 7?");
    let first = paas_agents::runtime::first_call_reservation(
        &registry(),
        &spec,
        std::slice::from_ref(&question),
    );
    spec.budget = Some(paas_agents::runtime::Budget {
        granted: first,
        source: allowance.clone(),
    });
    (spec, allowance, question)
}

#[tokio::test]
async fn later_model_calls_reserve_more_tokens_and_the_run_stays_within_them() {
    let (spec, allowance, question) = budgeted(&["calculator"], 1_000_000);
    let granted_first = spec.budget.as_ref().unwrap().granted;
    let (result, _) = go(&question.content, spec, registry()).await;
    assert_eq!(result.status, RunStatus::Completed);
    let asked: u64 = allowance.asked.lock().unwrap().iter().sum();
    assert!(
        !allowance.asked.lock().unwrap().is_empty(),
        "the second call asked for more"
    );
    let used = u64::from(result.usage.prompt_tokens) + u64::from(result.usage.completion_tokens);
    assert!(
        used <= granted_first + asked,
        "used {used} within reserved {}",
        granted_first + asked
    );
}

#[tokio::test]
async fn a_refused_reservation_ends_the_run_with_a_token_quota_limit() {
    let (spec, _, question) = budgeted(&["calculator"], 0);
    let (result, events) = go(&question.content, spec, registry()).await;
    assert_eq!(result.status, RunStatus::Limited);
    assert_eq!(result.limit, Some(LimitReason::TokenQuota));
    assert_eq!(
        result.steps, 1,
        "the first call ran on the initial reservation"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        RunEvent::Limit {
            reason: LimitReason::TokenQuota,
            ..
        }
    )));
}
