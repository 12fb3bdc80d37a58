//! Property-based tests of the wire parsing: the SSE framing ([`crate::http::sse_events`]) and
//! the providers' chunk assembly ([`crate::openai`] and its GLM dialect, [`crate::anthropic`]).
//!
//! Bodies are built from generated data in each provider's exact wire format (the shapes of the
//! fixtures in `tests/providers/`), then cut into arbitrary chunks, as a network may deliver
//! them: inside UTF-8 characters, inside `\r\n`, one byte at a time. Nothing here opens a
//! socket, so hundreds of cases run in well under a second.

mod chat_completions;
mod messages;
mod sse;

use std::future::Future;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::decode::{Decoder, drive};
use crate::http::sse_events;
use crate::types::{estimate_prompt_tokens, estimate_tokens};
use crate::{
    ChatMessage, ChatRequest, ChatResponse, FinishReason, LlmError, StreamEvent, ToolCall, Usage,
};

/// How long one decoded body may take: far more than any case needs, so that a hang fails the
/// case (and is shrunk) instead of stalling the run.
const DEADLINE: Duration = Duration::from_secs(10);

/// Where a body is cut into chunks.
#[derive(Clone, Debug)]
pub(crate) enum Cuts {
    /// One byte a chunk: every character and every `\r\n` is split.
    Bytewise,
    /// At these positions (taken modulo the body's length + 1); repeated ones give empty chunks.
    At(Vec<Index>),
}

impl Cuts {
    pub(crate) fn apply(&self, body: &[u8]) -> Vec<Vec<u8>> {
        match self {
            Cuts::Bytewise => body.iter().map(|byte| vec![*byte]).collect(),
            Cuts::At(at) => {
                let mut positions: Vec<usize> =
                    at.iter().map(|i| i.index(body.len() + 1)).collect();
                positions.sort_unstable();
                let mut chunks = Vec::with_capacity(positions.len() + 1);
                let mut start = 0;
                for position in positions {
                    chunks.push(body[start..position].to_vec());
                    start = position;
                }
                chunks.push(body[start..].to_vec());
                chunks
            }
        }
    }
}

pub(crate) fn cuts() -> impl Strategy<Value = Cuts> {
    prop_oneof![
        1 => Just(Cuts::Bytewise),
        5 => prop::collection::vec(any::<Index>(), 0..64).prop_map(Cuts::At),
    ]
}

/// Characters that stress every layer: JSON escapes, control characters, multi-byte and astral
/// characters, the BOM, line and paragraph separators, CR and LF; and any character at all.
pub(crate) fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => prop::char::range('a', 'z'),
        3 => prop::sample::select(vec![
            '"', '\\', '/', '\n', '\r', '\t', '\u{0}', '\u{1f}', '\u{7f}', ' ', ':', '{', '}',
            'é', 'ß', '中', '文', '€', '\u{2028}', '\u{2029}', '\u{feff}', '😀', '🦀', '\u{10ffff}',
        ]),
    ]
}

pub(crate) fn tricky_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(tricky_char(), 0..=max).prop_map(|chars| chars.into_iter().collect())
}

/// `text` cut at character boundaries into pieces (some possibly empty), in order.
pub(crate) fn pieces(text: &str, at: &[Index]) -> Vec<String> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let mut cuts: Vec<usize> = at.iter().map(|i| bounds[i.index(bounds.len())]).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        pieces.push(text[start..cut].to_owned());
        start = cut;
    }
    pieces.push(text[start..].to_owned());
    pieces
}

