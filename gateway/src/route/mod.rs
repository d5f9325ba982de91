//! Routing by protocol, between `assemble` and `infer`: ordered rules on
//! DICOM attributes pick the routes (models and destinations) of a series.
// STUB-MERGE: replaced by the route branch.
use std::sync::Arc;
use crate::models::ModelId;
use crate::store::IndexedAttributes;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level { Series, Instance }
impl Level { pub fn as_str(self) -> &'static str { match self { Level::Series => "series", Level::Instance => "instance" } } }
#[derive(Debug, Clone)]
pub struct Route { pub name: String, pub model: ModelId, pub level: Level, pub destinations: Vec<String>, pub enabled: bool }
pub struct RouteTable { routes: Vec<Route> }
impl RouteTable { pub fn check(&self, _m: &dyn Fn(&ModelId) -> bool, _d: &[String]) -> Result<(), RoutesError> { Ok(()) } pub fn routes(&self) -> &[Route] { &self.routes } pub fn embedded_default() -> RouteTable { RouteTable { routes: vec![] } } }
#[derive(Debug, thiserror::Error)] #[error("routes")] pub struct RoutesError(pub Vec<String>);
pub struct RoutingInput<'a> { pub attributes: &'a IndexedAttributes, pub site: &'a str, pub calling_ae: &'a str }
pub struct RouteMatch { pub route: Route, pub reasons: Vec<String> }
pub struct RouteMiss { pub route: String, pub reason: String }
pub struct RoutingDecision { pub matched: Vec<RouteMatch>, pub not_matched: Vec<RouteMiss> }
pub fn test_files(_t: &RouteTable, _f: &[std::path::PathBuf], _s: &str, _c: &str, _j: bool) -> Result<String, RoutesError> { Ok(String::new()) }
impl RouteTable { pub fn from_toml(_t: &str) -> Result<RouteTable, RoutesError> { Ok(RouteTable::embedded_default()) } }
pub fn evaluate(_t: &RouteTable, _i: &RoutingInput<'_>) -> RoutingDecision { RoutingDecision { matched: vec![], not_matched: vec![] } }
#[derive(Clone)] pub struct RoutesHandle(Arc<RouteTable>);
impl RoutesHandle {
  pub fn load(_p: Option<std::path::PathBuf>, _v: Arc<dyn Fn(&RouteTable) -> Result<(), RoutesError> + Send + Sync>, _r: &prometheus::Registry) -> Result<RoutesHandle, RoutesError> { Ok(RoutesHandle(Arc::new(RouteTable::embedded_default()))) }
  pub fn current(&self) -> Arc<RouteTable> { self.0.clone() }
  pub fn spawn_watcher(&self, _i: std::time::Duration) -> tokio::task::JoinHandle<()> { tokio::spawn(async {}) }
}
