//! A route's health for operators, from the views of its chain steps:
//! whether the series that arrives now would get its result from the step
//! meant to serve it, from a fallback, or from no model at all.

use super::control::ChainStepView;
use crate::infer::CircuitState;

impl ChainStepView {
    /// False when this step is known not to serve now: its file is bad,
    /// it failed to load or its last probe, or its circuit is open.
    pub fn can_serve(&self) -> bool {
        self.file == "ok" && self.health.can_serve() && self.circuit != CircuitState::Open
    }
}

/// A route's health from its chain: `ready` when the first step to run
/// can serve, `degraded` when only a later model can, `down` when none
/// can and series would end at the terminal step. An operator's forced
/// fallback skips the first step, as the runner does.
pub fn route_health(forced_fallback: bool, chain: &[ChainStepView]) -> &'static str {
    let mut steps = chain.iter().skip(usize::from(forced_fallback));
    match steps.next() {
        Some(first) if first.can_serve() => "ready",
        _ if steps.any(ChainStepView::can_serve) => "degraded",
        _ => "down",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{HealthState, ModelHealth};

    fn step(file: &str, health: HealthState, circuit: CircuitState) -> ChainStepView {
        ChainStepView {
            model: "m@1.0.0".into(),
            file: file.into(),
            loaded: health == HealthState::Ready,
            circuit,
            circuit_detail: None,
            health: ModelHealth {
                state: health,
                detail: None,
                checked_at: None,
            },
        }
    }

    #[test]
    fn the_first_step_that_can_serve_decides() {
        use CircuitState::{Closed, Open};
        use HealthState::{NotLoaded, NotReady, Ready, Unavailable};
        let good = step("ok", Ready, Closed);
        let lazy = step("ok", NotLoaded, Closed);
        assert_eq!(route_health(false, &[good.clone(), good.clone()]), "ready");
        assert_eq!(
            route_health(false, std::slice::from_ref(&lazy)),
            "ready",
            "loads on use"
        );
        for bad in [
            step("ok", Unavailable, Closed),
            step("ok", NotReady, Closed),
            step("ok", Ready, Open),
            step("mismatch", NotLoaded, Closed),
        ] {
            assert_eq!(
                route_health(false, &[bad.clone(), good.clone()]),
                "degraded"
            );
            assert_eq!(route_health(false, &[bad.clone(), bad.clone()]), "down");
            assert_eq!(route_health(false, std::slice::from_ref(&bad)), "down");
            // A forced fallback skips the first step, whatever its health.
            assert_eq!(route_health(true, &[bad.clone(), good.clone()]), "ready");
            assert_eq!(route_health(true, &[good.clone(), bad.clone()]), "down");
        }
        assert_eq!(route_health(false, &[]), "down");
    }
}
