//! The SSE framing: any valid event stream parses into the same events however its bytes are
//! split; any bytes at all decode the same way whole and split, keep the stream contract and
//! never panic or hang; bytes that are not an event stream are `upstream_bad_response`, at once.

use std::time::Duration;

use eventsource_stream::Event;
use futures_util::{StreamExt, stream};
use proptest::prelude::*;
use proptest::sample::Index;

use super::{Cuts, assemble, block_on, cuts, decode, request, sse, tricky_char};
use crate::LlmError;
use crate::anthropic::MessagesDecoder;
use crate::http::{MAX_EVENT_BYTES, sse_events};
use crate::openai::{ChunkDecoder, Dialect};

/// One line of an event.
#[derive(Clone, Debug)]
enum Line {
    Event(String),
    Data(String),
    /// `data` without a colon: an empty data line.
    BareData,
    Id(String),
    Retry(u32),
    Comment(String),
    /// A field the parser ignores.
    Other(String, String),
}

/// How lines end.
#[derive(Clone, Debug)]
enum Eol {
    Lf,
    CrLf,
    Cr,
    /// LF or CRLF, line by line.
    Mixed(Vec<bool>),
}

/// An event stream: events (each ends with a blank line), then maybe lines of an event the body
/// ends before finishing.
#[derive(Clone, Debug)]
struct Body {
    bom: bool,
    events: Vec<Vec<Line>>,
    unfinished: Vec<Line>,
    eol: Eol,
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        if self.bom {
            out.push('\u{feff}');
        }
        let mut n = 0;
        let mut eol = |out: &mut String| {
            out.push_str(match &self.eol {
                Eol::Lf => "\n",
                Eol::CrLf => "\r\n",
                Eol::Cr => "\r",
                Eol::Mixed(crlf) if crlf.get(n % crlf.len().max(1)) == Some(&true) => "\r\n",
                Eol::Mixed(_) => "\n",
            });
            n += 1;
        };
        let line = |out: &mut String, eol: &mut dyn FnMut(&mut String), line: &Line| {
            match line {
                Line::Event(name) => out.push_str(&format!("event: {name}")),
                Line::Data(data) => out.push_str(&format!("data: {data}")),
                Line::BareData => out.push_str("data"),
                Line::Id(id) => out.push_str(&format!("id: {id}")),
                Line::Retry(ms) => out.push_str(&format!("retry: {ms}")),
                Line::Comment(text) => out.push_str(&format!(":{text}")),
                Line::Other(field, value) => out.push_str(&format!("{field}: {value}")),
            }
            eol(out);
        };
        for event in &self.events {
            for l in event {
                line(&mut out, &mut eol, l);
            }
            eol(&mut out);
        }
        for l in &self.unfinished {
            line(&mut out, &mut eol, l);
        }
        out.into_bytes()
    }

    /// The events a conforming parser dispatches: (type, data).
    fn expected(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .filter_map(|lines| {
                let mut name = String::new();
                let mut data: Option<Vec<&str>> = None;
                for line in lines {
                    match line {
                        Line::Event(n) => name.clone_from(n),
                        Line::Data(d) => data.get_or_insert_with(Vec::new).push(d),
                        Line::BareData => data.get_or_insert_with(Vec::new).push(""),
                        _ => {}
                    }
                }
                let data = data?.join("\n");
                Some((
                    if name.is_empty() {
                        "message".to_owned()
                    } else {
                        name
                    },
                    data,
                ))
            })
            .collect()
    }
}

/// A field value: anything but CR and LF.
fn value() -> impl Strategy<Value = String> {
    prop::collection::vec(
        tricky_char().prop_filter("no line break", |c| *c != '\r' && *c != '\n'),
        0..24,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        2 => value().prop_map(Line::Event),
        6 => value().prop_map(Line::Data),
        1 => Just(Line::BareData),
        1 => value().prop_map(Line::Id),
        1 => any::<u32>().prop_map(Line::Retry),
        1 => value().prop_map(Line::Comment),
        1 => ("x[a-z]{0,6}", value()).prop_map(|(field, value)| Line::Other(field, value)),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    let eol = prop_oneof![
        Just(Eol::Lf),
        Just(Eol::CrLf),
        Just(Eol::Cr),
        prop::collection::vec(any::<bool>(), 1..8).prop_map(Eol::Mixed),
    ];
    (
        any::<bool>(),
        prop::collection::vec(prop::collection::vec(line(), 0..5), 0..8),
        prop::collection::vec(line(), 0..3),
        eol,
    )
        .prop_map(|(bom, events, unfinished, eol)| Body {
            bom,
            events,
            unfinished,
            eol,
        })
}

fn kinds(events: &[Result<Event, LlmError>]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|event| match event {
            Ok(event) => (event.event.clone(), event.data.clone()),
            Err(err) => panic!("a valid stream failed: {err}"),
        })
        .collect()
}

