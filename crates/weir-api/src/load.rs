//! Files and directories of multi-document YAML to typed, validated
//! resources, or every problem found, each with file, line and field.
//! Over 600 lines because the loader's one job is a pipeline — read, split
//! documents, type each kind, validate across objects, collect diagnostics
//! in file order — whose stages share one `Loader` and its positions; the
//! per-kind rules already live in `validate/`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::diagnostic::{Diagnostic, Diagnostics, Severity, SourcePos, file_pos};
use crate::fields;
use crate::images::{IMAGE_MAP_FILE, ImageMap};
use crate::path::FieldPath;
use crate::resource::Schema;
use crate::resource::{Kind, Resource};
use crate::validate::{self, Finding, Findings};
use crate::yaml::{self, Document, Positions};

use crate::object::Object;

/// Everything loaded from a set of paths.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// The objects, in file order.
    pub objects: Vec<Object>,
    /// The image map found beside the manifests (empty when none).
    pub images: ImageMap,
    /// Problems that do not reject the manifests.
    pub warnings: Vec<Diagnostic>,
    /// The texts these were loaded from, under the paths they are reported
    /// with: what a backend in another process (the embedded runtime)
    /// loads again, so its own errors name the user's files and lines.
    pub sources: Vec<Source>,
}

impl Manifests {
    /// The resources alone.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.objects.iter().map(|o| &o.resource)
    }
}

/// The manifests were rejected; nothing may be applied.
#[derive(Clone, Debug)]
pub struct LoadError {
    /// Every problem found, errors first.
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadError {
    /// The errors alone.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// Loads files and directories (their `.yaml`, `.yml` and `.json` files,
/// not recursively, as `kubectl apply -f DIR` does), plus the image map
/// found beside them.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Manifests, LoadError> {
    let mut loader = Loader::default();
    for path in paths {
        loader.load_path(path.as_ref());
    }
    loader.finish()
}

/// One file's text and the path it is reported under.
pub type Source = (PathBuf, String);

/// Reads the files `load_paths` would load (manifests and the image map
/// beside them), without parsing: for sending them to the runtime, which
/// loads them with [`load_sources`] so its errors name the user's files.
pub fn read_sources<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Source>, LoadError> {
    let mut loader = Loader::default();
    let mut sources = Vec::new();
    for path in paths {
        for file in loader.files_of(path.as_ref()) {
            match std::fs::read_to_string(&file) {
                Ok(text) => sources.push((file, text)),
                Err(e) => loader.diagnostics.push(error_at(
                    file_pos(&file),
                    FieldPath::root(),
                    format!("cannot read: {e}"),
                )),
            }
        }
    }
    if loader.diagnostics.has_errors() {
        return Err(LoadError {
            diagnostics: loader.diagnostics.sorted(),
        });
    }
    Ok(sources)
}

/// Loads file texts read by [`read_sources`]; a file named
/// [`IMAGE_MAP_FILE`] is read as the image map.
pub fn load_sources(sources: &[Source]) -> Result<Manifests, LoadError> {
    let mut loader = Loader::default();
    for (path, text) in sources {
        if path.file_name().is_some_and(|n| n == IMAGE_MAP_FILE) {
            loader.load_image_map_text(path, text);
        } else {
            loader.load_text(path, text);
        }
    }
    loader.finish()
}

/// Loads one stream of YAML, reported as coming from `file`.
pub fn load_str(file: &Path, text: &str) -> Result<Manifests, LoadError> {
    let mut loader = Loader::default();
    loader.load_text(file, text);
    loader.finish()
}

#[derive(Default)]
struct Loader {
    objects: Vec<Object>,
    sources: Vec<Source>,
    diagnostics: Diagnostics,
    images: ImageMap,
    image_maps_read: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<NameOnly>,
}

#[derive(Deserialize)]
struct NameOnly {
    name: Option<String>,
}

fn error_at(pos: SourcePos, field: FieldPath, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        pos,
        object: None,
        field,
        message: message.into(),
        embedded_only: false,
    }
}

