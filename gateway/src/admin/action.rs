//! A route action's JSON body, checked and turned into a
//! [`RouteCommand`]. Pure, so every rule is a unit test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::problem::AdminError;
use super::roles::Operation;
use crate::models::Version;
use crate::route::{RouteCommand, StateError};

/// Longest reason accepted: a sentence or two for the audit trail.
pub const MAX_REASON_CHARS: usize = 1000;

/// `POST /v1/routes/{route}/{action}` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// Why: mandatory for every action, recorded in the audit trail.
    #[serde(default)]
    pub reason: Option<String>,
    /// `flip` only: RFC 3339 time, or a duration from now (`30m`, `2h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// `pin`, `promote`, `canary`, `shadow`: a version of the route's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `canary` only: share of studies, 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u64>,
}

impl ActionBody {
    /// The reason, trimmed, if one was given.
    pub fn reason(&self) -> Option<&str> {
        self.reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
    }
}

/// Checks `body` for `operation` and builds the command. `now` is when
/// the request arrived (for `until` durations).
pub fn command(
    operation: Operation,
    body: &ActionBody,
    now: SystemTime,
) -> Result<RouteCommand, AdminError> {
    let reason = body
        .reason()
        .ok_or(AdminError::Refused(StateError::MissingReason))?;
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(AdminError::BadRequest(format!(
            "`reason` is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    let name = operation.action();
    let takes_version = matches!(
        operation,
        Operation::Pin | Operation::Promote | Operation::SetCanary | Operation::SetShadow
    );
    if body.until.is_some() && operation != Operation::Flip {
        return Err(AdminError::BadRequest(format!(
            "`until` applies to route.flip only, not {name}"
        )));
    }
    if body.version.is_some() && !takes_version {
        return Err(AdminError::BadRequest(format!(
            "`version` does not apply to {name}"
        )));
    }
    if body.percent.is_some() && operation != Operation::SetCanary {
        return Err(AdminError::BadRequest(format!(
            "`percent` applies to route.canary only, not {name}"
        )));
    }
    let version = || -> Result<Version, AdminError> {
        let text = body.version.as_deref().ok_or_else(|| {
            AdminError::BadRequest(format!("{name} needs a `version`, e.g. \"1.0.0\""))
        })?;
        text.trim()
            .parse()
            .map_err(|why: String| AdminError::BadRequest(format!("`version`: {why}")))
    };
    Ok(match operation {
        Operation::Flip => RouteCommand::Flip {
            until_ms: body
                .until
                .as_deref()
                .map(|text| parse_until(text, now))
                .transpose()
                .map_err(AdminError::BadRequest)?,
        },
        Operation::Unflip => RouteCommand::Unflip,
        Operation::Pin => RouteCommand::Pin(version()?),
        Operation::Unpin => RouteCommand::Unpin,
        Operation::Promote => RouteCommand::Promote(version()?),
        Operation::Rollback => RouteCommand::Rollback,
        Operation::Drain => RouteCommand::Drain,
        Operation::Undrain => RouteCommand::Undrain,
        Operation::Disable => RouteCommand::Disable,
        Operation::Enable => RouteCommand::Enable,
        Operation::SetCanary => {
            let percent = body.percent.ok_or_else(|| {
                AdminError::BadRequest("route.canary needs a `percent` (0-100)".into())
            })?;
            let percent = u8::try_from(percent)
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| {
                    AdminError::BadRequest(format!("`percent` {percent} is not within 0-100"))
                })?;
            RouteCommand::SetCanary {
                version: version()?,
                percent,
            }
        }
        Operation::ClearCanary => RouteCommand::ClearCanary,
        Operation::SetShadow => RouteCommand::SetShadow(version()?),
        Operation::ClearShadow => RouteCommand::ClearShadow,
        other => {
            return Err(AdminError::internal(format!(
                "{} is not a route action",
                other.action()
            )));
        }
    })
}

/// `until` as Unix milliseconds: an RFC 3339 time (`2026-11-21T18:00:00Z`,
/// or with an offset like `+01:00`) or a duration from `now` (`30m`,
/// `2h 30m`). Whether it lies in the future is the route state's check.
pub fn parse_until(text: &str, now: SystemTime) -> Result<i64, String> {
    let text = text.trim();
    let at = if let Ok(duration) = humantime::parse_duration(text) {
        now.checked_add(duration)
    } else {
        parse_rfc3339(text)
    }
    .ok_or_else(|| {
        format!(
            "`until`: `{text}` is neither an RFC 3339 time (2026-11-21T18:00:00Z) nor a duration (30m, 2h)"
        )
    })?;
    let millis = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    i64::try_from(millis).map_err(|_| format!("`until`: `{text}` is too far away"))
}

/// RFC 3339 in UTC (`Z`) or with a numeric offset.
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    if let Ok(at) = humantime::parse_rfc3339(text) {
        return Some(at);
    }
    // `…+01:00` / `…-05:30`: parse the local part as UTC, then shift.
    let split = text.len().checked_sub(6)?;
    let (local, offset) = (text.get(..split)?, text.get(split..)?);
    let sign = match offset.as_bytes().first()? {
        b'+' => 1i64,
        b'-' => -1i64,
        _ => return None,
    };
    let (hours, minutes) = offset.get(1..)?.split_once(':')?;
    let (hours, minutes): (u64, u64) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    let base = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
    let shift = Duration::from_secs(hours * 3600 + minutes * 60);
    // Local time = UTC + offset, so UTC = local - offset.
    if sign > 0 {
        base.checked_sub(shift)
    } else {
        base.checked_add(shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> ActionBody {
        serde_json::from_value(json).unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn every_action_needs_a_reason() {
        for value in [
            serde_json::json!({}),
            serde_json::json!({"reason": ""}),
            serde_json::json!({"reason": "  \n"}),
        ] {
            let e = command(Operation::Unflip, &body(value), at(0)).unwrap_err();
            assert!(
                matches!(e, AdminError::Refused(StateError::MissingReason)),
                "{e}"
            );
        }
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        let e = command(
            Operation::Unflip,
            &body(serde_json::json!({ "reason": long })),
            at(0),
        );
        assert!(matches!(e, Err(AdminError::BadRequest(_))));
    }

    #[test]
    fn flip_until_a_time_or_for_a_while() {
        let flip = |until: &str| {
            command(
                Operation::Flip,
                &body(serde_json::json!({"reason": "r", "until": until})),
                at(1_000),
            )
        };
        assert_eq!(
            flip("30m").unwrap(),
            RouteCommand::Flip {
                until_ms: Some(2_800_000)
            }
        );
        let expected = humantime::parse_rfc3339("2026-11-21T18:00:00Z").unwrap();
        let expected = expected.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        for text in [
            "2026-11-21T18:00:00Z",
            "2026-11-21T19:00:00+01:00",
            "2026-11-21T12:30:00-05:30",
        ] {
            assert_eq!(
                flip(text).unwrap(),
                RouteCommand::Flip {
                    until_ms: Some(expected)
                },
                "{text}"
            );
        }
        let e = flip("tomorrow").unwrap_err();
        assert!(e.to_string().contains("neither an RFC 3339 time"), "{e}");
        assert_eq!(
            command(
                Operation::Flip,
                &body(serde_json::json!({"reason": "r"})),
                at(0)
            )
            .unwrap(),
            RouteCommand::Flip { until_ms: None }
        );
    }

    #[test]
    fn versions_and_percent_are_checked() {
        let v: Version = "1.0.0".parse().unwrap();
        let run = |op, json| command(op, &body(json), at(0));
        assert_eq!(
            run(
                Operation::Pin,
                serde_json::json!({"reason": "r", "version": "1.0.0"})
            )
            .unwrap(),
            RouteCommand::Pin(v)
        );
        let e = run(Operation::Pin, serde_json::json!({"reason": "r"})).unwrap_err();
        assert!(e.to_string().contains("needs a `version`"), "{e}");
        let e = run(
            Operation::Promote,
            serde_json::json!({"reason": "r", "version": "v2"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a version"), "{e}");
        assert_eq!(
            run(
                Operation::SetCanary,
                serde_json::json!({"reason": "r", "version": "1.0.0", "percent": 10})
            )
            .unwrap(),
            RouteCommand::SetCanary {
                version: v,
                percent: 10
            }
        );
        for percent in [101u64, 300, 1 << 40] {
            let e = run(
                Operation::SetCanary,
                serde_json::json!({"reason": "r", "version": "1.0.0", "percent": percent}),
            )
            .unwrap_err();
            assert!(e.to_string().contains("not within 0-100"), "{e}");
        }
    }

    #[test]
    fn fields_that_do_not_apply_are_refused_not_ignored() {
        let e = command(
            Operation::Rollback,
            &body(serde_json::json!({"reason": "r", "version": "1.0.0"})),
            at(0),
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not apply"), "{e}");
        let e = command(
            Operation::Pin,
            &body(serde_json::json!({"reason": "r", "version": "1.0.0", "until": "1h"})),
            at(0),
        )
        .unwrap_err();
        assert!(e.to_string().contains("flip only"), "{e}");
        assert!(serde_json::from_value::<ActionBody>(serde_json::json!({"reasn": "r"})).is_err());
    }
}