/// Pieces of event streams, of the providers' events, and bytes that are not UTF-8.
fn soup() -> impl Strategy<Value = Vec<u8>> {
    let tokens: Vec<&[u8]> = vec![
        b"data: ",
        b"data:",
        b"event: ",
        b"event: error",
        b"event: message_stop",
        b":",
        b"id: 7",
        b"retry: 10",
        b"\n",
        b"\r\n",
        b"\r",
        b"\n\n",
        b"{",
        b"}",
        b"\"",
        b",",
        b"[DONE]",
        br#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#,
        br#"{"choices":[{"index":0,"delta":{"reasoning_content":"hm"}}]}"#,
        br#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{"}}]}}]}"#,
        br#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        br#"{"error":{"message":"boom","type":"server_error"}}"#,
        br#"{"type":"message_start","message":{"usage":{"input_tokens":5,"output_tokens":1}}}"#,
        br#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#,
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
        br#"{"type":"content_block_stop","index":0}"#,
        br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}"#,
        br#"{"type":"message_stop"}"#,
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        "é中😀\u{feff}".as_bytes(),
        b"\xff",
        b"\xc3",
        b"\xe2\x82",
        b"\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\0",
    ];
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(tokens).prop_map(<[u8]>::to_vec),
            1 => prop::collection::vec(any::<u8>(), 0..8),
        ],
        0..48,
    )
    .prop_map(|parts| parts.concat())
}

/// Every way these bytes are decoded: the raw events, and each provider decoder's items.
async fn decodings(chunks: Vec<Vec<u8>>) -> impl PartialEq + std::fmt::Debug {
    let events = sse(chunks.clone()).await;
    let chat = decode(
        chunks.clone(),
        ChunkDecoder::new(&request(), Dialect::OpenAi),
    )
    .await;
    let glm = decode(chunks.clone(), ChunkDecoder::new(&request(), Dialect::Glm)).await;
    let messages = decode(chunks, MessagesDecoder::new(&request())).await;
    for items in [&chat, &glm, &messages] {
        let _ = assemble(items); // checks the contract
    }
    (events, chat, glm, messages)
}

