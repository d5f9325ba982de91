//! A small HTTPS client for the admin API, used by the CLI: bearer token,
//! an optional CA to trust instead of the system's, and problem+json
//! answers turned into errors that carry the gateway's own words.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no operator token: pass --token or set DICOM_GATEWAY_ADMIN_TOKEN")]
    NoToken,
    #[error("cannot read CA certificate {path}: {why}")]
    Ca { path: PathBuf, why: String },
    #[error("cannot build the HTTPS client: {0}")]
    Build(reqwest::Error),
    #[error("cannot reach the admin API at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    /// The gateway answered with a problem: `detail` says what to change.
    #[error("{title} ({status}): {detail}")]
    Problem {
        status: u16,
        title: String,
        detail: String,
        body: Value,
    },
    #[error("unexpected answer from {url} ({status}): {text}")]
    Unexpected {
        url: String,
        status: u16,
        text: String,
    },
}

impl ClientError {
    /// Whether the gateway answered (and refused), as opposed to not
    /// being reached at all.
    pub fn is_answer(&self) -> bool {
        matches!(self, Self::Problem { .. } | Self::Unexpected { .. })
    }
}

/// A connection to one gateway's admin API.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl AdminClient {
    /// `base` like `https://127.0.0.1:8444`; `ca` replaces the system's
    /// roots (the gateway's development CA, or a private one).
    pub fn new(base: &str, token: Option<&str>, ca: Option<&Path>) -> Result<Self, ClientError> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ClientError::NoToken)?
            .to_string();
        // rustls is built without a default provider: use ring, like the server.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A reload or a pin loads a model before it answers.
            .timeout(Duration::from_secs(120));
        if let Some(path) = ca {
            let pem = std::fs::read(path).map_err(|e| ClientError::Ca {
                path: path.to_path_buf(),
                why: e.to_string(),
            })?;
            let certificate =
                reqwest::Certificate::from_pem(&pem).map_err(|e| ClientError::Ca {
                    path: path.to_path_buf(),
                    why: e.to_string(),
                })?;
            builder = builder.tls_certs_only([certificate]);
        }
        Ok(AdminClient {
            http: builder.build().map_err(ClientError::Build)?,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// `GET {base}/v1{path}` with query parameters.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ClientError> {
        let mut url = self.url(path);
        for (i, (name, value)) in query.iter().enumerate() {
            let separator = if i == 0 { '?' } else { '&' };
            url.push_str(&format!("{separator}{name}={}", encode_component(value)));
        }
        let request = self.http.get(&url);
        self.send(url, request).await
    }

    /// `POST {base}/v1{path}` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = self.url(path);
        let request = self.http.post(&url).json(body);
        self.send(url, request).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1{path}", self.base)
    }

    async fn send(
        &self,
        url: String,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, ClientError> {
        let response = request
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        match body {
            Some(body) if status.is_success() => Ok(body),
            Some(body) if body.get("title").is_some() => Err(ClientError::Problem {
                status: status.as_u16(),
                title: body["title"].as_str().unwrap_or_default().to_string(),
                detail: body["detail"].as_str().unwrap_or_default().to_string(),
                body,
            }),
            _ => Err(ClientError::Unexpected {
                url,
                status: status.as_u16(),
                text: text.chars().take(500).collect(),
            }),
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters: a safe
/// path segment or query value.
pub fn encode_component(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The URL of a listener address as a client dials it: an unspecified
/// address (`0.0.0.0`, `::`) means this host's loopback.
pub fn url_for(scheme: &str, addr: std::net::SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("{scheme}://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_urls() {
        assert_eq!(
            url_for("https", "0.0.0.0:8444".parse().unwrap()),
            "https://127.0.0.1:8444"
        );
        assert_eq!(url_for("http", "[::]:1".parse().unwrap()), "http://[::1]:1");
        assert_eq!(
            url_for("https", "10.1.2.3:8444".parse().unwrap()),
            "https://10.1.2.3:8444"
        );
    }

    #[test]
    fn components_are_encoded() {
        assert_eq!(encode_component("route.*"), "route.%2A");
        assert_eq!(encode_component("a b&c"), "a%20b%26c");
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    #[test]
    fn a_token_is_required() {
        assert!(matches!(
            AdminClient::new("https://127.0.0.1:1", None, None),
            Err(ClientError::NoToken)
        ));
        assert!(matches!(
            AdminClient::new("https://127.0.0.1:1", Some("  "), None),
            Err(ClientError::NoToken)
        ));
    }
}