/// A JSON value with unicode and escapes in its strings and keys.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // not finite: null
        tricky_string(12).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(tricky_string(6), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A tool call's arguments as a model writes them: a JSON object, with its non-ASCII
/// characters either as they are or as `\uXXXX` escapes.
pub(crate) fn arguments() -> impl Strategy<Value = String> {
    (
        prop::collection::btree_map(tricky_string(8), json_value(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(map, escape)| {
            let text = serde_json::Value::Object(map.into_iter().collect()).to_string();
            if escape { ascii_escaped(&text) } else { text }
        })
}

/// JSON text with every non-ASCII character written as a `\uXXXX` escape (surrogate pairs
/// beyond the BMP). Non-ASCII characters only occur inside strings, so this is the same JSON.
fn ascii_escaped(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// A tool name as models produce them.
pub(crate) fn tool_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,20}"
}

/// The request every decoded body answers (the usage estimate depends on it).
pub(crate) fn request() -> ChatRequest {
    ChatRequest {
        model: "test-model".into(),
        messages: vec![
            ChatMessage::system("You are terse."),
            ChatMessage::user("Say hello."),
        ],
        tools: vec![],
        temperature: None,
        max_tokens: None,
    }
}

pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// Every event parsed from `chunks`, errors included.
pub(crate) async fn sse(chunks: Vec<Vec<u8>>) -> Vec<Result<eventsource_stream::Event, LlmError>> {
    let events = sse_events(stream::iter(chunks.into_iter().map(Ok::<_, LlmError>)));
    tokio::time::timeout(DEADLINE, events.collect())
        .await
        .expect("the events end")
}

/// Every item `decoder` yields for the body `chunks`, errors included.
pub(crate) async fn decode<D: Decoder>(
    chunks: Vec<Vec<u8>>,
    decoder: D,
) -> Vec<Result<StreamEvent, LlmError>> {
    let events = Box::pin(sse_events(stream::iter(
        chunks.into_iter().map(Ok::<_, LlmError>),
    )));
    let stream = drive("property", events, decoder);
    tokio::time::timeout(DEADLINE, stream.collect())
        .await
        .expect("the stream ends")
}

/// Checks the stream contract (deltas and tool calls, then exactly one `Usage` and one
/// `Finish`; or an error as the last item) and assembles the response as [`crate::collect`]
/// does.
pub(crate) fn assemble(items: &[Result<StreamEvent, LlmError>]) -> Result<ChatResponse, LlmError> {
    if let Some(position) = items.iter().position(Result::is_err) {
        assert_eq!(
            position + 1,
            items.len(),
            "nothing follows an error: {items:?}"
        );
    }
    let mut response = ChatResponse {
        text: String::new(),
        reasoning: String::new(),
        tool_calls: Vec::new(),
        usage: Usage::default(),
        finish_reason: FinishReason::Other,
    };
    let (mut usages, mut finishes) = (0, 0);
    for item in items {
        let event = item.clone()?;
        assert_eq!(finishes, 0, "nothing follows the finish: {items:?}");
        match event {
            StreamEvent::Text(delta) => {
                assert!(usages == 0 && !delta.is_empty(), "{items:?}");
                response.text.push_str(&delta);
            }
            StreamEvent::Reasoning(delta) => {
                assert!(usages == 0 && !delta.is_empty(), "{items:?}");
                response.reasoning.push_str(&delta);
            }
            StreamEvent::ToolCall(call) => {
                assert_eq!(usages, 0, "{items:?}");
                response.tool_calls.push(call);
            }
            StreamEvent::Usage(usage) => {
                usages += 1;
                response.usage = usage;
            }
            StreamEvent::Finish(reason) => {
                assert_eq!(usages, 1, "one usage before the finish: {items:?}");
                finishes += 1;
                response.finish_reason = reason;
            }
        }
    }
    assert_eq!((usages, finishes), (1, 1), "a complete stream: {items:?}");
    Ok(response)
}

/// What a body should assemble into: the non-streamed response it is the stream of.
#[derive(Clone, Debug)]
pub(crate) struct Expected {
    pub text: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    /// Prompt and completion tokens as the provider reports them, where it does.
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub finish_reason: FinishReason,
}

impl Expected {
    pub(crate) fn response(&self) -> ChatResponse {
        // The estimate counts everything the model produced, however it was streamed.
        let mut generated = self.text.clone() + &self.reasoning;
        for call in &self.tool_calls {
            generated.push_str(&call.name);
            generated.push_str(&call.arguments);
        }
        ChatResponse {
            text: self.text.clone(),
            reasoning: self.reasoning.clone(),
            tool_calls: self.tool_calls.clone(),
            usage: Usage {
                prompt_tokens: self
                    .prompt_tokens
                    .unwrap_or_else(|| estimate_prompt_tokens(&request())),
                completion_tokens: self
                    .completion_tokens
                    .unwrap_or_else(|| estimate_tokens(&generated)),
                estimated: self.prompt_tokens.is_none() || self.completion_tokens.is_none(),
            },
            finish_reason: self.finish_reason,
        }
    }
}

/// Merges ordered queues into one sequence, each queue's items staying in order; `picks` says
/// which non-empty queue gives the next item.
pub(crate) fn interleave<T>(queues: Vec<Vec<T>>, picks: &[Index]) -> Vec<T> {
    let mut queues: Vec<std::collections::VecDeque<T>> =
        queues.into_iter().map(Into::into).collect();
    let mut merged = Vec::new();
    let mut turn = 0;
    loop {
        let open: Vec<usize> = (0..queues.len())
            .filter(|&q| !queues[q].is_empty())
            .collect();
        if open.is_empty() {
            return merged;
        }
        let pick = picks
            .get(turn % picks.len().max(1))
            .map_or(0, |i| i.index(open.len()));
        turn += 1;
        if let Some(item) = queues[open[pick]].pop_front() {
            merged.push(item);
        }
    }
}
