//! Where the runtime keeps its state: `--state-dir`, else `WEIR_STATE_DIR`,
//! else `$XDG_STATE_HOME/weir`, else `~/.local/state/weir` (`docs/CLI.md`).

use std::path::PathBuf;

use clap::Args;

/// Where the embedded runtime keeps its state.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// State dir (else $WEIR_STATE_DIR, else $XDG_STATE_HOME/weir, else ~/.local/state/weir).
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
}

/// Resolves the state dir from the flag and the environment.
pub fn resolve(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("WEIR_STATE_DIR").map(PathBuf::from))
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|x| PathBuf::from(x).join("weir")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/weir")))
        .unwrap_or_else(|| PathBuf::from(".weir"))
}
