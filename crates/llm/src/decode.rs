//! Turning a provider's Server-Sent Events into [`StreamEvent`]s: the part every wire format
//! shares. Each format implements [`Decoder`]; [`drive`] feeds it events and enforces the
//! contract: deltas and tool calls, then exactly one `Usage` and one `Finish`, or an error item
//! that ends the stream.

use std::collections::VecDeque;
use std::time::Duration;

use eventsource_stream::Event;
use futures_util::{Stream, StreamExt, stream};

use crate::types::{estimate_prompt_tokens, estimate_tokens};
use crate::{ChatRequest, EventStream, LlmError, StreamEvent, Usage};

/// A wire format's event handler.
pub(crate) trait Decoder: Send + 'static {
    /// Handles one event, pushing what it yields to `out`. Returns `true` when the provider
    /// said the response is complete (`[DONE]`, `message_stop`).
    fn event(&mut self, event: &Event, out: &mut Vec<StreamEvent>) -> Result<bool, LlmError>;

    /// The response is over: `complete` when [`Decoder::event`] said so, `false` when the body
    /// simply ended. Pushes the remaining tool calls, the usage and the finish reason, or fails
    /// if the response is incomplete.
    fn end(&mut self, complete: bool, out: &mut Vec<StreamEvent>) -> Result<(), LlmError>;
}

struct State<S, D> {
    events: Option<S>,
    decoder: D,
    queue: VecDeque<Result<StreamEvent, LlmError>>,
    provider: &'static str,
    /// The provider said the response is complete; what is left of the body is drained.
    complete: bool,
}

/// How long a complete response's remaining bytes (usually just the end of the chunked body)
/// are read for, so the connection goes back to the pool instead of being closed.
const DRAIN: Duration = Duration::from_millis(50);

/// Runs `decoder` over `events`.
pub(crate) fn drive<S, D>(provider: &'static str, events: S, decoder: D) -> EventStream
where
    S: Stream<Item = Result<Event, LlmError>> + Send + Unpin + 'static,
    D: Decoder,
{
    let state = State {
        events: Some(events),
        decoder,
        queue: VecDeque::new(),
        provider,
        complete: false,
    };
    Box::pin(stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.queue.pop_front() {
                return Some((item, state));
            }
            if state.complete {
                if let Some(mut rest) = state.events.take() {
                    let _ =
                        tokio::time::timeout(DRAIN, async { while rest.next().await.is_some() {} })
                            .await;
                }
                return None;
            }
            let events = state.events.as_mut()?;
            let mut out = Vec::new();
            let result = match events.next().await {
                Some(Ok(event)) => match state.decoder.event(&event, &mut out) {
                    Ok(false) => Ok(()),
                    Ok(true) => {
                        state.complete = true;
                        state.decoder.end(true, &mut out)
                    }
                    Err(err) => Err(err),
                },
                Some(Err(err)) => Err(err),
                None => {
                    state.events = None;
                    state.decoder.end(false, &mut out)
                }
            };
            state.queue.extend(out.into_iter().map(Ok));
            if let Err(err) = result {
                tracing::warn!(
                    provider = state.provider,
                    code = err.code(),
                    "the stream failed: {err}"
                );
                state.events = None;
                state.queue.push_back(Err(err));
            }
        }
    }))
}

/// Parses an event's data as JSON; anything else is a bad response.
pub(crate) fn json<T: serde::de::DeserializeOwned>(event: &Event) -> Result<T, LlmError> {
    // The error names the position only: the data is the model's output, not for logs.
    serde_json::from_str(&event.data).map_err(|err| {
        LlmError::BadResponse(format!(
            "a `{}` event is not the JSON expected ({:?} error at line {} column {})",
            event.event,
            err.classify(),
            err.line(),
            err.column()
        ))
    })
}

/// Counts what the model produced, for the usage estimate when the provider reports none.
#[derive(Debug)]
pub(crate) struct Tally {
    prompt_estimate: u32,
    generated: String,
}

impl Tally {
    pub fn new(request: &ChatRequest) -> Self {
        Self {
            prompt_estimate: estimate_prompt_tokens(request),
            generated: String::new(),
        }
    }

    pub fn add(&mut self, text: &str) {
        self.generated.push_str(text);
    }

    /// The provider's counts where it gave them, estimates (and `estimated`) where it did not.
    pub fn usage(&self, prompt: Option<u64>, completion: Option<u64>) -> Usage {
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Usage {
            prompt_tokens: prompt.map(clamp).unwrap_or(self.prompt_estimate),
            completion_tokens: completion
                .map(clamp)
                .unwrap_or_else(|| estimate_tokens(&self.generated)),
            estimated: prompt.is_none() || completion.is_none(),
        }
    }
}
