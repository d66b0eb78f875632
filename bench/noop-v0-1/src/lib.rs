//! The no-op sink on contract 0.1.0: answers every event `ok` without
//! looking at it. Beside `bench/noop-plugin` (0.2.0) it shows what passing
//! the whole record costs.

wit_bindgen::generate!({
    path: "../../wit/v0.1.0",
    world: "sink",
    generate_all,
});

use exports::herald::plugin::handler::Guest;
use herald::plugin::types::{Event, Outcome};

struct Noop;

impl Guest for Noop {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }
    fn handle(_event: Event, _attempt: u32) -> Outcome {
        Outcome::Ok
    }
}

export!(Noop);
