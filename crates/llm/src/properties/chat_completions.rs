//! Chat Completions chunk assembly (OpenAI and the GLM dialect): any text, reasoning and tool
//! calls, streamed as fragments in any of the shapes servers send, split into chunks anywhere,
//! assemble into exactly the non-streamed message, tool calls and usage.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

use super::{
    Expected, arguments, assemble, block_on, cuts, decode, interleave, pieces, request, tool_name,
    tricky_string,
};
use crate::openai::{ChunkDecoder, Dialect};
use crate::{FinishReason, ToolCall};

/// How a server streams tool calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// OpenAI: the first fragment has `index`, `id`, `name` and empty arguments; the others the
    /// `index` and a piece of the arguments. Parallel calls interleave.
    Indexed,
    /// GLM-4: each call whole in one fragment, with its `index`.
    Whole,
    /// GLM: no `index`; the `id` and `name` repeated on every fragment.
    RepeatedId,
    /// No `index`; only the first fragment has the `id` and `name`.
    FirstOnly,
}

#[derive(Clone, Debug)]
struct Call {
    id: String,
    name: String,
    arguments: String,
    cuts: Vec<Index>,
}

#[derive(Clone, Debug)]
struct Answer {
    dialect: Dialect,
    style: Style,
    reasoning: String,
    reasoning_cuts: Vec<Index>,
    /// `reasoning` rather than `reasoning_content` (vLLM).
    reasoning_field: bool,
    text: String,
    text_cuts: Vec<Index>,
    calls: Vec<Call>,
    usage: Option<(u32, u32)>,
    /// `finish_reason: "stop"` after tool calls (older Ollama, vLLM).
    stop_after_calls: bool,
    done: bool,
    /// How the pieces of text, reasoning and calls interleave.
    picks: Vec<Index>,
}

/// One delta's content.
enum Item {
    Reasoning(String),
    Text(String),
    Fragment(Value),
}

