//! What to say when the API server answers 404 for a resource's path
//! itself (not for an object in it): the group is not served at all (its
//! CRDs are not installed), or the resource is served at other versions
//! than the manifest names. Judged per resource, not per group: Istio's
//! group stays served at `v1alpha3` for its other kinds after a release
//! stops serving VirtualServices there.

use serde_json::Value;

use crate::kinds::ISTIO_GROUP;

/// What discovery showed of the resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Served {
    /// The group is not served at all.
    NoGroup,
    /// The group is served; the resource at these versions (maybe none).
    At(Vec<String>),
}

/// The versions a group's discovery document (`/apis/GROUP`) lists.
pub fn group_versions(group: &Value) -> Vec<String> {
    group["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["version"].as_str().or_else(|| v.as_str()))
        .map(str::to_owned)
        .collect()
}

/// Whether a version's resource list (`/apis/GROUP/VERSION`) has `plural`.
pub fn lists_resource(list: &Value, plural: &str) -> bool {
    list["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["name"] == plural)
}

/// The message: `about` (the object or resource), `server` (the API
/// server's name), `group` and `plural` of the resource, the `version` the
/// manifest names, and what discovery showed.
pub fn message(
    about: &str,
    server: &str,
    group: &str,
    plural: &str,
    version: &str,
    served: &Served,
) -> String {
    let group_name = if group.is_empty() {
        "the core API".to_owned()
    } else {
        format!("the API group {group}")
    };
    let missing_crd = if group == ISTIO_GROUP {
        "Istio's CRDs are not installed (install Istio; `weir doctor` says what the cluster lacks)"
    } else {
        "its CRD is not installed"
    };
    match served {
        Served::NoGroup => format!("{about}: {server} does not serve {group_name}: {missing_crd}"),
        Served::At(versions) if versions.is_empty() => {
            format!("{about}: {server} serves {group_name} but not {plural}: {missing_crd}")
        }
        Served::At(versions) => format!(
            "{about}: {server} serves {plural} of {group_name} at {}, not {version}: write an apiVersion it serves",
            versions.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_answer_of_discovery_has_its_message() {
        let about = "virtualservice.networking.istio.io/my-app";
        let server = "the Kubernetes API at https://k:6443/";
        let cases = [
            (
                Served::NoGroup,
                "does not serve the API group networking.istio.io: Istio's CRDs are not installed",
            ),
            (
                Served::At(vec![]),
                "serves the API group networking.istio.io but not virtualservices: Istio's CRDs are not installed",
            ),
            (
                Served::At(vec!["v1".into(), "v1beta1".into()]),
                "serves virtualservices of the API group networking.istio.io at v1, v1beta1, not v1alpha3: write an apiVersion it serves",
            ),
        ];
        for (served, wanted) in cases {
            let text = message(
                about,
                server,
                ISTIO_GROUP,
                "virtualservices",
                "v1alpha3",
                &served,
            );
            assert!(text.starts_with(about), "{text}");
            assert!(text.contains(wanted), "{served:?}: {text}");
        }
        let other = message("x", server, "example.com", "things", "v2", &Served::NoGroup);
        assert!(other.ends_with("its CRD is not installed"), "{other}");
        let core = message("x", server, "", "pods", "v2", &Served::At(vec![]));
        assert!(core.contains("serves the core API but not pods"), "{core}");
    }

    #[test]
    fn discovery_documents_are_read_as_served() {
        let group = json!({"versions": [{"groupVersion": "networking.istio.io/v1", "version": "v1"}, {"version": "v1alpha3"}]});
        assert_eq!(group_versions(&group), ["v1", "v1alpha3"]);
        assert!(group_versions(&json!({})).is_empty());
        let list =
            json!({"resources": [{"name": "virtualservices"}, {"name": "virtualservices/status"}]});
        assert!(lists_resource(&list, "virtualservices"));
        assert!(!lists_resource(&list, "gateways"));
        assert!(!lists_resource(&json!({}), "gateways"));
    }
}
