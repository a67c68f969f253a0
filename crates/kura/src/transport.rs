//! The listener: HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) on one
//! port, served by hyper-util's connection builder with the limits that keep
//! slow or idle clients from holding connections open (a slowloris client
//! used to keep one for as long as it liked):
//!
//! - `header_timeout`: the whole request head must arrive within it (hyper's
//!   `header_read_timeout`; on HTTP/1.1 it also bounds the wait for the next
//!   request of a keep-alive connection);
//! - `idle_timeout`: a connection with no request in flight is closed after
//!   this long (gracefully: HTTP/2 gets a GOAWAY);
//! - `body_idle_timeout`: a request body that sends no byte for this long
//!   fails with an error the handler sees as a read error (an upload then
//!   answers `BLOB_UPLOAD_INVALID` and releases its upload lease);
//! - `max_connections`: connections served at once; further ones wait in the
//!   listen backlog until one closes.
//!
//! Each request carries `ConnectInfo<SocketAddr>` with the peer's address,
//! as axum's own `serve` would set it.
//!
//! With TLS (`tls.rs`), each accepted connection first completes its TLS
//! handshake (within `header_timeout`), then is served the same way; ALPN
//! `h2` clients go straight to HTTP/2. Its requests also carry
//! [`TlsConnection`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kura_ecr::client::TlsConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;
use tower::ServiceExt;

/// The listener's limits (`kura serve --header-timeout …`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The longest a client may take to send a request's head.
    pub header_timeout: Duration,
    /// The longest a connection stays open with no request in flight.
    pub idle_timeout: Duration,
    /// The longest a request body may go without sending a byte.
    pub body_idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Serve `app` on `listener` until `shutdown` resolves; then stop accepting,
/// let every connection finish its requests in flight, and return. With
/// `tls`, connections speak TLS.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let over_tls = tls.is_some();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Connections hold a receiver; `closed()` on the sender waits for them all.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small responses (manifests, small blobs) must not wait on Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        let activity = Arc::new(Activity::new());
        let service = {
            let (app, activity) = (app.clone(), activity.clone());
            hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let in_flight = InFlight::start(&activity);
                let mut req = req.map(|b| axum::body::Body::new(IdleTimeoutBody::new(b, limits.body_idle_timeout)));
                req.extensions_mut().insert(ConnectInfo(peer));
                if over_tls {
                    req.extensions_mut().insert(TlsConnection);
                }
                let call = app.clone().oneshot(req);
                async move {
                    let resp = call.await?;
                    // The request counts as in flight until its response body is done.
                    Ok::<_, Infallible>(resp.map(|b| {
                        axum::body::Body::new(b.map_frame(move |f| {
                            let _held = &in_flight;
                            f
                        }))
                    }))
                }
            })
        };
        let mut stop = stop_rx.clone();
        let (builder, tls) = (builder.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = tls.map(|t| t.acceptor()) else {
                return drive(
                    &builder,
                    TokioIo::new(tcp),
                    service,
                    stop,
                    activity,
                    limits.idle_timeout,
                    peer,
                )
                .await;
            };
            let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp));
            let stream = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(peer = %peer, "TLS handshake timed out");
                        return;
                    }
                },
                _ = stop.changed() => return,
            };
            drive(
                &builder,
                TokioIo::new(stream),
                service,
                stop,
                activity,
                limits.idle_timeout,
                peer,
            )
            .await
        });
    }
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
}

/// Serve one connection until it ends: closed gracefully when the server
/// stops or the connection idles.
async fn drive<I, S>(
    builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    io: TokioIo<I>,
    service: S,
    mut stop: watch::Receiver<bool>,
    activity: Arc<Activity>,
    idle_timeout: Duration,
    peer: std::net::SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = http::Response<axum::body::Body>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = builder.serve_connection_with_upgrades(io, service).into_owned();
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = activity.idle_for(idle_timeout), if !closing => {
                tracing::debug!(peer = %peer, "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Accept errors are about one connection (reset before accept) or the
/// process (out of file descriptors): neither stops the server; the second
/// gets a pause so the loop does not spin.
async fn accept_error(e: io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted => {}
        _ => {
            tracing::warn!(error = %e, "accepting a connection failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A connection's requests in flight and when the last one ended.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Resolves once no request has been in flight for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let wait = if self.in_flight.load(Ordering::Acquire) > 0 {
                limit
            } else {
                let idle = Duration::from_millis(self.now_ms().saturating_sub(self.last_ms.load(Ordering::Acquire)));
                match limit.checked_sub(idle) {
                    Some(left) if !left.is_zero() => left,
                    _ => return,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// One request in flight on a connection, from its head to the end of its
/// response body.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(a: &Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_ms.store(self.0.now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The error a stalled request body ends with.
#[derive(Debug)]
pub struct BodyStalled(Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body sent no data for {} (the body idle timeout)",
            humantime::format_duration(self.0)
        )
    }
}

impl std::error::Error for BodyStalled {}

/// A request body that fails with [`BodyStalled`] (as an `io::Error` of kind
/// `TimedOut`) when its reader has waited `limit` for the next frame. The
/// clock runs only while the reader waits: a frame that is ready is always
/// delivered, however slowly the reader comes back for it.
pub struct IdleTimeoutBody<B> {
    inner: B,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        IdleTimeoutBody {
            inner,
            limit,
            timer: None,
        }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.timer = None;
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let limit = this.limit;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timer = None;
                Poll::Ready(Some(Err(Box::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    BodyStalled(limit),
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::StreamBody;

    /// A body that sends one chunk and then nothing fails after the limit
    /// instead of waiting forever (what kept a stalled PATCH's lease).
    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, io::Error>>(1);
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc")))).await.unwrap();
        let stream = tokio_stream_from(rx);
        let mut body = IdleTimeoutBody::new(StreamBody::new(stream), Duration::from_millis(300));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"abc"));
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("sent no data for 300ms"), "{err}");
        drop(tx);
    }

    /// Data that trickles in well within the limit never times out, however
    /// long the whole body takes.
    #[tokio::test]
    async fn a_slow_but_live_body_is_read_whole() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, io::Error>>(1);
        tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await.unwrap();
            }
        });
        let body = IdleTimeoutBody::new(StreamBody::new(tokio_stream_from(rx)), Duration::from_secs(2));
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 10);
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures::Stream<Item = T> + Unpin {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
