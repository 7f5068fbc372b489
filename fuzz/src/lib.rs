//! The fuzz targets' panic policy; what each target runs is in [`targets`]
//! (shared with tests/fuzz_regressions.rs, which replays saved crashes).
//!
//! A panic that smelt catches on purpose (inside [`guard::catch`], where a
//! third-party parser's panic becomes a counted `parser_panic` or `bad_feed`
//! skip) is the designed behaviour, not a crash: the hook lets it unwind to
//! the guard. Any other panic aborts, and libFuzzer saves the input.

use std::sync::Once;

use smelt_engine::guard;

pub mod targets;

/// Installs the panic policy once per process (call at the top of each target).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if guard::guarded() {
                return; // caught by smelt and counted as a skip
            }
            default(info);
            std::process::abort();
        }));
    });
}
