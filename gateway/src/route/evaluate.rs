//! The routing decision for one series (or instance): a pure function of
//! the attributes, where the data came from, and the table.

use super::table::{Route, RouteTable};
use crate::store::IndexedAttributes;

/// What routing looks at: the attributes of (the first instance of) a
/// series plus where it came from.
#[derive(Debug, Clone, Copy)]
pub struct RoutingInput<'a> {
    pub attributes: &'a IndexedAttributes,
    /// The gateway's site name for the sender.
    pub site: &'a str,
    pub calling_ae: &'a str,
}

/// Every route, taken or not, each with why. Routes keep table order.
#[derive(Debug, Clone)]
pub struct RoutingDecision {
    pub matched: Vec<RouteMatch>,
    pub not_matched: Vec<RouteMiss>,
}

impl RoutingDecision {
    /// No route taken: the series is stored only (counted as unrouted).
    pub fn is_unrouted(&self) -> bool {
        self.matched.is_empty()
    }
}

/// A route taken, with one reason per condition (e.g. "Modality CT matches CT").
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub route: Route,
    pub reasons: Vec<String>,
}

/// A route not taken, with the first condition that failed (e.g.
/// "BodyPartExamined CHEST does not match HEAD|BRAIN") or "the route is disabled".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMiss {
    pub route: String,
    pub reason: String,
}