impl Loader {
    /// The files a path stands for: a file and the image map beside it, or a
    /// directory's manifests and its image map. Problems are recorded.
    fn files_of(&mut self, path: &Path) -> Vec<PathBuf> {
        let (mut files, dir) = if path.is_dir() {
            let entries = match std::fs::read_dir(path) {
                Ok(entries) => entries,
                Err(e) => {
                    self.diagnostics.push(error_at(
                        file_pos(path),
                        FieldPath::root(),
                        format!("cannot read directory: {e}"),
                    ));
                    return Vec::new();
                }
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && matches!(
                            p.extension().and_then(|e| e.to_str()),
                            Some("yaml" | "yml" | "json")
                        )
                })
                .collect();
            files.sort();
            if files.is_empty() {
                self.diagnostics.push(error_at(
                    file_pos(path),
                    FieldPath::root(),
                    "no .yaml, .yml or .json files in this directory",
                ));
            }
            (files, path.to_owned())
        } else if path.exists() {
            (
                vec![path.to_owned()],
                path.parent().unwrap_or(Path::new(".")).to_owned(),
            )
        } else {
            self.diagnostics.push(error_at(
                file_pos(path),
                FieldPath::root(),
                format!("the path {:?} does not exist", path.display().to_string()),
            ));
            return Vec::new();
        };
        let map = dir.join(IMAGE_MAP_FILE);
        if map.is_file() && !self.image_maps_read.contains(&map) {
            self.image_maps_read.push(map.clone());
            files.push(map);
        }
        files
    }

    fn load_path(&mut self, path: &Path) {
        for file in self.files_of(path) {
            if file.file_name().is_some_and(|n| n == IMAGE_MAP_FILE) {
                self.load_image_map(&file);
            } else {
                self.load_file(&file);
            }
        }
    }

    fn load_image_map(&mut self, path: &Path) {
        match std::fs::read_to_string(path) {
            Ok(text) => self.load_image_map_text(path, &text),
            Err(e) => self.diagnostics.push(error_at(
                file_pos(path),
                FieldPath::root(),
                format!("cannot read: {e}"),
            )),
        }
    }

    fn load_file(&mut self, path: &Path) {
        match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => self.load_text(path, &text),
                Err(e) => self.diagnostics.push(error_at(
                    file_pos(path),
                    FieldPath::root(),
                    format!("not UTF-8 text: {e}"),
                )),
            },
            Err(e) => self.diagnostics.push(error_at(
                file_pos(path),
                FieldPath::root(),
                format!("cannot read: {e}"),
            )),
        }
    }

    fn load_image_map_text(&mut self, path: &Path, text: &str) {
        self.sources.push((path.to_owned(), text.to_owned()));
        match ImageMap::parse(path, text) {
            Ok(map) => self.images.merge(map),
            Err(errors) => errors.into_iter().for_each(|e| self.diagnostics.push(e)),
        }
    }

    fn load_text(&mut self, path: &Path, text: &str) {
        self.sources.push((path.to_owned(), text.to_owned()));
        let file: Arc<Path> = Arc::from(path);
        let documents = yaml::split_documents(text);
        if documents.is_empty() {
            self.diagnostics.push(Diagnostic {
                severity: Severity::Warning,
                pos: file_pos(path),
                object: None,
                field: FieldPath::root(),
                message: "no objects in this file".to_owned(),
                embedded_only: false,
            });
        }
        // Room for every document at once: growing a vector of a thousand
        // objects step by step holds the old and the new copy together.
        self.objects.reserve(documents.len());
        for doc in documents {
            self.load_document(&file, doc);
        }
    }

    /// Warnings found before the document is typed: a key that repeats
    /// (kubectl keeps the later value) and an Ingress of a removed API.
    fn early_warnings(
        &mut self,
        doc_pos: &impl Fn(usize, usize) -> SourcePos,
        at: &impl Fn(&FieldPath) -> SourcePos,
        positions: &Positions,
        schema: Schema,
        api_version: &str,
        name: &str,
    ) {
        for (field, line, column) in positions.repeated_keys() {
            let first = doc_pos(positions.locate(&field).0, 1).line;
            self.diagnostics.push(Diagnostic {
                severity: Severity::Warning,
                pos: doc_pos(line, column),
                object: Some(format!("{}/{name}", schema.kind().qualified())),
                message: format!(
                    "this key repeats the one at line {first}: the later value is used, as kubectl reads YAML (a strict YAML parser refuses the file)"
                ),
                field,
                embedded_only: false,
            });
        }
        if schema == Schema::LegacyIngress {
            let field = FieldPath::root().key("apiVersion");
            self.diagnostics.push(Diagnostic {
                severity: Severity::Warning,
                pos: at(&field),
                object: Some(format!("{}/{name}", schema.kind().qualified())),
                message: format!(
                    "{api_version} Ingress was removed in Kubernetes 1.22; weir reads it as networking.k8s.io/v1 (serviceName/servicePort become service.name/service.port, a path without pathType is ImplementationSpecific)"
                ),
                field,
                embedded_only: false,
            });
        }
    }

    fn load_document(&mut self, file: &Arc<Path>, doc: Document<'_>) {
        let doc_pos = |line: usize, column: usize| SourcePos {
            file: file.clone(),
            line: doc.first_line + line - 1,
            column,
        };
        let positions = match Positions::of(doc.text) {
            Ok(p) => p,
            Err(e) => {
                self.diagnostics.push(error_at(
                    doc_pos(e.line, e.column),
                    FieldPath::root(),
                    format!("YAML syntax error: {}", e.message),
                ));
                return;
            }
        };
        let at = |field: &FieldPath| {
            let (line, column) = positions.locate(field);
            doc_pos(line, column)
        };

        let meta = match yaml::deserialize::<TypeMeta>(doc.text) {
            Ok(meta) => meta.value,
            Err(e) => {
                self.diagnostics.push(error_at(
                    at(&e.field),
                    e.field,
                    format!("not a Kubernetes object: {}", e.message),
                ));
                return;
            }
        };
        let (Some(api_version), Some(kind)) = (meta.api_version, meta.kind) else {
            self.diagnostics.push(error_at(
                doc_pos(1, 1),
                FieldPath::root(),
                "apiVersion and kind are required (error validating data: apiVersion not set, kind not set)",
            ));
            return;
        };
        let name = meta.metadata.and_then(|m| m.name).unwrap_or_default();
        let Some(schema) = Schema::for_manifest(&api_version, &kind) else {
            let field = FieldPath::root().key("kind");
            self.diagnostics.push(error_at(
                at(&field),
                field,
                unknown_kind_message(&api_version, &kind),
            ));
            return;
        };
        self.early_warnings(&doc_pos, &at, &positions, schema, &api_version, &name);
        let parsed = schema.read(doc.text);
        let (resource, ignored) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                let (line, column) = e.at.unwrap_or_else(|| positions.locate(&e.field));
                let mut diagnostic = error_at(doc_pos(line, column), e.field, e.message);
                diagnostic.object = Some(format!("{}/{name}", schema.kind().qualified()));
                self.diagnostics.push(diagnostic);
                return;
            }
        };
        let document = match serde_saphyr::from_str_with_options::<serde_json::Value>(
            doc.text,
            yaml::reading_options(),
        ) {
            Ok(document) => document,
            Err(e) => {
                self.diagnostics.push(error_at(
                    doc_pos(1, 1),
                    FieldPath::root(),
                    format!("cannot be read as JSON: {e}"),
                ));
                return;
            }
        };
        let too_big = validate::limits::check(&document);
        if !too_big.is_empty() {
            for (field, message) in too_big {
                let mut diagnostic = error_at(at(&field), field, message);
                diagnostic.object = Some(format!("{}/{name}", schema.kind().qualified()));
                self.diagnostics.push(diagnostic);
            }
            return;
        }
        let document = match serde_json::value::to_raw_value(&document) {
            Ok(document) => document,
            Err(e) => {
                self.diagnostics.push(error_at(
                    doc_pos(1, 1),
                    FieldPath::root(),
                    format!("cannot be read as JSON: {e}"),
                ));
                return;
            }
        };
        let object = Object {
            resource,
            pos: doc_pos(1, 1),
            document,
            positions,
        };
        let mut findings = Findings(fields::check(schema.fields(), &object.positions, &ignored));
        if schema == Schema::DestinationRule {
            validate::istio::empty_traffic_policies(&object.positions.fields(), &mut findings);
        }
        check_metadata(&object.resource, &mut findings);
        object.resource.check(&mut findings);
        for Finding {
            severity,
            field,
            message,
            embedded_only,
        } in findings.0
        {
            self.diagnostics.push(Diagnostic {
                embedded_only,
                ..object.diagnostic(severity, field, message)
            });
        }
        self.objects.push(object);
    }

    fn finish(mut self) -> Result<Manifests, LoadError> {
        // The first object of each (kind, namespace, name), by hash: a
        // thousand-object file is checked in one pass.
        let mut firsts: std::collections::HashMap<(Kind, &str, &str), usize> =
            std::collections::HashMap::new();
        for (i, object) in self.objects.iter().enumerate() {
            let r = &object.resource;
            let first = *firsts
                .entry((r.kind(), r.namespace(), r.name()))
                .or_insert(i);
            if first != i {
                let first = &self.objects[first];
                self.diagnostics.push(object.diagnostic(
                    Severity::Error,
                    FieldPath::root().key("metadata").key("name"),
                    format!("defined twice in these manifests (first at {})", first.pos),
                ));
            }
        }
        for d in validate::analyze::analyze(&self.objects, &self.images) {
            self.diagnostics.push(d);
        }
        if self.diagnostics.has_errors() {
            return Err(LoadError {
                diagnostics: self.diagnostics.sorted(),
            });
        }
        Ok(Manifests {
            objects: self.objects,
            images: self.images,
            warnings: self.diagnostics.sorted(),
            sources: self.sources,
        })
    }
}

