//! An input that makes a parser panic (a third-party one such as feed-rs or
//! quick-xml, or a bug of smelt's own) must not kill a run: the parse runs
//! under `catch_unwind`, and a panic comes back as a message that the caller
//! counts as a skip of that record or split, with a reason (`bad_feed`,
//! `parser_panic`) and the input's location, while the run goes on.
//!
//! ```text
//! record or split ──catch_at(location, parse)──► Ok(parsed)
//!                                           └──► Err("panicked: <message>") ──► skip counted + logged; next record
//! ```
//! Tests make a parser panic on purpose with `SMELT_TEST_PANIC=<text>`:
//! every [`catch_at`] whose location contains `<text>` panics before parsing.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// Runs `f`; a panic inside it becomes `Err` with the panic's message.
///
/// Whatever `f` borrowed mutably may be left half-updated by a panic: the
/// caller stops using the parser it guarded for the rest of that record or split.
///
/// # Errors
/// `f` panicked.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    GUARDED.with(|g| g.set(g.get() + 1));
    let caught = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    caught.map_err(|p| {
        let message = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        format!("panicked: {message}")
    })
}

thread_local! {
    static GUARDED: Cell<u32> = const { Cell::new(0) };
}

/// Whether this thread is inside [`catch`] now: a panic hook can tell a panic
/// that will be caught and counted as a skip from one that ends the run (the
/// fuzz targets abort only on the latter).
pub fn guarded() -> bool {
    GUARDED.with(Cell::get) > 0
}

/// [`catch`] for the input at `location` (a URL, `file#offset`, a split id),
/// which also honours the `SMELT_TEST_PANIC` test hook.
///
/// # Errors
/// `f` panicked (or the test hook made it panic).
pub fn catch_at<T>(location: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch(|| {
        if test_panic().is_some_and(|marker| location.contains(marker)) {
            panic!("SMELT_TEST_PANIC matched {location}");
        }
        f()
    })
}

fn test_panic() -> Option<&'static str> {
    static MARKER: OnceLock<Option<String>> = OnceLock::new();
    MARKER.get_or_init(|| std::env::var("SMELT_TEST_PANIC").ok().filter(|m| !m.is_empty())).as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message() {
        assert_eq!(catch(|| 7), Ok(7));
        assert_eq!(catch(|| -> u8 { panic!("bad byte at {}", 3) }), Err("panicked: bad byte at 3".into()));
        let v: Vec<u8> = Vec::new();
        assert!(catch(|| v[1]).unwrap_err().contains("index out of bounds"));
        assert_eq!(catch_at("http://a.org/feed", || 1), Ok(1));
        assert!(!guarded());
        assert_eq!(catch(guarded), Ok(true));
        assert_eq!(catch(|| catch(guarded)), Ok(Ok(true)));
        assert!(!guarded());
    }
}
