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

/// Resolves the state dir from the flag and the environment, made
/// absolute: a relative one would move with every working directory a pod
/// is started in, and put its log and exit file outside the state dir.
pub fn resolve(flag: Option<PathBuf>) -> PathBuf {
    let dir = flag
        .or_else(|| std::env::var_os("WEIR_STATE_DIR").map(PathBuf::from))
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|x| PathBuf::from(x).join("weir")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/weir")))
        .unwrap_or_else(|| PathBuf::from(".weir"));
    std::path::absolute(&dir).unwrap_or(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_state_dir_is_made_absolute_under_the_working_directory() {
        let resolved = resolve(Some(PathBuf::from("rel/state")));
        assert!(resolved.is_absolute(), "{}", resolved.display());
        assert_eq!(resolved, std::env::current_dir().unwrap().join("rel/state"));
        let given = PathBuf::from("/somewhere/state");
        assert_eq!(resolve(Some(given.clone())), given);
    }
}
