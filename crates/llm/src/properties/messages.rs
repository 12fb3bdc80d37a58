//! Anthropic Messages event assembly: any thinking, text and tool-use blocks, their deltas cut
//! anywhere, pings anywhere, usage reported or not, split into chunks anywhere, assemble into
//! exactly the non-streamed message, tool calls and usage.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

use super::{
    Expected, arguments, assemble, block_on, cuts, decode, pieces, request, tool_name,
    tricky_string,
};
use crate::anthropic::MessagesDecoder;
use crate::{FinishReason, ToolCall};

#[derive(Clone, Debug)]
enum Block {
    Thinking(String, Vec<Index>),
    Text(String, Vec<Index>),
    ToolUse {
        id: String,
        name: String,
        arguments: String,
        cuts: Vec<Index>,
    },
}

#[derive(Clone, Debug)]
struct Message {
    blocks: Vec<Block>,
    /// Input, cache-creation and cache-read tokens, when `message_start` reports them.
    input: Option<(u32, u32, u32)>,
    /// Output tokens, when reported (`message_start` then `message_delta`).
    output: Option<u32>,
    /// `end_turn` rather than `tool_use` after tool calls.
    end_turn_after_calls: bool,
    /// Where `ping` events go.
    pings: Vec<Index>,
}

fn event(data: &Value) -> String {
    let kind = data["type"].as_str().unwrap_or_default();
    format!("event: {kind}\ndata: {data}\n\n")
}

impl Message {
    /// The body, in the exact wire format.
    fn body(&self) -> Vec<u8> {
        let mut usage = json!({"output_tokens": 1, "service_tier": "standard"});
        if let Some((input, creation, read)) = self.input {
            usage["input_tokens"] = json!(input);
            usage["cache_creation_input_tokens"] = json!(creation);
            usage["cache_read_input_tokens"] = json!(read);
        }
        if self.output.is_none() {
            usage.as_object_mut().map(|u| u.remove("output_tokens"));
        }
        let mut events = vec![event(&json!({
            "type": "message_start",
            "message": {
                "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant",
                "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": usage,
            },
        }))];
        for (index, block) in self.blocks.iter().enumerate() {
            let delta = |delta: Value| {
                event(&json!({"type": "content_block_delta", "index": index, "delta": delta}))
            };
            let (start, deltas) = match block {
                Block::Thinking(thinking, cuts) => (
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    pieces(thinking, cuts)
                        .into_iter()
                        .map(|piece| delta(json!({"type": "thinking_delta", "thinking": piece})))
                        .chain([delta(json!({
                            "type": "signature_delta",
                            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
                        }))])
                        .collect::<Vec<_>>(),
                ),
                Block::Text(text, cuts) => (
                    json!({"type": "text", "text": ""}),
                    pieces(text, cuts)
                        .into_iter()
                        .map(|piece| delta(json!({"type": "text_delta", "text": piece})))
                        .collect(),
                ),
                Block::ToolUse {
                    id,
                    name,
                    arguments,
                    cuts,
                } => (
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    std::iter::once(String::new())
                        .chain(pieces(arguments, cuts))
                        .map(|piece| {
                            delta(json!({"type": "input_json_delta", "partial_json": piece}))
                        })
                        .collect(),
                ),
            };
            events.push(event(&json!({
                "type": "content_block_start", "index": index, "content_block": start,
            })));
            events.extend(deltas);
            events.push(event(
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
        let called = self.has_calls();
        let stop_reason = if called && !self.end_turn_after_calls {
            "tool_use"
        } else {
            "end_turn"
        };
        let mut delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        });
        if let Some(output) = self.output {
            delta["usage"] = json!({"output_tokens": output});
        }
        events.push(event(&delta));
        for ping in &self.pings {
            let at = ping.index(events.len() - 1) + 1; // after message_start
            events.insert(at, event(&json!({"type": "ping"})));
        }
        events.push(event(&json!({"type": "message_stop"})));
        events.concat().into_bytes()
    }

    fn has_calls(&self) -> bool {
        self.blocks
            .iter()
            .any(|block| matches!(block, Block::ToolUse { .. }))
    }

    fn expected(&self) -> Expected {
        let mut expected = Expected {
            text: String::new(),
            reasoning: String::new(),
            tool_calls: Vec::new(),
            prompt_tokens: self
                .input
                .map(|(input, creation, read)| input + creation + read),
            completion_tokens: self.output,
            finish_reason: if self.has_calls() {
                FinishReason::ToolCalls
            } else {
                FinishReason::Stop
            },
        };
        for block in &self.blocks {
            match block {
                Block::Thinking(thinking, _) => expected.reasoning.push_str(thinking),
                Block::Text(text, _) => expected.text.push_str(text),
                Block::ToolUse {
                    id,
                    name,
                    arguments,
                    ..
                } => expected.tool_calls.push(ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: arguments.clone(),
                }),
            }
        }
        expected
    }
}

fn block() -> impl Strategy<Value = Block> {
    let cuts = || prop::collection::vec(any::<Index>(), 0..10);
    prop_oneof![
        1 => (tricky_string(40), cuts()).prop_map(|(text, cuts)| Block::Thinking(text, cuts)),
        2 => (tricky_string(40), cuts()).prop_map(|(text, cuts)| Block::Text(text, cuts)),
        2 => ("[A-Za-z0-9]{24}", tool_name(), arguments(), cuts()).prop_map(
            |(id, name, arguments, cuts)| Block::ToolUse {
                id: format!("toolu_{id}"),
                name,
                arguments,
                cuts,
            }
        ),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        prop::collection::vec(block(), 0..5),
        prop::option::weighted(0.8, (0..1u32 << 28, 0..1u32 << 28, 0..1u32 << 28)),
        prop::option::weighted(0.8, 0..1u32 << 30),
        any::<bool>(),
        prop::collection::vec(any::<Index>(), 0..3),
    )
        .prop_map(
            |(blocks, input, output, end_turn_after_calls, pings)| Message {
                blocks,
                input,
                output,
                end_turn_after_calls,
                pings,
            },
        )
}

proptest! {
    // Bodies of a few kilobytes, some cut byte by byte: fewer cases keep this under a second.
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn streamed_messages_assemble_into_the_whole_message(message in message(), cuts in cuts()) {
        let body = message.body();
        let expected = message.expected().response();
        let (whole, split) = block_on(async {
            (
                decode(vec![body.clone()], MessagesDecoder::new(&request())).await,
                decode(cuts.apply(&body), MessagesDecoder::new(&request())).await,
            )
        });
        prop_assert_eq!(assemble(&whole), Ok(expected));
        prop_assert_eq!(whole, split);
    }
}
