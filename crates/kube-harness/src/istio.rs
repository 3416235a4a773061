//! Istio's CRDs, verbatim (`fixtures/istio/`), installed into the control
//! plane as `istioctl install` or Helm's base chart installs them, and
//! waited for until each is Established.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use serde_json::Value;

/// The Istio releases whose CRDs the tests install: the oldest weir
/// supports, which stores `v1beta1`, and a current one, which stores `v1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IstioRelease {
    /// 1.22.8.
    V1_22,
    /// 1.30.3.
    V1_30,
}

impl IstioRelease {
    fn crds(self) -> &'static str {
        match self {
            Self::V1_22 => include_str!("../fixtures/istio/crd-all-1.22.8.yaml"),
            Self::V1_30 => include_str!("../fixtures/istio/crd-all-1.30.3.yaml"),
        }
    }

    /// The version each Istio kind is stored at.
    pub fn stored_version(self) -> &'static str {
        match self {
            Self::V1_22 => "v1beta1",
            Self::V1_30 => "v1",
        }
    }
}

/// Installs `release`'s CRDs and waits until every one is Established.
pub async fn install(client: &kube::Client, release: IstioRelease) {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(release.crds()).expect("Istio's CRDs parse");
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let apply = PatchParams::apply("kube-harness").force();
    let mut names = Vec::new();
    for crd in documents
        .into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
    {
        let name = crd["metadata"]["name"]
            .as_str()
            .expect("a CRD's name")
            .to_string();
        crds.patch(&name, &apply, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("install CRD {name}: {e}"));
        names.push(name);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for name in names {
        loop {
            let crd = crds.get(&name).await.expect("an installed CRD");
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "CRD {name} not Established"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
