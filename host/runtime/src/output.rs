//! The plugin's stdout and stderr: each line goes to the host log (target
//! `herald::plugin`, tagged with the plugin instance and tenant), within the
//! call's log budget (`limits.max_log_bytes`, shared with the `log` import).
//! A panic message on stderr is kept for the fault report.

use super::{CallCounters, Ident};
use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept from a plugin (log import or output); the rest is cut.
pub const MAX_LINE: usize = 8 * 1024;

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A stdout or stderr of one store, writing into the host log.
#[derive(Clone)]
pub struct PluginOutput {
    pub(super) stream: Stream,
    pub(super) counters: Arc<CallCounters>,
    pub(super) ident: Arc<Ident>,
}

impl PluginOutput {
    fn push(&self, bytes: &[u8]) {
        let mut lines = Vec::new();
        {
            let mut buf = self.counters.line_buffer(self.stream);
            for chunk in bytes.split_inclusive(|b| *b == b'\n') {
                if buf.len() < MAX_LINE {
                    let room = MAX_LINE - buf.len();
                    buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                if chunk.ends_with(b"\n") {
                    lines.push(std::mem::take(&mut *buf));
                }
            }
        }
        for line in lines {
            emit_line(&self.counters, &self.ident, self.stream, &line);
        }
    }
}

/// Writes one line of output to the host log, within the call's budget.
pub(super) fn emit_line(counters: &CallCounters, ident: &Ident, stream: Stream, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    if stream == Stream::Stderr {
        counters.note_stderr(text);
    }
    if text.is_empty() || !counters.take_log_budget(text.len()) {
        return;
    }
    let (plugin, tenant) = (&*ident.plugin, &*ident.tenant);
    let name = stream.name();
    counters.in_delivery(|| match stream {
        Stream::Stdout => {
            tracing::info!(target: "herald::plugin", plugin, tenant, stream = name, "{text}")
        }
        Stream::Stderr => {
            tracing::warn!(target: "herald::plugin", plugin, tenant, stream = name, "{text}")
        }
    })
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for PluginOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl Pollable for PluginOutput {
    fn ready<'a, 'b>(&'a mut self) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async {})
    }
}

impl tokio::io::AsyncWrite for PluginOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