proptest! {
    #[test]
    fn events_are_the_same_however_the_body_is_split(body in body(), cuts in cuts()) {
        let bytes = body.bytes();
        let expected = body.expected();
        let (whole, split) = block_on(async {
            (sse(vec![bytes.clone()]).await, sse(cuts.apply(&bytes)).await)
        });
        prop_assert_eq!(kinds(&whole), expected);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn any_bytes_decode_the_same_whole_and_split(bytes in soup(), cuts in cuts()) {
        let (whole, split) = block_on(async {
            (decodings(vec![bytes.clone()]).await, decodings(cuts.apply(&bytes)).await)
        });
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn garbage_is_a_bad_response(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in cuts(),
    ) {
        let chunks = cuts.apply(&bytes);
        let chat = |dialect| ChunkDecoder::new(&request(), dialect);
        let results = block_on(async {
            vec![
                assemble(&decode(chunks.clone(), chat(Dialect::OpenAi)).await),
                assemble(&decode(chunks.clone(), chat(Dialect::Glm)).await),
                assemble(&decode(chunks, MessagesDecoder::new(&request())).await),
            ]
        });
        for result in results {
            match result {
                Err(err) => prop_assert_eq!(err.code(), "upstream_bad_response"),
                Ok(response) => prop_assert!(false, "garbage decoded into {:?}", response),
            }
        }
    }

    /// A body that goes bad and then never ends (a provider that keeps the connection open)
    /// fails at the bad byte, after the events before it: it does not wait for the end.
    #[test]
    fn bytes_that_are_not_utf8_fail_at_once(
        events in prop::collection::vec(super::tricky_string(16), 0..4),
        bad in prop::sample::select(vec![
            &b"\xff"[..], b"\x80", b"\xc3\x28", b"\xc0\xaf", b"\xe2\x28\xa1", b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80", b"\xf0\x9f\x98",
        ]),
        after in prop::collection::vec(any::<u8>(), 0..16),
        at in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let mut bytes = Vec::new();
        for data in &events {
            let data = serde_json::to_string(data).unwrap_or_default();
            bytes.extend_from_slice(format!("data: {data}\n\n").as_bytes());
        }
        bytes.extend_from_slice(bad);
        // What follows a truncated character may complete it validly: keep it invalid.
        bytes.push(b'\xff');
        bytes.extend_from_slice(&after);
        let chunks = Cuts::At(at).apply(&bytes);
        let items: Vec<Result<Event, LlmError>> = block_on(async {
            let body = stream::iter(chunks.into_iter().map(Ok::<_, LlmError>))
                .chain(stream::pending());
            let mut events = Box::pin(sse_events(Box::pin(body)));
            let mut items = Vec::new();
            let deadline = Duration::from_secs(2);
            while let Ok(Some(item)) = tokio::time::timeout(deadline, events.next()).await {
                let failed = item.is_err();
                items.push(item);
                if failed {
                    break;
                }
            }
            items
        });
        prop_assert_eq!(items.len(), events.len() + 1, "{:?}", items);
        for (item, data) in items.iter().zip(&events) {
            let parsed: Option<String> = item
                .as_ref()
                .ok()
                .and_then(|event| serde_json::from_str(&event.data).ok());
            prop_assert_eq!(parsed.as_ref(), Some(data));
        }
        match items.last() {
            Some(Err(err)) => prop_assert_eq!(err.code(), "upstream_bad_response"),
            other => prop_assert!(false, "expected an error, got {:?}", other),
        }
    }
}

/// Regression (caught by `bytes_that_are_not_utf8_fail_at_once`): the SSE parser took an invalid
/// byte for a character cut by a chunk boundary and buffered everything after it, silently,
/// until the body ended (or the idle timeout, for a provider that kept the connection open).
#[test]
fn an_invalid_byte_in_an_open_stream_fails_at_once() {
    let items = block_on(async {
        let body = stream::iter([Ok::<_, LlmError>(b"data: 1\n\n\xffdata: 2\n\n".to_vec())])
            .chain(stream::pending());
        let events = sse_events(Box::pin(body));
        tokio::time::timeout(Duration::from_secs(2), events.take(2).collect::<Vec<_>>()).await
    });
    let items = items.expect("the error comes without waiting for the end of the body");
    assert_eq!(items[0].as_ref().map(|e| e.data.as_str()), Ok("1"));
    assert_eq!(
        items[1],
        Err(LlmError::BadResponse(
            "the event stream is not UTF-8 (at byte 9)".into()
        ))
    );
}

/// Regression (found by `events_are_the_same_however_the_body_is_split`): with CR line endings,
/// the last event of a body was lost, the parser waiting for a LF after the final CR.
#[test]
fn a_final_cr_ends_the_last_event() {
    let events = block_on(sse(vec![b"data: a\r\rdata: b\r\r".to_vec()]));
    let data: Vec<_> = events
        .iter()
        .map(|e| e.as_ref().map(|e| e.data.as_str()))
        .collect();
    assert_eq!(data, vec![Ok("a"), Ok("b")]);
}

/// Regression: a body that never ends its event (no newline) was buffered without limit and
/// rescanned on every chunk; it now fails once the event passes [`MAX_EVENT_BYTES`].
#[test]
fn an_endless_event_is_refused_past_the_limit() {
    let result = block_on(async {
        let chunk = vec![b'a'; 64 * 1024];
        let count = MAX_EVENT_BYTES / chunk.len() + 2;
        let body = stream::iter(
            std::iter::once(b"data: ".to_vec())
                .chain(std::iter::repeat_n(chunk, count))
                .map(Ok::<_, LlmError>),
        )
        .chain(stream::pending());
        let mut events = Box::pin(sse_events(Box::pin(body)));
        tokio::time::timeout(Duration::from_secs(5), events.next()).await
    });
    match result {
        Ok(Some(Err(err))) => assert!(err.to_string().contains("longer than"), "{err}"),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Regression (found by `events_are_the_same_however_the_body_is_split`): a body starting with
/// a byte-order mark made the SSE parser panic (it sliced the 3-byte BOM at byte 1). One BOM is
/// dropped, however it is split; a second one is part of the first line, as the spec says.
#[test]
fn a_leading_bom_is_dropped_not_a_panic() {
    for (chunks, expected) in [
        (vec![&b"\xef\xbb\xbfdata: a\n\n"[..]], vec!["a"]),
        (vec![b"\xef", b"\xbb", b"\xbfdata: a\n\n"], vec!["a"]),
        (
            vec![b"\xef\xbb", b"\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n"],
            vec!["b"],
        ),
        (vec![b"\xef\xbb", b"data: a\n\n"], vec![]),
    ] {
        let events = block_on(sse(chunks.iter().map(|c| c.to_vec()).collect()));
        let data: Vec<_> = events
            .iter()
            .filter_map(|e| e.as_ref().ok().map(|e| e.data.as_str()))
            .collect();
        assert_eq!(data, expected, "{chunks:?}");
    }
}