impl Answer {
    fn fragments(&self, n: usize, call: &Call) -> Vec<Item> {
        let pieces = pieces(&call.arguments, &call.cuts);
        let fragment = |v: Value| Item::Fragment(v);
        match self.style {
            Style::Indexed => std::iter::once(fragment(json!({
                "index": n, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": ""},
            })))
            .chain(
                pieces
                    .into_iter()
                    .map(|piece| fragment(json!({"index": n, "function": {"arguments": piece}}))),
            )
            .collect(),
            Style::Whole => vec![fragment(json!({
                "id": call.id, "index": n, "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }))],
            Style::RepeatedId => pieces
                .into_iter()
                .map(|piece| {
                    fragment(json!({
                        "id": call.id, "type": "function",
                        "function": {"name": call.name, "arguments": piece},
                    }))
                })
                .collect(),
            Style::FirstOnly => pieces
                .into_iter()
                .enumerate()
                .map(|(i, piece)| {
                    fragment(if i == 0 {
                        json!({
                            "id": call.id, "type": "function",
                            "function": {"name": call.name, "arguments": piece},
                        })
                    } else {
                        json!({"type": "function", "function": {"arguments": piece}})
                    })
                })
                .collect(),
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>, usage: Option<Value>) -> String {
        let chunk = match self.dialect {
            Dialect::OpenAi => json!({
                "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
                "object": "chat.completion.chunk",
                "created": 1741569952,
                "model": "gpt-4o-mini-2024-07-18",
                "service_tier": "default",
                "system_fingerprint": "fp_06737a9306",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
                "usage": usage,
            }),
            Dialect::Glm => {
                let mut choice = json!({"index": 0, "delta": delta});
                if let Some(reason) = finish_reason {
                    choice["finish_reason"] = json!(reason);
                }
                let mut chunk = json!({
                    "id": "2024101714523491b3ab1cc8a94a4c",
                    "created": 1729147954,
                    "model": "glm-4-plus",
                    "choices": [choice],
                });
                if let Some(usage) = usage {
                    chunk["usage"] = usage;
                }
                chunk
            }
        };
        format!("data: {chunk}\n\n")
    }

    /// The body, in the dialect's exact wire format.
    fn body(&self) -> Vec<u8> {
        let mut queues = vec![
            pieces(&self.reasoning, &self.reasoning_cuts)
                .into_iter()
                .map(Item::Reasoning)
                .collect(),
            pieces(&self.text, &self.text_cuts)
                .into_iter()
                .map(Item::Text)
                .collect(),
        ];
        let calls = self.calls.iter().enumerate();
        match self.style {
            // Told apart by index: parallel calls may interleave, even start out of order.
            Style::Indexed | Style::Whole => {
                queues.extend(calls.map(|(n, call)| self.fragments(n, call)));
            }
            // Told apart by id or by order: one call after the other.
            Style::RepeatedId | Style::FirstOnly => {
                queues.push(
                    calls
                        .flat_map(|(n, call)| self.fragments(n, call))
                        .collect(),
                );
            }
        }
        let role = match self.dialect {
            Dialect::OpenAi => json!({"role": "assistant", "content": "", "refusal": null}),
            Dialect::Glm => json!({"role": "assistant", "content": ""}),
        };
        let mut body = self.chunk(role, None, None);
        let reasoning_field = if self.reasoning_field {
            "reasoning"
        } else {
            "reasoning_content"
        };
        for item in interleave(queues, &self.picks) {
            let delta = match item {
                Item::Reasoning(piece) => json!({ reasoning_field: piece }),
                Item::Text(piece) => json!({"content": piece}),
                Item::Fragment(fragment) => json!({"tool_calls": [fragment]}),
            };
            let delta = match (self.dialect, delta) {
                (Dialect::Glm, Value::Object(mut map)) => {
                    map.insert("role".into(), json!("assistant"));
                    Value::Object(map)
                }
                (_, delta) => delta,
            };
            body += &self.chunk(delta, None, None);
        }
        let finish = if self.calls.is_empty() || self.stop_after_calls {
            "stop"
        } else {
            "tool_calls"
        };
        let usage = self.usage.map(|(prompt, completion)| {
            json!({
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": u64::from(prompt) + u64::from(completion),
            })
        });
        match self.dialect {
            Dialect::OpenAi => {
                body += &self.chunk(json!({}), Some(finish), None);
                if let Some(usage) = usage {
                    // `stream_options.include_usage`: a last chunk with no choices.
                    let chunk = json!({
                        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
                        "object": "chat.completion.chunk",
                        "created": 1741569952,
                        "model": "gpt-4o-mini-2024-07-18",
                        "choices": [],
                        "usage": usage,
                    });
                    body += &format!("data: {chunk}\n\n");
                }
            }
            Dialect::Glm => {
                body += &self.chunk(
                    json!({"role": "assistant", "content": ""}),
                    Some(finish),
                    usage,
                );
            }
        }
        if self.done {
            body += "data: [DONE]\n\n";
        }
        body.into_bytes()
    }

    fn expected(&self) -> Expected {
        Expected {
            text: self.text.clone(),
            reasoning: self.reasoning.clone(),
            tool_calls: self
                .calls
                .iter()
                .map(|call| ToolCall {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                })
                .collect(),
            prompt_tokens: self.usage.map(|(prompt, _)| prompt),
            completion_tokens: self.usage.map(|(_, completion)| completion),
            finish_reason: if self.calls.is_empty() {
                FinishReason::Stop
            } else {
                FinishReason::ToolCalls
            },
        }
    }
}

fn calls() -> impl Strategy<Value = Vec<Call>> {
    prop::collection::vec(
        (
            "[A-Za-z0-9]{1,24}",
            tool_name(),
            arguments(),
            prop::collection::vec(any::<Index>(), 0..12),
        ),
        0..4,
    )
    .prop_map(|calls| {
        calls
            .into_iter()
            .enumerate()
            .map(|(n, (suffix, name, arguments, cuts))| Call {
                id: format!("call_{n}{suffix}"),
                name,
                arguments,
                cuts,
            })
            .collect()
    })
}

fn answer() -> impl Strategy<Value = Answer> {
    let dialect_style = prop_oneof![
        Just((Dialect::OpenAi, Style::Indexed)),
        Just((Dialect::Glm, Style::Indexed)),
        Just((Dialect::Glm, Style::Whole)),
        Just((Dialect::Glm, Style::RepeatedId)),
        Just((Dialect::Glm, Style::FirstOnly)),
    ];
    let text = (
        tricky_string(16),
        prop::collection::vec(any::<Index>(), 0..6),
        any::<bool>(),
        tricky_string(40),
        prop::collection::vec(any::<Index>(), 0..10),
    );
    let ending = (
        prop::option::of((0..1u32 << 30, 0..1u32 << 30)),
        any::<bool>(),
        prop_oneof![4 => Just(true), 1 => Just(false)],
        prop::collection::vec(any::<Index>(), 0..16),
    );
    (dialect_style, text, calls(), ending).prop_map(
        |(
            (dialect, style),
            (reasoning, reasoning_cuts, reasoning_field, text, text_cuts),
            calls,
            (usage, stop_after_calls, done, picks),
        )| Answer {
            dialect,
            style,
            reasoning,
            reasoning_cuts,
            reasoning_field,
            text,
            text_cuts,
            calls,
            usage,
            stop_after_calls,
            done,
            picks,
        },
    )
}

proptest! {
    // Bodies of a few kilobytes, some cut byte by byte: fewer cases keep this under a second.
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn streamed_chat_completions_assemble_into_the_whole_answer(
        answer in answer(),
        cuts in cuts(),
    ) {
        let body = answer.body();
        let expected = answer.expected().response();
        let (whole, split) = block_on(async {
            (
                decode(vec![body.clone()], ChunkDecoder::new(&request(), answer.dialect)).await,
                decode(cuts.apply(&body), ChunkDecoder::new(&request(), answer.dialect)).await,
            )
        });
        prop_assert_eq!(assemble(&whole), Ok(expected));
        prop_assert_eq!(whole, split);
    }
}

fn openai_chunk(delta: Value, finish_reason: Option<&str>) -> String {
    let chunk = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1741569952,
        "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    });
    format!("data: {chunk}\n\n")
}

fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
    }
}

/// Regression (found by the property above): parallel calls whose first fragments arrive out
/// of index order were listed in arrival order, not in the message's (index) order.
#[test]
fn parallel_calls_are_listed_in_index_order() {
    let body = openai_chunk(
        json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "second", "arguments": ""}}]}),
        None,
    ) + &openai_chunk(
        json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "first", "arguments": "{\"n\":"}}]}),
        None,
    ) + &openai_chunk(
        json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"n\":2}"}}]}),
        None,
    ) + &openai_chunk(
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        None,
    ) + &openai_chunk(json!({}), Some("tool_calls"))
        + "data: [DONE]\n\n";
    let response = assemble(&block_on(decode(
        vec![body.into_bytes()],
        ChunkDecoder::new(&request(), Dialect::OpenAi),
    )))
    .map(|response| response.tool_calls);
    assert_eq!(
        response,
        Ok(vec![
            call("call_a", "first", r#"{"n":1}"#),
            call("call_b", "second", r#"{"n":2}"#),
        ])
    );
}

/// Regression (found by the property above): GLM repeats a call's name on every fragment, and
/// each repetition was counted again in the usage estimate when GLM reported no usage.
#[test]
fn a_repeated_name_is_counted_once_in_the_estimate() {
    let fragment = |piece: &str| {
        openai_chunk(
            json!({"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "a_rather_long_tool_name", "arguments": piece}}]}),
            None,
        )
    };
    let body = ["{\"ci", "ty\":", "\"北", "京\"}"]
        .into_iter()
        .map(fragment)
        .collect::<String>()
        + &openai_chunk(json!({}), Some("tool_calls"))
        + "data: [DONE]\n\n";
    let response = assemble(&block_on(decode(
        vec![body.into_bytes()],
        ChunkDecoder::new(&request(), Dialect::Glm),
    )));
    let expected = Expected {
        text: String::new(),
        reasoning: String::new(),
        tool_calls: vec![call(
            "call_1",
            "a_rather_long_tool_name",
            r#"{"city":"北京"}"#,
        )],
        prompt_tokens: None,
        completion_tokens: None,
        finish_reason: FinishReason::ToolCalls,
    };
    // 23 + 13 characters: 9 tokens (not 27, the name counted on each of its 4 fragments).
    assert_eq!(expected.response().usage.completion_tokens, 9);
    assert_eq!(response, Ok(expected.response()));
}
