//! STOW-RS (PS3.18 10.5). Not yet implemented: registers no routes.

use actix_web::web;

pub fn register(_cfg: &mut web::ServiceConfig) {}
