//! The no-op sink: accepts its (empty) configuration and answers every event
//! `ok` without looking at it. The dispatcher benchmark measures everything
//! around the plugin with it.

use herald_sdk::{EventRef, Outcome, Plugin};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub struct Noop;

impl Plugin for Noop {
    type Config = Config;

    fn new(_: Config) -> Result<Self, String> {
        Ok(Noop)
    }

    fn handle(&mut self, _event: &EventRef<'_>, _attempt: u32) -> Outcome {
        Outcome::Ok
    }
}

herald_sdk::export_plugin!(Noop);
