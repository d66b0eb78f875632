//! Scripted answers for outbound HTTP: what `herald plugin test` gives a plugin instead of
//! the network. Every request still passes the instance's `allow_http` and
//! `limits.max_http_requests` first (that check is before the pool); only the exchange itself
//! is answered by the [`Responder`].

use bytes::Bytes;

/// One request a plugin sent, as the responder sees it.
#[derive(Debug, Clone)]
pub struct ScriptedRequest {
    pub method: String,
    pub url: String,
    /// Names lower case, in the order sent.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
}

/// The answer to give.
#[derive(Debug, Clone)]
pub struct ScriptedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Why a scripted request got no answer, as the plugin sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptedFailure {
    /// The connection was refused.
    ConnectionRefused,
    /// No answer in time.
    Timeout,
}

/// Answers the requests of every instance of a runtime made with
/// [`crate::Runtime::with_outbound`].
pub trait Responder: Send + Sync {
    /// The answer to `request`.
    fn answer(&self, request: &ScriptedRequest) -> Result<ScriptedResponse, ScriptedFailure>;
}
