//! `dicom-gateway routes list|show|flip|…`, `audit list|verify` and
//! `reload`: operator commands over HTTPS to the admin API; and
//! `admin-tokens create|list|revoke` on the data directory ([`tokens`]).
//!
//! Exit codes: 0 done; 1 the gateway refused (its problem detail is on
//! stderr) or the audit chain is broken; 64 a bad local configuration;
//! 69 the admin API could not be reached (or no token was given).

mod connect;
mod tokens;

pub use connect::Connection;
pub use tokens::{AdminTokensCommand, DataDir};

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::render;
use connect::run_on;

/// A route action: the route, why, and where.
#[derive(Debug, Clone, Args)]
pub struct ActionArgs {
    /// The route's name.
    pub route: String,
    /// Why: mandatory, recorded in the audit trail with your identity.
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// Route commands that go through the admin API.
#[derive(Debug, Subcommand)]
pub enum RoutesAdminCommand {
    /// Every route: status, serving version, circuit, model file, operator state.
    List(Connection),
    /// One route in detail, with its fallback chain.
    Show {
        route: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Force the fallback chain (optionally --until a time or for a while).
    Flip {
        #[command(flatten)]
        action: ActionArgs,
        /// RFC 3339 time (2026-11-21T18:00:00Z) or a duration (30m, 2h).
        #[arg(long)]
        until: Option<String>,
    },
    /// End a forced fallback.
    Unflip(ActionArgs),
    /// Serve this version on every series until unpinned.
    Pin {
        #[command(flatten)]
        action: ActionArgs,
        /// A version of the route's model, e.g. 1.0.0.
        #[arg(long)]
        version: String,
    },
    /// Remove a pin: the promoted or configured version serves again.
    Unpin(ActionArgs),
    /// Move the route to a new version (loaded and healthy first).
    Promote {
        #[command(flatten)]
        action: ActionArgs,
        #[arg(long)]
        version: String,
    },
    /// Return to the version the last promote replaced.
    Rollback(ActionArgs),
    /// Take no new series; work in flight finishes.
    Drain(ActionArgs),
    /// Take new series again after a drain.
    Undrain(ActionArgs),
    /// Take the route out of service.
    Disable(ActionArgs),
    /// Put a disabled route back into service.
    Enable(ActionArgs),
    /// Send a share of studies to a candidate version (or --clear).
    Canary {
        #[command(flatten)]
        action: ActionArgs,
        #[arg(long, required_unless_present = "clear")]
        version: Option<String>,
        /// Share of studies, 0-100.
        #[arg(long, required_unless_present = "clear")]
        percent: Option<u8>,
        #[arg(long, conflicts_with_all = ["version", "percent"])]
        clear: bool,
    },
    /// Run a candidate version beside production, never forwarded (or --clear).
    Shadow {
        #[command(flatten)]
        action: ActionArgs,
        #[arg(long, required_unless_present = "clear")]
        version: Option<String>,
        #[arg(long, conflicts_with = "version")]
        clear: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Audit entries, oldest first: the newest --limit, or those after --since.
    List {
        /// Entries after this sequence number.
        #[arg(long)]
        since: Option<i64>,
        /// An action (route.flip) or a prefix ending in * (route.*).
        #[arg(long)]
        action: Option<String>,
        /// An identity (alice, system, cli).
        #[arg(long)]
        actor: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        connection: Connection,
    },
    /// Walk the hash chain; exits 1 naming the first entry that fails.
    Verify(Connection),
}

impl RoutesAdminCommand {
    pub fn run(self) -> ExitCode {
        let (connection, request) = self.request();
        run_on(&connection, |client| async move {
            Ok(match &request {
                Request::Get(path) => {
                    let body = client.get(path, &[]).await?;
                    let text = if path == "/routes" {
                        render::routes_table(&body)
                    } else {
                        render::route_detail(&body)
                    };
                    (body, text)
                }
                Request::Post(path, action) => {
                    let body = client.post(path, action).await?;
                    let text = render::action_result(&body);
                    (body, text)
                }
            })
        })
    }

    fn request(self) -> (Connection, Request) {
        use RoutesAdminCommand::*;
        let act = |a: ActionArgs, name: &str, extra: Value| {
            let mut body = json!({ "reason": a.reason });
            if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
                body.extend(extra);
            }
            let path = format!("/routes/{}/{name}", segment(&a.route));
            (a.connection, Request::Post(path, body))
        };
        match self {
            List(connection) => (connection, Request::Get("/routes".into())),
            Show { route, connection } => (
                connection,
                Request::Get(format!("/routes/{}", segment(&route))),
            ),
            Flip { action, until } => act(action, "flip", json!({ "until": until })),
            Unflip(a) => act(a, "unflip", json!({})),
            Pin { action, version } => act(action, "pin", json!({ "version": version })),
            Unpin(a) => act(a, "unpin", json!({})),
            Promote { action, version } => act(action, "promote", json!({ "version": version })),
            Rollback(a) => act(a, "rollback", json!({})),
            Drain(a) => act(a, "drain", json!({})),
            Undrain(a) => act(a, "undrain", json!({})),
            Disable(a) => act(a, "disable", json!({})),
            Enable(a) => act(a, "enable", json!({})),
            Canary {
                action,
                clear: true,
                ..
            } => act(action, "clear-canary", json!({})),
            Canary {
                action,
                version,
                percent,
                ..
            } => act(
                action,
                "canary",
                json!({ "version": version, "percent": percent }),
            ),
            Shadow {
                action,
                clear: true,
                ..
            } => act(action, "clear-shadow", json!({})),
            Shadow {
                action, version, ..
            } => act(action, "shadow", json!({ "version": version })),
        }
    }
}

enum Request {
    Get(String),
    Post(String, Value),
}

/// A route name as one URL path segment (names are tame, but be safe).
fn segment(name: &str) -> String {
    crate::admin::client::encode_component(name)
}

impl AuditCommand {
    pub fn run(self) -> ExitCode {
        match self {
            AuditCommand::List {
                since,
                action,
                actor,
                limit,
                connection,
            } => {
                let mut query = vec![("limit", limit.to_string())];
                query.extend(since.map(|s| ("since", s.to_string())));
                query.extend(action.map(|a| ("action", a)));
                query.extend(actor.map(|a| ("actor", a)));
                run_on(&connection, |client| async move {
                    let body = client.get("/audit", &query).await?;
                    let table = render::audit_table(&body);
                    Ok((body, table))
                })
            }
            AuditCommand::Verify(connection) => run_on(&connection, |client| async move {
                let body = client.get("/audit/verify", &[]).await?;
                let text = format!(
                    "audit trail verifies: {} entries, head {} {}\n",
                    body["entries"],
                    body["head_seq"],
                    body["head_hash"].as_str().unwrap_or("-")
                );
                Ok((body, text))
            }),
        }
    }
}

/// `dicom-gateway reload`: the gateway re-reads and checks its whole
/// configuration; a refusal lists every problem.
pub fn reload(connection: Connection) -> ExitCode {
    run_on(&connection, |client| async move {
        let body = client.post("/reload", &json!({})).await?;
        let text = render::reload_report(&body);
        Ok((body, text))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        routes: RoutesAdminCommand,
    }

    fn request(args: &[&str]) -> (String, Value) {
        let cli = Cli::try_parse_from(std::iter::once("routes").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.routes.request().1 {
            Request::Post(path, body) => (path, body),
            Request::Get(path) => (path, Value::Null),
        }
    }

    #[test]
    fn actions_become_api_requests() {
        let (path, body) = request(&[
            "flip",
            "ct-head",
            "--reason",
            "bad output",
            "--until",
            "30m",
        ]);
        assert_eq!(path, "/routes/ct-head/flip");
        assert_eq!(body, json!({"reason": "bad output", "until": "30m"}));
        let (path, body) = request(&["pin", "ct-head", "--version", "1.0.0", "--reason", "r"]);
        assert_eq!(
            (path.as_str(), &body["version"]),
            ("/routes/ct-head/pin", &json!("1.0.0"))
        );
        let (path, _) = request(&["canary", "ct-head", "--clear", "--reason", "r"]);
        assert_eq!(path, "/routes/ct-head/clear-canary");
        let (path, body) = request(&[
            "canary",
            "ct-head",
            "--version",
            "2.1.0",
            "--percent",
            "5",
            "--reason",
            "r",
        ]);
        assert_eq!(
            (path.as_str(), &body["percent"]),
            ("/routes/ct-head/canary", &json!(5))
        );
        assert_eq!(request(&["show", "a b"]).0, "/routes/a%20b");
    }

    #[test]
    fn a_reason_is_mandatory_on_the_command_line() {
        assert!(Cli::try_parse_from(["routes", "flip", "ct-head"]).is_err());
        assert!(Cli::try_parse_from(["routes", "canary", "ct-head", "--reason", "r"]).is_err());
        assert!(Cli::try_parse_from(["routes", "list"]).is_ok());
    }
}
