//! Where the external tools changeflow runs (the Temporal CLI, later OpenBao) are found:
//! an explicit environment variable, the project's `.tools/` environment, or `PATH`.

use std::path::{Path, PathBuf};

/// Finds `name`: `$env_var` if set, else `.tools/venv/bin/<name>` in the current directory or
/// next to the project the binary was built in, else `name` on `PATH`.
pub fn locate(name: &str, env_var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return PathBuf::from(path);
    }
    let mut candidates = vec![PathBuf::from(".tools/venv/bin").join(name)];
    // target/{debug,release}/changeflow → project root two levels up.
    if let Ok(exe) = std::env::current_exe()
        && let Some(root) = exe.ancestors().nth(3)
    {
        candidates.push(root.join(".tools/venv/bin").join(name));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../.tools/venv/bin")
            .join(name),
    );
    candidates
        .into_iter()
        .find(|c| c.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}
