//! A DICOMweb client side for load runs (PS3.18): STOW-RS, QIDO-RS and
//! WADO-RS over one shared HTTPS client.
//!
//! Like the C-STORE driver, it plays the part of the gateway's peers (a PACS
//! or viewer), outside the pipeline. Everything a run sends is prepared
//! before its clock starts, and every response is read to its last byte
//! before a latency is recorded.
//!
//! - [`catalog`]: what the server holds, learned with a few searches.
//! - [`multipart`]: `multipart/related` bodies, built and scanned.
//! - [`stow`]: Part 10 files in batches over concurrent clients.
//! - [`qido`]: a deterministic mix of searches aimed at the catalog.
//! - [`wado`]: retrieves whole series, streaming and checking every part.
//! - [`report`]: their summaries, for people and as JSON.

pub mod catalog;
pub mod multipart;
pub mod qido;
pub mod report;
pub mod stow;
pub mod wado;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Client, RequestBuilder, Url};

/// Which HTTP version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersionChoice {
    /// Whatever TLS ALPN settles on (HTTP/2 when the server offers it).
    #[default]
    Auto,
    Http1,
    Http2,
}

/// Error returned for an `--http` value we do not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown HTTP version `{0}` (expected auto, 1.1 or 2)")]
pub struct UnknownHttpVersion(pub String);

impl FromStr for HttpVersionChoice {
    type Err = UnknownHttpVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "1" | "1.1" | "http1" | "http/1.1" => Ok(Self::Http1),
            "2" | "h2" | "http2" | "http/2" => Ok(Self::Http2),
            _ => Err(UnknownHttpVersion(s.to_string())),
        }
    }
}

/// Why a DICOMweb client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("could not read CA certificate {path}")]
    ReadCa {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not parse CA certificate {path}")]
    ParseCa {
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("could not build the HTTPS client")]
    Build(#[source] reqwest::Error),
    #[error("`{0}` is not an absolute http(s) URL")]
    BadUrl(String),
}

/// One DICOMweb service root and how to reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    client: Client,
    /// Service root, e.g. `https://localhost:8443/dicomweb`.
    base: Url,
    token: String,
    timeout: Duration,
}

/// How to build an [`Endpoint`].
#[derive(Debug, Clone)]
pub struct EndpointOptions<'a> {
    pub url: &'a str,
    pub token: &'a str,
    /// Trust only this PEM CA; the platform's roots when `None`.
    pub ca_pem: Option<&'a Path>,
    pub http: HttpVersionChoice,
    /// Deadline for one whole request, response body included.
    pub timeout: Duration,
}

impl Endpoint {
    /// One client for the whole run: connections (or HTTP/2 streams) are
    /// shared by every worker, as one PACS process would share them.
    pub fn new(options: &EndpointOptions<'_>) -> Result<Self, ClientSetupError> {
        // rustls needs a process-wide provider; ring, as the gateway uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = Url::parse(options.url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| ClientSetupError::BadUrl(options.url.to_string()))?;
        let mut builder = Client::builder().tcp_nodelay(true);
        if let Some(path) = options.ca_pem {
            let describe = || path.display().to_string();
            let pem = std::fs::read(path).map_err(|source| ClientSetupError::ReadCa {
                path: describe(),
                source,
            })?;
            let ca = reqwest::Certificate::from_pem(&pem).map_err(|source| {
                ClientSetupError::ParseCa {
                    path: describe(),
                    source,
                }
            })?;
            builder = builder.tls_certs_only([ca]);
        }
        builder = match options.http {
            HttpVersionChoice::Auto => builder,
            HttpVersionChoice::Http1 => builder.http1_only(),
            HttpVersionChoice::Http2 => builder.http2_prior_knowledge(),
        };
        Ok(Endpoint {
            client: builder.build().map_err(ClientSetupError::Build)?,
            base: url,
            token: options.token.to_string(),
            timeout: options.timeout,
        })
    }

