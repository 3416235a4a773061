//! The Rollout status is CRD-shaped: its JSON schema is generated from the
//! types and committed (`rollout-status.schema.json`, ready for a CRD's
//! `openAPIV3Schema`); every field has a default; times are RFC 3339; and
//! what the engine writes is what the schema describes. After a deliberate
//! change of the status, `WEIR_BLESS=1 cargo test -p weir-rollout --test
//! status_schema` rewrites the file.

use std::path::Path;
use std::time::{Duration, SystemTime};

use weir_api::rollout::{AnalysisSpec, RolloutSpec, RolloutStep, SuccessRateGoal};
use weir_rollout::engine::{Observation, Prior, RolloutStatus, schema, step};

#[test]
fn the_committed_schema_is_the_one_the_types_generate() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rollout-status.schema.json");
    let generated = serde_json::to_string_pretty(&schema()).unwrap() + "\n";
    if std::env::var_os("WEIR_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not what the types generate; run with WEIR_BLESS=1 after a deliberate change",
        path.display()
    );
}

#[test]
fn every_field_has_a_default_and_the_engine_writes_what_the_schema_describes() {
    let empty: RolloutStatus = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, RolloutStatus::default());
    let spec = RolloutSpec {
        virtual_service: "my-app".into(),
        stable: "v1".into(),
        canary: "v2".into(),
        steps: vec![RolloutStep {
            set_weight: Some(10),
            ..RolloutStep::default()
        }],
        analysis: Some(AnalysisSpec {
            success_rate: Some(SuccessRateGoal {
                min: Some(99.0),
                max_drop_from_stable: None,
            }),
            ..AnalysisSpec::default()
        }),
        ..RolloutSpec::default()
    };
    let obs = Observation {
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        served_weight: 0,
        window: None,
        command: None,
        capacity: None,
        canary_revision: Some("abc"),
        hooks: &[],
        header_route: None,
        mirror: 0,
        generation: Some(3),
    };
    let (status, _) = step(&spec, Prior::New, &obs);
    let written = serde_json::to_value(&status).unwrap();
    let schema = schema();
    let properties = schema["properties"].as_object().unwrap();
    for key in written.as_object().unwrap().keys() {
        assert!(properties.contains_key(key), "{key} is not in the schema");
    }
    assert_eq!(written["stepStarted"], "2027-01-15T08:00:00.000Z");
    assert_eq!(written["observedGeneration"], 3);
    assert_eq!(properties["stepStarted"]["type"], "string");
    let back: RolloutStatus = serde_json::from_value(written).unwrap();
    assert_eq!(back, status);
}
