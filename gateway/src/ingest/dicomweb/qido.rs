//! QIDO-RS (PS3.18). Not yet implemented: registers no routes.

use actix_web::web;

pub fn register(_cfg: &mut web::ServiceConfig) {}
