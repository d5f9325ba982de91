//! Who may do what on the admin API: three ordered roles and the one table
//! that says which role each operation needs.

use serde::Serialize;

/// An operator token's role. Each role may do everything the roles below
/// it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads routes, models, engines and health.
    Viewer,
    /// Takes a misbehaving model out of the path and back (flip, pin,
    /// rollback, drain, clearing a canary or shadow), reads the audit trail.
    Operator,
    /// Puts new versions into service (promote, canary, shadow), takes a
    /// route out of service entirely (disable), reloads the configuration.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text.trim() {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn allows(self, operation: Operation) -> bool {
        self >= operation.required_role()
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the admin API does, by the name the audit trail and the
/// `gateway_admin_operator_actions_total{action}` label use (a bounded set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    ReadRoutes,
    ReadModels,
    ReadEngines,
    ReadHealth,
    Flip,
    Unflip,
    Pin,
    Unpin,
    Rollback,
    Drain,
    Undrain,
    ClearCanary,
    ClearShadow,
    ReadAudit,
    VerifyAudit,
    Promote,
    SetCanary,
    SetShadow,
    Disable,
    Enable,
    Reload,
}

impl Operation {
    /// Every operation, for the documentation table and the tests.
    pub const ALL: [Operation; 21] = [
        Operation::ReadRoutes,
        Operation::ReadModels,
        Operation::ReadEngines,
        Operation::ReadHealth,
        Operation::Flip,
        Operation::Unflip,
        Operation::Pin,
        Operation::Unpin,
        Operation::Rollback,
        Operation::Drain,
        Operation::Undrain,
        Operation::ClearCanary,
        Operation::ClearShadow,
        Operation::ReadAudit,
        Operation::VerifyAudit,
        Operation::Promote,
        Operation::SetCanary,
        Operation::SetShadow,
        Operation::Disable,
        Operation::Enable,
        Operation::Reload,
    ];

    /// The least role that may perform this operation.
    ///
    /// The line between operator and admin: an operator can always move a
    /// route back towards a version that is known to work and take load off
    /// it without taking it out of service; an admin is needed to put a new
    /// version in front of patients' studies, to stop a route entirely, or to
    /// change the configuration.
    pub fn required_role(self) -> Role {
        use Operation::*;
        match self {
            ReadRoutes | ReadModels | ReadEngines | ReadHealth => Role::Viewer,
            Flip | Unflip | Pin | Unpin | Rollback | Drain | Undrain | ClearCanary
            | ClearShadow | ReadAudit | VerifyAudit => Role::Operator,
            Promote | SetCanary | SetShadow | Disable | Enable | Reload => Role::Admin,
        }
    }

    /// The audit action and metric label: route actions use the names
    /// [`crate::route::RouteCommand::action`] records.
    pub fn action(self) -> &'static str {
        use Operation::*;
        match self {
            ReadRoutes => "routes.read",
            ReadModels => "models.read",
            ReadEngines => "engines.read",
            ReadHealth => "health.read",
            Flip => "route.flip",
            Unflip => "route.unflip",
            Pin => "route.pin",
            Unpin => "route.unpin",
            Rollback => "route.rollback",
            Drain => "route.drain",
            Undrain => "route.undrain",
            ClearCanary => "route.canary_clear",
            ClearShadow => "route.shadow_clear",
            ReadAudit => "audit.list",
            VerifyAudit => "audit.verify",
            Promote => "route.promote",
            SetCanary => "route.canary",
            SetShadow => "route.shadow",
            Disable => "route.disable",
            Enable => "route.enable",
            Reload => "config.reload",
        }
    }

    /// The route action named in a URL (`POST /v1/routes/{route}/{name}`).
    pub fn route_action(name: &str) -> Option<Operation> {
        use Operation::*;
        Some(match name {
            "flip" => Flip,
            "unflip" => Unflip,
            "pin" => Pin,
            "unpin" => Unpin,
            "promote" => Promote,
            "rollback" => Rollback,
            "drain" => Drain,
            "undrain" => Undrain,
            "disable" => Disable,
            "enable" => Enable,
            "canary" => SetCanary,
            "clear-canary" => ClearCanary,
            "shadow" => SetShadow,
            "clear-shadow" => ClearShadow,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn the_role_table() {
        use Operation::*;
        let viewer = [ReadRoutes, ReadModels, ReadEngines, ReadHealth];
        let operator = [
            Flip,
            Unflip,
            Pin,
            Unpin,
            Rollback,
            Drain,
            Undrain,
            ClearCanary,
            ClearShadow,
            ReadAudit,
            VerifyAudit,
        ];
        for op in Operation::ALL {
            let least = if viewer.contains(&op) {
                Role::Viewer
            } else if operator.contains(&op) {
                Role::Operator
            } else {
                Role::Admin
            };
            assert_eq!(op.required_role(), least, "{op:?}");
            assert!(Role::Admin.allows(op), "admin may do everything: {op:?}");
            assert_eq!(Role::Operator.allows(op), least <= Role::Operator, "{op:?}");
            assert_eq!(Role::Viewer.allows(op), least == Role::Viewer, "{op:?}");
        }
        // The operator's emergency actions, and what stays with an admin.
        assert!(Role::Operator.allows(Flip) && Role::Operator.allows(Rollback));
        assert!(!Role::Viewer.allows(Flip));
        assert!(!Role::Operator.allows(Promote) && !Role::Operator.allows(Reload));
        assert!(!Role::Operator.allows(Disable) && !Role::Viewer.allows(ReadAudit));
    }

    #[test]
    fn route_actions_match_the_audit_names_of_route_commands() {
        use crate::route::RouteCommand;
        let v = "1.0.0".parse().unwrap();
        let pairs = [
            ("flip", RouteCommand::Flip { until_ms: None }),
            ("unflip", RouteCommand::Unflip),
            ("pin", RouteCommand::Pin(v)),
            ("unpin", RouteCommand::Unpin),
            ("promote", RouteCommand::Promote(v)),
            ("rollback", RouteCommand::Rollback),
            ("drain", RouteCommand::Drain),
            ("undrain", RouteCommand::Undrain),
            ("disable", RouteCommand::Disable),
            ("enable", RouteCommand::Enable),
            (
                "canary",
                RouteCommand::SetCanary {
                    version: v,
                    percent: 5,
                },
            ),
            ("clear-canary", RouteCommand::ClearCanary),
            ("shadow", RouteCommand::SetShadow(v)),
            ("clear-shadow", RouteCommand::ClearShadow),
        ];
        for (name, command) in pairs {
            let op = Operation::route_action(name).expect(name);
            assert_eq!(op.action(), command.action(), "{name}");
        }
        assert_eq!(Operation::route_action("delete"), None);
    }
}
