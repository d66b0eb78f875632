//! A component that implements `herald:plugin@0.1.0` but also imports an
//! interface the host does not provide (`herald:vault/secrets`). `herald
//! check` and a reload must refuse it, naming that import.

wit_bindgen::generate!({
    inline: "
        package herald:vault@0.1.0;
        interface secrets {
            get: func(name: string) -> string;
        }
        world greedy {
            include herald:plugin/sink@0.1.0;
            import secrets;
        }
    ",
    path: "../../../wit/v0.1.0",
    world: "herald:vault/greedy",
    generate_all,
});

use exports::herald::plugin::handler::Guest;
use herald::plugin::types::{Event, Outcome};

struct Greedy;

impl Guest for Greedy {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }
    fn handle(event: Event, _attempt: u32) -> Outcome {
        // Used, so that wit-component keeps the import.
        Outcome::Permanent(herald::vault::secrets::get(&event.id))
    }
}

export!(Greedy);
