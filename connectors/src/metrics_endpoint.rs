//! The HTTP endpoint an orchestrator and Prometheus talk to: `/metrics` (OpenMetrics text,
//! rendered on each scrape), `/healthz` (the process is alive and working) and
//! `/readyz` (it is ready for traffic). One small thread on `tiny_http`; what the pages say is
//! the caller's ([`Pages`]), so the pipeline and the agent share it.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Prometheus metrics and health probes of `run` and `agent` (`--metrics` overrides).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (`host:port`); none by default.
    pub address: Option<String>,
    /// Also count windows per machine (a `machine` label): off by default, since its values
    /// grow with the fleet and every value is a series Prometheus keeps.
    pub machine_labels: bool,
}

/// How long the server thread waits for a request before checking whether to stop.
const POLL: Duration = Duration::from_millis(200);
/// The content type of the OpenMetrics text format (what `prometheus-client` writes; Prometheus
/// scrapes it natively).
const TEXT_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoint serves; called from the server thread on each request.
pub trait Pages: Send + Sync + 'static {
    /// The metrics, in the OpenMetrics text format.
    fn metrics(&self) -> String;
    /// `Ok` while the process is alive and working; otherwise why not.
    fn healthy(&self) -> Result<(), String>;
    /// `Ok` once the process is ready for traffic; otherwise what it still waits for.
    fn ready(&self) -> Result<(), String>;
}

/// The OpenMetrics text of every metric in `registry` (what [`Pages::metrics`] returns).
pub fn encode(registry: &prometheus_client::registry::Registry) -> String {
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::warn!("cannot encode the metrics: {error}");
    }
    text
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {address}: {reason}")]
pub struct EndpointError {
    pub address: String,
    pub reason: String,
}

/// A running endpoint; dropping it stops the server thread.
pub struct MetricsEndpoint {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    address: SocketAddr,
}

impl MetricsEndpoint {
    /// Listens on `address` (`host:port`; port 0 picks a free one) and serves `pages`.
    pub fn serve(address: &str, pages: Arc<dyn Pages>) -> Result<Self, EndpointError> {
        let error = |reason: String| EndpointError { address: address.to_owned(), reason };
        let server = Arc::new(tiny_http::Server::http(address).map_err(|e| error(e.to_string()))?);
        let bound = server.server_addr().to_ip().ok_or_else(|| error("it is not an IP address".to_owned()))?;
        let serving = Arc::clone(&server);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("auscult-metrics".to_owned())
            .spawn(move || serve_requests(&serving, pages.as_ref(), &stopping))
            .map_err(|e| error(e.to_string()))?;
        Ok(Self { server, stop, thread: Some(thread), address: bound })
    }

    /// The address it listens on (with the port chosen, if 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        // `unblock` wakes a waiting `recv` but not `recv_timeout`, so the loop checks a flag too.
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_requests(server: &tiny_http::Server, pages: &dyn Pages, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let request = match server.recv_timeout(POLL) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            // `unblock` (the endpoint was dropped) or the listener failed: stop.
            Err(_) => return,
        };
        let (status, content_type, body) = respond(request.url(), pages);
        let header = tiny_http::Header::from_bytes("Content-Type", content_type).expect("a valid static header");
        let response = tiny_http::Response::from_string(body).with_status_code(status).with_header(header);
        if let Err(error) = request.respond(response) {
            tracing::debug!("metrics endpoint: the client went away: {error}");
        }
    }
}

/// The status, content type and body for a request of `url`.
fn respond(url: &str, pages: &dyn Pages) -> (u16, &'static str, String) {
    let path = url.split('?').next().unwrap_or(url);
    let check = |result: Result<(), String>| match result {
        Ok(()) => (200, "text/plain; charset=utf-8", "ok\n".to_owned()),
        Err(reason) => (503, "text/plain; charset=utf-8", format!("{reason}\n")),
    };
    match path {
        "/metrics" => (200, TEXT_FORMAT, pages.metrics()),
        "/healthz" => check(pages.healthy()),
        "/readyz" => check(pages.ready()),
        _ => (404, "text/plain; charset=utf-8", "not found: try /metrics, /healthz or /readyz\n".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    struct Fixed {
        ready: AtomicBool,
    }

    impl Pages for Fixed {
        fn metrics(&self) -> String {
            "# TYPE up gauge\nup 1\n".to_owned()
        }
        fn healthy(&self) -> Result<(), String> {
            Ok(())
        }
        fn ready(&self) -> Result<(), String> {
            if self.ready.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("restoring state".to_owned())
            }
        }
    }

    fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn it_serves_the_pages_and_says_what_readiness_waits_for() {
        let pages = Arc::new(Fixed { ready: AtomicBool::new(false) });
        let endpoint = MetricsEndpoint::serve("127.0.0.1:0", Arc::clone(&pages) as Arc<dyn Pages>).unwrap();
        let metrics = get(endpoint.address(), "/metrics");
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("application/openmetrics-text") && metrics.ends_with("up 1\n"), "{metrics}");
        assert!(get(endpoint.address(), "/healthz").starts_with("HTTP/1.1 200"));
        let waiting = get(endpoint.address(), "/readyz");
        assert!(waiting.starts_with("HTTP/1.1 503") && waiting.contains("restoring state"), "{waiting}");
        pages.ready.store(true, Ordering::Relaxed);
        assert!(get(endpoint.address(), "/readyz").starts_with("HTTP/1.1 200"));
        assert!(get(endpoint.address(), "/other").starts_with("HTTP/1.1 404"));
        let started = std::time::Instant::now();
        drop(endpoint);
        assert!(started.elapsed() < Duration::from_secs(2), "dropping the endpoint stops its thread");
    }

    #[test]
    fn an_address_in_use_is_a_one_line_error_naming_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = listener.local_addr().unwrap().to_string();
        let pages: Arc<dyn Pages> = Arc::new(Fixed { ready: AtomicBool::new(true) });
        let error = MetricsEndpoint::serve(&taken, pages).err().expect("the port is taken").to_string();
        assert!(error.starts_with(&format!("cannot serve metrics on {taken}: ")) && !error.contains('\n'), "{error}");
    }
}
