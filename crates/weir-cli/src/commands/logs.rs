//! `weir logs POD [-f]`: the pod's stdout and stderr, from its log file.

use std::io::{Read, Write};
use std::time::Duration;

use weir_runtime::admin::AdminClient;

use crate::commands::report;
use crate::{StateArgs, exit, state_dir};

/// Prints the log; with `follow`, keeps printing new output until interrupted.
pub async fn run(pod: &str, follow: bool, namespace: &str, state: StateArgs) -> u8 {
    let client = AdminClient::new(&state_dir::resolve(state.state_dir));
    let path = match client.log_path(namespace, pod).await {
        Ok(p) => p,
        Err(e) => return report(e),
    };
    let Ok(mut file) = std::fs::File::open(&path) else {
        eprintln!("weir: cannot open {}", path.display());
        return exit::FAILED;
    };
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if file.read_to_end(&mut buf).is_err() {
            return exit::FAILED;
        }
        if std::io::stdout()
            .write_all(&buf)
            .and_then(|()| std::io::stdout().flush())
            .is_err()
        {
            return exit::OK;
        }
        if !follow {
            return exit::OK;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
