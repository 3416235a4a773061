//! A Rollout's header-route and mirror asks as edits of its
//! VirtualService (`weir_api::route::edit_routes`), carried out on the
//! VirtualService as it is when the edit runs.

use weir_api::istio::Destination;
use weir_api::resource::ObjectRef;
use weir_api::rollout::{RolloutSpec, header_rule_name};
use weir_api::route::RouteEdit;
use weir_rollout::engine::RolloutAction;

use super::action::Action;

/// The edit `action` asks of rule `rule` (of VirtualService `rule.0`);
/// `None` for other actions, or when the canary has no destination in the
/// rule to send requests to.
pub fn route_edit(
    spec: &RolloutSpec,
    rollout: &ObjectRef,
    rule: (&ObjectRef, usize),
    canary: Option<&Destination>,
    action: RolloutAction,
) -> Option<Action> {
    let canary = canary.cloned().unwrap_or_default();
    let edit = match action {
        RolloutAction::SetHeaderRoute(step) => RouteEdit::HeaderRoute {
            name: header_rule_name(&rollout.name),
            before: rule.1,
            matches: step.and_then(|i| {
                spec.steps
                    .get(i)?
                    .set_header_route
                    .as_ref()
                    .map(|h| h.matches.clone())
            }),
            canary,
        },
        RolloutAction::SetMirror(percent) => RouteEdit::Mirror {
            rule: rule.1,
            canary,
            percent,
        },
        _ => return None,
    };
    Some(Action::EditRoute {
        virtual_service: rule.0.clone(),
        edit,
    })
}
