//! Audit export to a SIEM: each audit entry as one RFC 5424 syslog message
//! ([`format`]) over UDP (RFC 5426) or TCP (RFC 6587 octet counting).
//!
//! Off the hot path: a task follows the `audit` table by sequence number
//! and keeps its cursor in `audit_export`, so entries written while the
//! receiver or the gateway was down are sent later. Delivery is at least
//! once (a crash between a send and the cursor update repeats that batch;
//! UDP cannot tell a lost datagram). Messages carry what the audit detail
//! already holds and nothing more, plus the entry's sequence number and
//! hash, which anchors the hash chain outside this database.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

mod format;

pub use format::{APP_NAME, MAX_MESSAGE, Origin, SD_ID, format_message};

/// Where and how to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogConfig {
    pub transport: Transport,
    /// `host:port` as configured; resolved at each (re)connect.
    pub address: String,
    pub facility: Facility,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Syslog facility (RFC 5424 table 1). `audit` is "log audit" (13);
/// `authpriv` (10) is what many SIEM pipelines expect for security events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facility(u8);

impl Facility {
    pub const AUDIT: Facility = Facility(13);
    pub const AUTHPRIV: Facility = Facility(10);

    /// `audit`, `authpriv` or `local0`…`local7`.
    pub fn parse(name: &str) -> Result<Facility, String> {
        match name.trim() {
            "audit" | "log_audit" => Ok(Self::AUDIT),
            "authpriv" => Ok(Self::AUTHPRIV),
            other => other
                .strip_prefix("local")
                .and_then(|n| n.parse::<u8>().ok())
                .filter(|n| *n <= 7)
                .map(|n| Facility(16 + n))
                .ok_or_else(|| {
                    format!(
                        "`{other}` is not one of \"audit\", \"authpriv\", \"local0\"…\"local7\""
                    )
                }),
        }
    }

    pub fn code(self) -> u8 {
        self.0
    }
}

impl SyslogConfig {
    /// `udp://host:port` or `tcp://host:port`.
    pub fn parse(url: &str, facility: Facility) -> Result<SyslogConfig, String> {
        let (transport, rest) = if let Some(rest) = url.strip_prefix("udp://") {
            (Transport::Udp, rest)
        } else if let Some(rest) = url.strip_prefix("tcp://") {
            (Transport::Tcp, rest)
        } else {
            return Err(format!("`{url}` is not udp://host:port or tcp://host:port"));
        };
        let port = rest
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty())
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .filter(|port| *port != 0);
        if port.is_none() || rest.contains('/') {
            return Err(format!(
                "`{url}` needs a host and a port, e.g. udp://127.0.0.1:514"
            ));
        }
        Ok(SyslogConfig {
            transport,
            address: rest.to_string(),
            facility,
        })
    }

    /// The sink's name in `audit_export`: a new destination starts from
    /// the first entry.
    fn sink_name(&self) -> String {
        let scheme = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        format!("syslog:{scheme}://{}", self.address)
    }
}

/// How often the exporter looks for new entries when it is caught up.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Entries read and sent per round.
const BATCH: usize = 200;
/// Longest wait between attempts while the receiver is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts the exporter; it stops when `stop` turns true.
pub fn spawn(
    config: SyslogConfig,
    index_path: PathBuf,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let origin = Origin::local(config.facility);
    tokio::spawn(Exporter::new(config, index_path, origin).run(stop))
}

/// Follows the trail and sends what is new.
struct Exporter {
    config: SyslogConfig,
    index_path: PathBuf,
    origin: Origin,
    connection: Option<Connected>,
}

enum Connected {
    Udp(tokio::net::UdpSocket),
    Tcp(tokio::net::TcpStream),
}

/// Why a round stopped early.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("audit database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("cannot send to {address}: {source}")]
    Send {
        address: String,
        source: std::io::Error,
    },
}

