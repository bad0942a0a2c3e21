//! Writes `schemas/json/*.schema.json` and `schemas/asyncapi.json` from the wire types.
//! Run `cargo run -p schemas --bin gen-schemas` after changing a wire type.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let files = schemas::catalogue::render();
    for (name, body) in files {
        let path = root.join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, body)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