fn unknown_kind_message(api_version: &str, kind: &str) -> String {
    let hint = match kind {
        "Deployment" => {
            "; Deployments are served as apps/v1 (extensions/v1beta1 and apps/v1beta* were removed in Kubernetes 1.16)"
        }
        "HorizontalPodAutoscaler" => {
            "; HPAs are served as autoscaling/v1 and autoscaling/v2 (v2beta1/v2beta2 were removed in Kubernetes 1.25/1.26)"
        }
        "Gateway" | "VirtualService" | "DestinationRule" | "WorkloadEntry" => {
            "; Istio serves networking.istio.io/v1alpha3, v1beta1 and v1"
        }
        "Ingress" => {
            "; Ingress is served as networking.k8s.io/v1 (weir also reads the removed extensions/v1beta1 and networking.k8s.io/v1beta1)"
        }
        "Rollout" => {
            "; weir's Rollout is weir.dev/v1alpha1 (Argo Rollouts' argoproj.io Rollout is another kind)"
        }
        _ => {
            "; weir loads v1 Service, apps/v1 Deployment, autoscaling/v1 and v2 HorizontalPodAutoscaler, networking.k8s.io/v1 Ingress, networking.istio.io Gateway, VirtualService, DestinationRule and WorkloadEntry, and weir.dev/v1alpha1 Rollout"
        }
    };
    format!("no matches for kind {kind:?} in version {api_version:?}{hint}")
}

fn check_metadata(resource: &Resource, out: &mut Findings) {
    let meta = resource.metadata();
    let at = FieldPath::root().key("metadata");
    match meta.name.as_deref() {
        None | Some("") => out.error(&at.key("name"), "Required value: name is required"),
        Some(name) if !is_dns1123_subdomain(name) => out.error(
            &at.key("name"),
            format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ),
        Some(_) => {}
    }
    if let Some(ns) = &meta.namespace
        && !is_dns1123_subdomain(ns)
    {
        out.error(
            &at.key("namespace"),
            format!("Invalid value: {ns:?}: not a valid namespace name"),
        );
    }
    if meta.generate_name.is_some() {
        out.error(
            &at.key("generateName"),
            "generateName is not implemented by weir; name the object",
        );
    }
}

fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