/// Pure: same input, same decision. Every enabled route whose conditions
/// all hold is taken (fan-out); nothing here fails.
pub fn evaluate(table: &RouteTable, input: &RoutingInput<'_>) -> RoutingDecision {
    let mut matched = Vec::new();
    let mut not_matched = Vec::new();
    for route in table.routes() {
        if !route.enabled {
            not_matched.push(RouteMiss {
                route: route.name.clone(),
                reason: "the route is disabled".into(),
            });
            continue;
        }
        match route.matcher.check(input) {
            Ok(reasons) => matched.push(RouteMatch {
                route: route.clone(),
                reasons,
            }),
            Err(reason) => not_matched.push(RouteMiss {
                route: route.name.clone(),
                reason,
            }),
        }
    }
    RoutingDecision {
        matched,
        not_matched,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::route::Level;

    fn attributes(modality: &str, body_part: Option<&str>) -> IndexedAttributes {
        IndexedAttributes {
            modality: Some(modality.into()),
            body_part_examined: body_part.map(Into::into),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            ..Default::default()
        }
    }

    fn decide(table: &RouteTable, attributes: &IndexedAttributes) -> RoutingDecision {
        evaluate(
            table,
            &RoutingInput {
                attributes,
                site: "north",
                calling_ae: "CT1",
            },
        )
    }

    fn names(decision: &RoutingDecision) -> Vec<&str> {
        decision
            .matched
            .iter()
            .map(|m| m.route.name.as_str())
            .collect()
    }

    #[test]
    fn embedded_default_routes_ct_head_and_radiographs_only() {
        let table = RouteTable::embedded_default();

        let head = decide(&table, &attributes("CT", Some("HEAD")));
        assert_eq!(names(&head), vec!["ct-head-hyperdensity"]);
        assert_eq!(
            head.matched[0].route.model.to_string(),
            "ct-hyperdensity@2.0.0"
        );
        assert_eq!(head.matched[0].route.level, Level::Series);
        assert_eq!(
            head.matched[0].reasons,
            vec![
                "Modality CT matches CT",
                "BodyPartExamined HEAD matches HEAD"
            ]
        );
        assert_eq!(
            head.not_matched,
            vec![RouteMiss {
                route: "radiograph-exposure".into(),
                reason: "Modality CT does not match CR|DX".into()
            }]
        );

        let brain = decide(&table, &attributes("CT", Some("brain")));
        assert_eq!(names(&brain), vec!["ct-head-hyperdensity"]);

        let chest = decide(&table, &attributes("CT", Some("CHEST")));
        assert!(chest.is_unrouted());
        assert_eq!(
            chest.not_matched[0].reason,
            "BodyPartExamined CHEST does not match HEAD|BRAIN"
        );

        let dx = decide(&table, &attributes("DX", Some("CHEST")));
        assert_eq!(names(&dx), vec!["radiograph-exposure"]);
        assert_eq!(dx.matched[0].route.model.to_string(), "dx-exposure@1.0.0");
        assert_eq!(dx.matched[0].route.level, Level::Instance);
    }

    const TWO_ROUTES: &str = r#"
        [[route]]
        name = "ct-any"
        model = "a@1.0.0"
        level = "series"
        [route.match]
        modality = "CT"

        [[route]]
        name = "head"
        model = "b@1.0.0"
        level = "series"
        destinations = ["pacs"]
        [route.match]
        body_part_examined = ["HEAD"]
        site = "north"
    "#;

    #[test]
    fn a_series_can_take_several_routes() {
        let table = RouteTable::from_toml(TWO_ROUTES).unwrap();
        let decision = decide(&table, &attributes("CT", Some("HEAD")));
        assert_eq!(names(&decision), vec!["ct-any", "head"]);
        assert!(decision.not_matched.is_empty());
        assert_eq!(
            decision.matched[1].reasons,
            vec![
                "BodyPartExamined HEAD matches HEAD",
                "site north matches north"
            ]
        );
        assert_eq!(
            decision.matched[1].route.destinations,
            vec!["pacs".to_string()]
        );
    }

    #[test]
    fn a_disabled_route_is_never_taken_and_says_why() {
        let text = TWO_ROUTES.replace(
            "level = \"series\"\n        destinations",
            "level = \"series\"\n        enabled = false\n        destinations",
        );
        let table = RouteTable::from_toml(&text).unwrap();
        let decision = decide(&table, &attributes("CT", Some("HEAD")));
        assert_eq!(names(&decision), vec!["ct-any"]);
        assert_eq!(
            decision.not_matched,
            vec![RouteMiss {
                route: "head".into(),
                reason: "the route is disabled".into()
            }]
        );
    }

    #[test]
    fn a_series_matching_nothing_is_unrouted() {
        let table = RouteTable::from_toml(TWO_ROUTES).unwrap();
        let decision = decide(&table, &attributes("MR", None));
        assert!(decision.is_unrouted());
        let reasons: Vec<&str> = decision
            .not_matched
            .iter()
            .map(|m| m.reason.as_str())
            .collect();
        assert_eq!(
            reasons,
            vec![
                "Modality MR does not match CT",
                "BodyPartExamined is absent (the route needs HEAD)"
            ]
        );
        let empty = RouteTable::default();
        let decision = decide(&empty, &attributes("CT", Some("HEAD")));
        assert!(decision.is_unrouted() && decision.not_matched.is_empty());
    }

    fn any_attributes() -> impl Strategy<Value = IndexedAttributes> {
        let value = || proptest::option::of("[ A-Za-z0-9*?.]{0,12}");
        (
            value(),
            value(),
            value(),
            value(),
            value(),
            value(),
            value(),
            "[0-9.]{0,20}",
        )
            .prop_map(
                |(modality, body, protocol, description, manufacturer, model, station, sop)| {
                    IndexedAttributes {
                        modality,
                        body_part_examined: body,
                        protocol_name: protocol,
                        series_description: description,
                        manufacturer,
                        manufacturer_model_name: model,
                        station_name: station,
                        sop_class_uid: sop,
                        ..Default::default()
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn evaluation_is_deterministic(
            attributes in any_attributes(),
            site in "[a-z]{0,6}",
            calling_ae in "[ A-Z0-9]{0,16}",
        ) {
            let table = RouteTable::embedded_default();
            let input = RoutingInput { attributes: &attributes, site: &site, calling_ae: &calling_ae };
            let first = evaluate(&table, &input);
            let second = evaluate(&table, &input);
            prop_assert_eq!(names(&first), names(&second));
            prop_assert_eq!(&first.not_matched, &second.not_matched);
            let reasons = |d: &RoutingDecision| d.matched.iter().map(|m| m.reasons.clone()).collect::<Vec<_>>();
            prop_assert_eq!(reasons(&first), reasons(&second));
            prop_assert_eq!(first.matched.len() + first.not_matched.len(), table.routes().len());
        }

        #[test]
        fn a_route_without_conditions_matches_every_input(
            attributes in any_attributes(),
            site in "[a-z]{0,6}",
            calling_ae in "[ A-Z0-9]{0,16}",
        ) {
            let table = RouteTable::from_toml(
                "[[route]]\nname = \"all\"\nmodel = \"m@1.0.0\"\nlevel = \"instance\"\n",
            ).unwrap();
            let input = RoutingInput { attributes: &attributes, site: &site, calling_ae: &calling_ae };
            let decision = evaluate(&table, &input);
            prop_assert_eq!(names(&decision), vec!["all"]);
        }
    }
}