impl Exporter {
    fn new(config: SyslogConfig, index_path: PathBuf, origin: Origin) -> Exporter {
        Exporter {
            config,
            index_path,
            origin,
            connection: None,
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let sink = self.config.sink_name();
        tracing::info!(sink = %sink, "audit export to syslog started");
        let mut failures: u32 = 0;
        loop {
            let wait = match self.round(&sink).await {
                // A full batch: more may be waiting.
                Ok(sent) if sent == BATCH => Duration::ZERO,
                Ok(_) => {
                    if failures > 0 {
                        tracing::info!(sink = %sink, "audit export to syslog resumed");
                    }
                    failures = 0;
                    POLL_INTERVAL
                }
                Err(e) => {
                    self.connection = None;
                    if failures == 0 {
                        tracing::warn!(sink = %sink, error = %e, "audit export to syslog paused; entries will be sent once it works");
                    }
                    failures = failures.saturating_add(1);
                    POLL_INTERVAL
                        .saturating_mul(2u32.saturating_pow(failures.min(5)))
                        .min(MAX_BACKOFF)
                }
            };
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => break,
            }
        }
        // What was written while stopping (the caller bounds the wait).
        if let Err(e) = self.round(&sink).await {
            tracing::warn!(sink = %sink, error = %e, "audit export to syslog stopped with entries unsent; they go out at the next start");
        }
        tracing::info!(sink = %sink, "audit export to syslog stopped");
    }

    /// Sends the entries after the cursor (one batch) and moves the cursor
    /// past those sent. Returns how many were sent.
    async fn round(&mut self, sink: &str) -> Result<usize, ExportError> {
        let path = self.index_path.clone();
        let sink_owned = sink.to_string();
        let (cursor, records) = blocking(move || {
            let conn = crate::db::open(&path)?;
            let cursor = read_cursor(&conn, &sink_owned)?;
            Ok((cursor, super::query::after(&conn, cursor, BATCH)?))
        })
        .await?;
        let mut sent_up_to = cursor;
        let mut outcome = Ok(());
        for record in &records {
            let message = format_message(record, &self.origin);
            if let Err(source) = self.send(&message).await {
                outcome = Err(ExportError::Send {
                    address: self.config.address.clone(),
                    source,
                });
                break;
            }
            sent_up_to = record.seq;
        }
        if sent_up_to != cursor {
            let path = self.index_path.clone();
            let sink_owned = sink.to_string();
            blocking(move || {
                let conn = crate::db::open(&path)?;
                write_cursor(&conn, &sink_owned, sent_up_to)
            })
            .await?;
        }
        outcome.map(|()| (sent_up_to - cursor) as usize)
    }

    async fn send(&mut self, message: &str) -> std::io::Result<()> {
        if self.connection.is_none() {
            self.connection = Some(self.connect().await?);
        }
        match self.connection.as_mut() {
            Some(Connected::Udp(socket)) => socket.send(message.as_bytes()).await.map(|_| ()),
            Some(Connected::Tcp(stream)) => {
                // RFC 6587 octet counting: "LEN SP MSG".
                let framed = format!("{} {message}", message.len());
                stream.write_all(framed.as_bytes()).await
            }
            None => Err(std::io::Error::other("not connected")),
        }
    }

    async fn connect(&self) -> std::io::Result<Connected> {
        let address = tokio::net::lookup_host(&self.config.address)
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other("the host name resolves to no address"))?;
        match self.config.transport {
            Transport::Udp => {
                let local = if address.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = tokio::net::UdpSocket::bind(local).await?;
                // Connected: a closed port on the way shows as an error on
                // a later send, and the cursor waits instead of moving on.
                socket.connect(address).await?;
                Ok(Connected::Udp(socket))
            }
            Transport::Tcp => {
                let stream = tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio::net::TcpStream::connect(address),
                )
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                stream.set_nodelay(true)?;
                Ok(Connected::Tcp(stream))
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> rusqlite::Result<T> + Send + 'static,
) -> rusqlite::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
}

fn read_cursor(conn: &Connection, sink: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row(
            "SELECT seq FROM audit_export WHERE sink = ?1",
            [sink],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

fn write_cursor(conn: &Connection, sink: &str, seq: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO audit_export (sink, seq) VALUES (?1, ?2)
         ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq",
        params![sink, seq],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
