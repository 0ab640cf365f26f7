//! Sockets to the one target: its address is resolved once from `--url`,
//! and each connection is bound to the next `--bind` source address (round
//! robin) before it connects, so a run can hold more connections than one
//! source address has ports.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Url;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::LoadtestError;

pub type Ws = WebSocketStream<TcpStream>;

/// How long a connect plus handshake may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The target and the source addresses to use.
#[derive(Debug)]
pub struct Dialer {
    base: Url,
    addr: SocketAddr,
    binds: Vec<IpAddr>,
    next: AtomicUsize,
}

/// Why a websocket could not be opened, as an error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialError(pub String);

impl Dialer {
    /// Resolves `url` once; refuses bind addresses of the wrong family.
    pub async fn new(url: &str, binds: Vec<IpAddr>) -> Result<Self, LoadtestError> {
        let base = Url::parse(url).map_err(|e| LoadtestError::Config(format!("--url: {e}")))?;
        if base.scheme() != "http" {
            return Err(LoadtestError::Config("--url must be http://".into()));
        }
        let host = base
            .host_str()
            .ok_or_else(|| LoadtestError::Config("--url has no host".into()))?
            .to_owned();
        let port = base.port_or_known_default().unwrap_or(80);
        let host_for_lookup = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let addr = tokio::net::lookup_host((host_for_lookup.as_str(), port))
            .await
            .map_err(|e| LoadtestError::Setup(format!("resolving {host}: {e}")))?
            .next()
            .ok_or_else(|| LoadtestError::Setup(format!("{host} has no address")))?;
        if let Some(bad) = binds.iter().find(|b| b.is_ipv4() != addr.is_ipv4()) {
            return Err(LoadtestError::Config(format!(
                "--bind {bad} is not of the same family as the target {addr}"
            )));
        }
        Ok(Self {
            base,
            addr,
            binds,
            next: AtomicUsize::new(0),
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn binds(&self) -> &[IpAddr] {
        &self.binds
    }

    fn next_bind(&self) -> Option<IpAddr> {
        if self.binds.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.binds.len();
        self.binds.get(i).copied()
    }

    /// A TCP connection to the target from the next source address.
    pub async fn tcp(&self) -> std::io::Result<TcpStream> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = self.next_bind() {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(self.addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Opens a websocket at `path_and_query` with a subprotocol and
    /// optional bearer token; the handshake's refusal becomes
    /// `handshake_<status>`.
    pub async fn websocket(
        &self,
        path_and_query: &str,
        protocol: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<Ws, DialError> {
        let mut url = self.base.clone();
        let ws_scheme_ok = url.set_scheme("ws").is_ok();
        debug_assert!(ws_scheme_ok, "http URLs can become ws URLs");
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        url.set_path(path);
        url.set_query((!query.is_empty()).then_some(query));
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|_| DialError("bad_request_url".into()))?;
        let headers = request.headers_mut();
        if let Some(protocol) = protocol {
            let value =
                HeaderValue::from_str(protocol).map_err(|_| DialError("bad_protocol".into()))?;
            headers.insert("sec-websocket-protocol", value);
        }
        if let Some(token) = bearer {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| DialError("bad_token".into()))?;
            headers.insert("authorization", value);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(16 << 20));
        let dial = async {
            let tcp = self
                .tcp()
                .await
                .map_err(|e| DialError(format!("connect_{}", io_code(&e))))?;
            tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
                .await
                .map(|(ws, _response)| ws)
                .map_err(|e| DialError(handshake_code(&e)))
        };
        tokio::time::timeout(DIAL_TIMEOUT, dial)
            .await
            .map_err(|_| DialError("connect_timeout".into()))?
    }
}

/// A short snake_case name of an I/O error.
pub fn io_code(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "refused".into(),
        K::ConnectionReset => "reset".into(),
        K::ConnectionAborted => "aborted".into(),
        K::AddrInUse | K::AddrNotAvailable => "no_source_port".into(),
        K::TimedOut => "timeout".into(),
        K::BrokenPipe => "broken_pipe".into(),
        K::UnexpectedEof => "eof".into(),
        _ => "io".into(),
    }
}

fn handshake_code(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Http(response) => format!("handshake_{}", response.status().as_u16()),
        E::Io(io) => format!("handshake_{}", io_code(io)),
        E::Protocol(_) => "handshake_protocol".into(),
        _ => "handshake_failed".into(),
    }
}
