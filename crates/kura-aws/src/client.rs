//! Who the client is, as far as the server can tell: the connection's peer
//! address, or, only when that peer is a configured trusted proxy
//! (`KURA_TRUSTED_PROXIES`), what the proxy reports in `X-Forwarded-For` and
//! `X-Forwarded-Proto`. Headers from any other peer are ignored: anyone can
//! write them.
//!
//! [`layer`] resolves it once per request, before anything else runs, into a
//! [`Client`] extension; `aws:SourceIp`, the logs and the token challenge's
//! realm read that value and nothing else.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderMap;
use ipnet::IpNet;
use tracing::Instrument;

/// The networks whose `X-Forwarded-*` headers are believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trust these networks.
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    /// Whether `ip` is a trusted proxy (IPv4-mapped IPv6 addresses count as
    /// their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The configured networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma- or space-separated list of CIDRs or single addresses.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in s.split([',', ' ']).map(str::trim).filter(|i| !i.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => IpNet::from(
                    item.parse::<IpAddr>()
                        .map_err(|_| format!("{item:?} is not an IP address or a CIDR (e.g. 10.0.0.0/8)"))?,
                ),
            };
            nets.push(net.trunc());
        }
        Ok(TrustedProxies(nets))
    }
}

/// A request extension the listener puts on every request that came over a
/// TLS connection Kura terminated itself (`kura serve --tls-cert`): URLs
/// handed back to that client (the token realm, download URLs, the proxy
/// endpoint) say `https`, whatever any header claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsConnection;

/// The client of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// Its address (`aws:SourceIp`); `None` when the server has no socket
    /// (requests handed to the router directly, as in tests).
    pub ip: Option<IpAddr>,
    /// Whether it reached the deployment over TLS: the connection is one
    /// Kura terminated TLS on itself ([`TlsConnection`]), or a trusted
    /// proxy said `X-Forwarded-Proto: https`.
    pub https: bool,
}

impl Client {
    /// `https` or `http`, for URLs handed back to this client.
    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }
}

/// Resolve the client from the peer address and the request's headers.
///
/// From a trusted peer, `X-Forwarded-For` is read from the right (the
/// entries the trusted proxies appended) and the first address that is not
/// itself a trusted proxy is the client; an entry that is not an address
/// ends the walk at the last trusted hop. `X-Forwarded-Proto` says https when
/// any hop says so, so a client that came over TLS is never sent a
/// cleartext URL.
pub fn resolve(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &TrustedProxies) -> Client {
    let Some(peer) = peer.map(|p| p.to_canonical()) else {
        return Client { ip: None, https: false };
    };
    if !trusted.contains(peer) {
        return Client {
            ip: Some(peer),
            https: false,
        };
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut ip = peer;
    for hop in hops.iter().rev() {
        let Some(addr) = parse_hop(hop) else { break };
        ip = addr;
        if !trusted.contains(addr) {
            break;
        }
    }
    let https = headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("https"));
    Client { ip: Some(ip), https }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port
/// (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The middleware that puts the [`Client`] into every request; its state is
/// the trusted proxies.
pub async fn layer(State(trusted): State<Arc<TrustedProxies>>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let mut client = resolve(peer, req.headers(), &trusted);
    // The hop into Kura itself was TLS: the client is never sent http://.
    client.https |= req.extensions().get::<TlsConnection>().is_some();
    req.extensions_mut().insert(client);
    // Every log line of the request names the client.
    let span = match client.ip {
        Some(ip) => tracing::info_span!("client", addr = %ip),
        None => tracing::Span::none(),
    };
    next.run(req).instrument(span).await
}

/// The client address of a request that went through [`layer`].
pub fn source_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions.get::<Client>().and_then(|c| c.ip)
}