    /// `GET {base}{path}?{params}` with our token and deadline.
    pub fn get(&self, path: &str, params: &[(String, String)]) -> RequestBuilder {
        let mut url = self.url(path);
        if !params.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        self.authorised(self.client.get(url))
    }

    /// `POST {base}{path}` with our token and deadline.
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.authorised(self.client.post(self.url(path)))
    }

    /// `base` with the segments of `path` appended (each one percent-encoded).
    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        // Only URLs that cannot be a base refuse segments; `new` has
        // already turned those away (they have no host).
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(path.split('/').filter(|segment| !segment.is_empty()));
        }
        url
    }

    fn authorised(&self, request: RequestBuilder) -> RequestBuilder {
        request.bearer_auth(&self.token).timeout(self.timeout)
    }
}

/// A bounded label for a transport failure, for grouping in reports.
pub fn transport_error_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "body"
    } else if error.is_request() {
        "request"
    } else {
        "transport"
    }
}

/// The error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}

/// `HTTP/2.0`, `HTTP/1.1`: the version a response came back in.
pub fn version_label(version: reqwest::Version) -> String {
    format!("{version:?}")
}

/// Run `work(index)` for every index in `0..count` on `workers` tasks that
/// each take the next index when they finish one (a closed loop, as
/// `workers` independent clients would), and return the results in index
/// order.
pub async fn run_closed_loop<T, F, Fut>(count: usize, workers: usize, work: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let mut handles = Vec::new();
    for _ in 0..workers.clamp(1, count.max(1)) {
        let next = Arc::clone(&next);
        let work = Arc::clone(&work);
        handles.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    break done;
                }
                done.push((index, work(index).await));
            }
        }));
    }
    let mut results: Vec<(usize, T)> = Vec::with_capacity(count);
    for handle in handles {
        match handle.await {
            Ok(done) => results.extend(done),
            // A panicking worker loses its results; the caller sees fewer
            // than `count` and reports the difference.
            Err(join_error) => eprintln!("worker failed: {join_error}"),
        }
    }
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_versions_parse() {
        assert_eq!("auto".parse(), Ok(HttpVersionChoice::Auto));
        assert_eq!("1.1".parse(), Ok(HttpVersionChoice::Http1));
        assert_eq!("2".parse(), Ok(HttpVersionChoice::Http2));
        assert!("3".parse::<HttpVersionChoice>().is_err());
    }

    #[test]
    fn endpoint_joins_paths_and_encodes_query_values() {
        let endpoint = Endpoint::new(&EndpointOptions {
            url: "https://localhost:8443/dicomweb/",
            token: "t",
            ca_pem: None,
            http: HttpVersionChoice::Auto,
            timeout: Duration::from_secs(1),
        })
        .expect("builds");
        let params = vec![
            ("PatientName".to_string(), "DOE^J*".to_string()),
            ("StudyDate".to_string(), "20250101-20250107".to_string()),
        ];
        let request = endpoint.get("/studies", &params).build().expect("request");
        assert_eq!(
            request.url().as_str(),
            "https://localhost:8443/dicomweb/studies?PatientName=DOE%5EJ*&StudyDate=20250101-20250107"
        );
        assert_eq!(request.headers()["authorization"], "Bearer t");
        for bad in ["localhost:8443", "file:///tmp", "not a url"] {
            let options = EndpointOptions {
                url: bad,
                token: "t",
                ca_pem: None,
                http: HttpVersionChoice::Auto,
                timeout: Duration::from_secs(1),
            };
            assert!(Endpoint::new(&options).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn closed_loop_runs_every_index_once_in_order() {
        let results = run_closed_loop(10, 3, |i| async move { i * 2 }).await;
        assert_eq!(results, (0..10).map(|i| i * 2).collect::<Vec<_>>());
        assert!(run_closed_loop(0, 3, |i| async move { i }).await.is_empty());
    }
}
