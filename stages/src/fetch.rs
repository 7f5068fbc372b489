//! Files a stage reads at compile time (models, benchmark files) from a local
//! path or an object-store URL.

/// The bytes of `location` (a local path or an object-store URL: `s3://`,
/// `https://`, `file://`); `what` names the file in messages.
///
/// # Errors
/// A message naming the file and the cause.
pub fn read_location(location: &str, what: &str) -> std::result::Result<Vec<u8>, String> {
    if !location.contains("://") {
        return std::fs::read(location).map_err(|e| format!("cannot read {what} {location}: {e}"));
    }
    let Some((dir, name)) = location.rsplit_once('/').filter(|(d, n)| !n.is_empty() && !d.ends_with(':')) else {
        return Err(format!("`{location}` names no file"));
    };
    // On a thread of its own: the I/O runtime's `block_on` must not run inside an async task.
    let fetched = std::thread::scope(|s| {
        s.spawn(|| {
            smelt_engine::blocking::block_on(async {
                let store = smelt_catalog::store::DatasetStore::open(dir)?;
                store.get(name).await
            })
        })
        .join()
    });
    match fetched {
        Ok(Ok(Some(bytes))) => Ok(bytes.to_vec()),
        Ok(Ok(None)) => Err(format!("cannot read {what} {location}: no such object")),
        Ok(Err(e)) => Err(format!("cannot read {what} {location}: {e}")),
        Err(_) => Err(format!("cannot read {what} {location}: the download panicked")),
    }
}
