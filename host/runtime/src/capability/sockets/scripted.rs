//! Scripted peers for `wasi:sockets`: what `herald plugin test` gives a
//! plugin instead of the network. A connection or datagram to an address of
//! the instance's `allow_sockets` goes to a loopback stand-in the
//! [`SocketResponder`] serves; any other address is refused by the same
//! gate as in `herald serve` ([`super::SocketsState`]). TLS over such a
//! connection is simulated (the conversation stays in clear, so the runner
//! can show what the plugin would have sent inside it).
//!
//! wasmtime-wasi's address check can only admit or refuse, so the redirect
//! shadows the three functions that take a remote address
//! (`tcp-socket.start-connect`, `udp-socket.stream`,
//! `outgoing-datagram-stream.send`) in a copy of the linker, and calls
//! wasmtime-wasi's own implementation with the stand-in's address.

use super::socket_allowed;
use crate::HostState;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi::p2::bindings::sockets::network::{
    ErrorCode, Host as _, IpSocketAddress, Network,
};
use wasmtime_wasi::p2::bindings::sockets::tcp::{HostTcpSocket, TcpSocket};
use wasmtime_wasi::p2::bindings::sockets::udp::{
    HostOutgoingDatagramStream, HostUdpSocket, IncomingDatagramStream, OutgoingDatagram,
    OutgoingDatagramStream, UdpSocket,
};
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::sockets::WasiSocketsView;
use wasmtime_wasi_tls::{TlsProvider, TlsStream, TlsTransport, WasiTlsCtx, WasiTlsCtxBuilder};

/// Which kind of socket a redirect is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// Serves the stand-ins of a runtime made with
/// [`crate::Runtime::with_scripted_sockets`].
pub trait SocketResponder: Send + Sync {
    /// The loopback address that stands in for `addr`, an address the
    /// instance's `allow_sockets` admits.
    fn stand_in(&self, addr: SocketAddr, transport: Transport) -> SocketAddr;
    /// Whether `addr` is one of the stand-ins (the WASI gate admits them).
    fn is_stand_in(&self, addr: &SocketAddr) -> bool;
    /// The plugin started TLS for `server_name` over a connection: noted,
    /// and simulated (the bytes go on in clear).
    fn tls_started(&self, server_name: &str);
}

/// The wasi:sockets interfaces whose functions the shadowed functions live in
/// (the version wasmtime-wasi links; guests of any 0.2.x resolve to it).
const TCP: &str = "wasi:sockets/tcp@0.2.12";
const UDP: &str = "wasi:sockets/udp@0.2.12";

/// The stand-in for `addr` when the store's grant admits it and a
/// responder is set; otherwise `addr` unchanged (the WASI gate then decides).
fn redirect(state: &HostState, addr: IpSocketAddress, transport: Transport) -> IpSocketAddress {
    let Some(responder) = &state.sockets.scripted else {
        return addr;
    };
    let to: SocketAddr = addr.into();
    if socket_allowed(&state.sockets.allow, &to) {
        responder.stand_in(to, transport).into()
    } else {
        addr
    }
}

fn code(store: &mut StoreContextMut<'_, HostState>, e: SocketError) -> wasmtime::Result<ErrorCode> {
    store.data_mut().sockets().convert_error_code(e)
}

type StreamPair = (
    Resource<IncomingDatagramStream>,
    Resource<OutgoingDatagramStream>,
);

/// Shadows the functions that take a remote address with ones that
/// redirect allowed addresses to the responder's stand-ins.
pub(crate) fn shadow(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.instance(TCP)?.func_wrap(
        "[method]tcp-socket.start-connect",
        |mut store: StoreContextMut<'_, HostState>,
         (this, network, addr): (Resource<TcpSocket>, Resource<Network>, IpSocketAddress)| {
            let addr = redirect(store.data(), addr, Transport::Tcp);
            let result =
                HostTcpSocket::start_connect(&mut store.data_mut().sockets(), this, network, addr);
            Ok((match result {
                Ok(()) => Ok(()),
                Err(e) => Err(code(&mut store, e)?),
            },))
        },
    )?;
    linker.instance(UDP)?.func_wrap_async(
        "[method]udp-socket.stream",
        |mut store: StoreContextMut<'_, HostState>,
         (this, remote): (Resource<UdpSocket>, Option<IpSocketAddress>)| {
            Box::new(async move {
                let remote = remote.map(|a| redirect(store.data(), a, Transport::Udp));
                let result =
                    HostUdpSocket::stream(&mut store.data_mut().sockets(), this, remote).await;
                let answer: Result<StreamPair, ErrorCode> = match result {
                    Ok(pair) => Ok(pair),
                    Err(e) => Err(code(&mut store, e)?),
                };
                Ok((answer,))
            })
        },
    )?;
    linker.instance(UDP)?.func_wrap(
        "[method]outgoing-datagram-stream.send",
        |mut store: StoreContextMut<'_, HostState>,
         (this, datagrams): (Resource<OutgoingDatagramStream>, Vec<OutgoingDatagram>)| {
            let datagrams = datagrams
                .into_iter()
                .map(|d| OutgoingDatagram {
                    remote_address: d
                        .remote_address
                        .map(|a| redirect(store.data(), a, Transport::Udp)),
                    data: d.data,
                })
                .collect();
            let result =
                HostOutgoingDatagramStream::send(&mut store.data_mut().sockets(), this, datagrams);
            Ok((match result {
                Ok(n) => Ok(n),
                Err(e) => Err(code(&mut store, e)?),
            },))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A `wasi:tls` context whose handshakes are simulated: the responder is
/// told, and the stream stays the plain connection to the stand-in.
pub(crate) fn clear_tls(responder: Arc<dyn SocketResponder>) -> WasiTlsCtx {
    WasiTlsCtxBuilder::new()
        .provider(Box::new(ClearTls(responder)))
        .build()
}

struct ClearTls(Arc<dyn SocketResponder>);

type Handshake =
    Pin<Box<dyn Future<Output = Result<Box<dyn TlsStream>, wasmtime_wasi_tls::Error>> + Send>>;

impl TlsProvider for ClearTls {
    fn connect(&self, server_name: String, transport: Box<dyn TlsTransport>) -> Handshake {
        self.0.tls_started(&server_name);
        Box::pin(async move { Ok(Box::new(Clear(transport)) as Box<dyn TlsStream>) })
    }
}

/// The connection itself, standing in for a TLS stream over it.
struct Clear(Box<dyn TlsTransport>);

impl TlsStream for Clear {}

impl AsyncRead for Clear {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Clear {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
