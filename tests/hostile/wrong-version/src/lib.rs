//! A component that exports `herald:plugin/handler@1.0.0`: a contract major
//! version the host does not implement. `herald check` must refuse it.

wit_bindgen::generate!({
    inline: "
        package herald:plugin@1.0.0;
        interface handler {
            configure: func(config: string) -> result<_, string>;
            handle: func(event-json: string) -> result<_, string>;
        }
        world sink { export handler; }
    ",
    world: "herald:plugin/sink@1.0.0",
});

struct Future;

impl exports::herald::plugin::handler::Guest for Future {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }
    fn handle(_event_json: String) -> Result<(), String> {
        Ok(())
    }
}

export!(Future);
