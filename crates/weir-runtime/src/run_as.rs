//! Who a container runs as, from its pod's and its own `securityContext`
//! as the kubelet reads them: `runAsUser` and `runAsGroup` (the
//! container's over the pod's) are honoured when weir can switch to them,
//! and `runAsNonRoot` refuses a container that would run as uid 0 — never
//! fail-open. A pure decision over the spec and the runtime's own uid.

use weir_api::k8s_openapi::api::core::v1::{Container, PodSpec};

/// The uid the runtime runs as: what a container runs as unless its
/// `securityContext` says otherwise.
pub fn runtime_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The ids a container's process is switched to (`None`: kept as the
/// runtime's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunAs {
    /// The uid.
    pub user: Option<u32>,
    /// The primary gid.
    pub group: Option<u32>,
}

/// Who `container` of `pod` runs as under a runtime of uid `runtime_uid`,
/// or why it cannot be started: the kubelet's `CreateContainerConfigError`
/// message.
pub fn run_as(
    pod: Option<&PodSpec>,
    container: &Container,
    runtime_uid: u32,
) -> Result<RunAs, String> {
    let pod_ctx = pod.and_then(|p| p.security_context.as_ref());
    let own = container.security_context.as_ref();
    let user = own
        .and_then(|c| c.run_as_user)
        .or_else(|| pod_ctx.and_then(|p| p.run_as_user));
    let group = own
        .and_then(|c| c.run_as_group)
        .or_else(|| pod_ctx.and_then(|p| p.run_as_group));
    let non_root = own
        .and_then(|c| c.run_as_non_root)
        .or_else(|| pod_ctx.and_then(|p| p.run_as_non_root))
        .unwrap_or(false);
    let id =
        |v: i64, what: &str| u32::try_from(v).map_err(|_| format!("{what} {v} is not a valid id"));
    let user = user.map(|u| id(u, "runAsUser")).transpose()?;
    let group = group.map(|g| id(g, "runAsGroup")).transpose()?;
    let effective = user.unwrap_or(runtime_uid);
    if non_root && effective == 0 {
        return Err(format!(
            "container has runAsNonRoot and image will run as root (container: {})",
            container.name
        ));
    }
    let switch_user = user.filter(|&u| u != runtime_uid);
    if runtime_uid != 0 && (switch_user.is_some() || group.is_some()) {
        return Err(format!(
            "runAsUser/runAsGroup need weir up to run as root to switch ids (it runs as uid {runtime_uid}; container: {})",
            container.name
        ));
    }
    Ok(RunAs {
        user: switch_user,
        group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_api::k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};

    fn spec(
        pod: Option<(i64, bool)>,
        own: Option<(Option<i64>, Option<i64>, Option<bool>)>,
    ) -> (PodSpec, Container) {
        let pod_spec = PodSpec {
            security_context: pod.map(|(u, nr)| PodSecurityContext {
                run_as_user: Some(u),
                run_as_non_root: Some(nr),
                ..Default::default()
            }),
            ..Default::default()
        };
        let container = Container {
            name: "app".into(),
            security_context: own.map(|(u, g, nr)| SecurityContext {
                run_as_user: u,
                run_as_group: g,
                run_as_non_root: nr,
                ..Default::default()
            }),
            ..Default::default()
        };
        (pod_spec, container)
    }

    #[test]
    fn ids_as_the_kubelet_takes_them_and_never_fail_open() {
        type Own = Option<(Option<i64>, Option<i64>, Option<bool>)>;
        type Case = (&'static str, Option<(i64, bool)>, Own, u32, Option<RunAs>);
        let runs = |user, group| Some(RunAs { user, group });
        // (case, the pod's (user, runAsNonRoot), the container's, the
        // runtime's uid, who it runs as — None: refused)
        let cases: [Case; 9] = [
            ("nothing set, as root", None, None, 0, runs(None, None)),
            ("nothing set, as a user", None, None, 1000, runs(None, None)),
            (
                "the pod's user",
                Some((1000, false)),
                None,
                0,
                runs(Some(1000), None),
            ),
            (
                "the container's over the pod's",
                Some((1000, false)),
                Some((Some(2000), Some(3000), None)),
                0,
                runs(Some(2000), Some(3000)),
            ),
            (
                "runAsNonRoot as root, no user: refused",
                None,
                Some((None, None, Some(true))),
                0,
                None,
            ),
            (
                "runAsNonRoot from the pod, as root: refused",
                Some((0, true)),
                None,
                0,
                None,
            ),
            (
                "runAsNonRoot with a user, as root: switched",
                None,
                Some((Some(65534), None, Some(true))),
                0,
                runs(Some(65534), None),
            ),
            (
                "runAsNonRoot as a user",
                None,
                Some((None, None, Some(true))),
                1000,
                runs(None, None),
            ),
            (
                "another user, not root: refused, never ignored",
                None,
                Some((Some(2000), None, None)),
                1000,
                None,
            ),
        ];
        for (name, pod, own, runtime_uid, want) in cases {
            let (pod_spec, container) = spec(pod, own);
            let got = run_as(Some(&pod_spec), &container, runtime_uid).ok();
            assert_eq!(got, want, "{name}");
        }
        // The same user as the runtime's needs no switch.
        let (pod_spec, container) = spec(None, Some((Some(1000), None, None)));
        assert_eq!(
            run_as(Some(&pod_spec), &container, 1000),
            Ok(RunAs::default())
        );
    }
}
