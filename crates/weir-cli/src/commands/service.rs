//! `weir service NAME --url`: where a `NodePort` or `LoadBalancer` Service
//! is reached from this machine, as `minikube service NAME --url` prints it.

use clap::Args;
use weir_api::backend::{Backend, BackendError};
use weir_api::resource::{Kind, ObjectRef};

use crate::exit::{self, fail};
use crate::target::TargetArgs;

/// `weir service` arguments.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The Service.
    pub name: String,
    /// Print the URLs (what the command does; accepted as minikube's flag).
    #[arg(long)]
    pub url: bool,
    /// Namespace (default: the backend's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Which backend.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Runs `weir service`.
pub async fn run(args: ServiceArgs) -> u8 {
    let backend = match args.target.backend().await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let service = ObjectRef {
        kind: Kind::Service,
        namespace: backend.namespace(args.namespace.as_deref()),
        name: args.name,
    };
    let live = match backend.get(&service).await {
        Ok(Some(live)) => live,
        Ok(None) => return fail(BackendError::NotFound(service)),
        Err(e) => return fail(e),
    };
    let nodes = match backend.node_addresses().await {
        Ok(nodes) => nodes,
        Err(e) => return fail(e),
    };
    match weir_api::service_url::service_urls(&live.object, &nodes) {
        Ok(urls) => {
            for url in urls {
                println!("{url}");
            }
            exit::OK
        }
        Err(why) => {
            eprintln!("{why}");
            exit::BAD_INPUT
        }
    }
}