/// The scheme the client used (`http` unless the connection was TLS or a
/// trusted proxy said https).
pub fn scheme(extensions: &http::Extensions) -> &'static str {
    extensions.get::<Client>().map_or("http", Client::scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_lists() {
        let t: TrustedProxies = "10.0.0.0/8, 192.168.1.7 ::1,fd00::/8".parse().unwrap();
        assert!(t.contains(ip("10.1.2.3")));
        assert!(t.contains(ip("192.168.1.7")));
        assert!(!t.contains(ip("192.168.1.8")));
        assert!(t.contains(ip("::1")));
        assert!(t.contains(ip("::ffff:10.9.9.9")));
        assert!("".parse::<TrustedProxies>().unwrap().networks().is_empty());
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("proxy.local".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn untrusted_peers_are_taken_at_their_word_only_for_their_address() {
        let t: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]);
        let c = resolve(Some(ip("198.51.100.1")), &h, &t);
        assert_eq!(
            c,
            Client {
                ip: Some(ip("198.51.100.1")),
                https: false
            }
        );
        // No proxies configured: nobody is trusted, loopback included.
        let c = resolve(Some(ip("127.0.0.1")), &h, &TrustedProxies::default());
        assert_eq!(c.ip, Some(ip("127.0.0.1")));
        assert!(!c.https);
    }

    #[test]
    fn trusted_proxies_are_believed_from_the_right() {
        let t: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        // The client wrote a forged first entry; the proxies appended the rest.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.5"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = resolve(Some(ip("10.0.0.2")), &h, &t);
        assert_eq!(
            c,
            Client {
                ip: Some(ip("203.0.113.9")),
                https: true
            }
        );
        // Several header lines are one list; ports are dropped.
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(resolve(Some(ip("10.0.0.2")), &h, &t).ip, Some(ip("2001:db8::1")));
        // Garbage ends the walk at the last trusted hop.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, junk, 10.0.0.7")]);
        assert_eq!(resolve(Some(ip("10.0.0.2")), &h, &t).ip, Some(ip("10.0.0.7")));
        // No header: the proxy itself.
        assert_eq!(
            resolve(Some(ip("10.0.0.2")), &HeaderMap::new(), &t).ip,
            Some(ip("10.0.0.2"))
        );
        // Any hop saying https means the client used TLS somewhere in front.
        let h = headers(&[("x-forwarded-proto", "http, HTTPS")]);
        assert!(resolve(Some(ip("10.0.0.2")), &h, &t).https);
    }

    /// The scheme a request's handler sees through [`layer`], for a peer,
    /// headers and whether the connection was TLS.
    async fn scheme_through_layer(peer: &str, headers: &[(&str, &str)], tls: bool) -> String {
        use tower::ServiceExt;
        let trusted = Arc::new("127.0.0.1".parse::<TrustedProxies>().unwrap());
        let app = axum::Router::new()
            .route(
                "/",
                axum::routing::get(|req: Request| async move { scheme(req.extensions()).to_string() }),
            )
            .layer(axum::middleware::from_fn_with_state(trusted, layer));
        let mut req = http::Request::builder().uri("/");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(axum::body::Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(std::net::SocketAddr::new(ip(peer), 40000)));
        if tls {
            req.extensions_mut().insert(TlsConnection);
        }
        let resp = app.oneshot(req).await.unwrap();
        let body = axum::body::to_bytes(resp.into_body(), 64).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_tls_connection_is_https_and_a_trusted_proxy_cannot_say_otherwise() {
        assert_eq!(scheme_through_layer("198.51.100.1", &[], true).await, "https");
        assert_eq!(scheme_through_layer("198.51.100.1", &[], false).await, "http");
        let proto_http = [("x-forwarded-proto", "http")];
        assert_eq!(scheme_through_layer("127.0.0.1", &proto_http, true).await, "https");
        assert_eq!(scheme_through_layer("127.0.0.1", &proto_http, false).await, "http");
        // Behind a trusted TLS-terminating proxy, plain connections still get https.
        let proto_https = [("x-forwarded-proto", "https")];
        assert_eq!(scheme_through_layer("127.0.0.1", &proto_https, false).await, "https");
        // An untrusted peer's header is ignored.
        assert_eq!(scheme_through_layer("198.51.100.1", &proto_https, false).await, "http");
    }
}
