//! The image map: which local program runs a container image, since the
//! embedded runtime runs pods as processes and has no container engine.
//!
//! It lives beside the manifests as `weir-images.conf` (one `IMAGE = PROGRAM`
//! per line, `#` comments), so the manifests stay exactly as a cluster would
//! take them; `weir up --image IMAGE=PROGRAM` adds entries.

use std::path::Path;
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Severity, SourcePos};
use crate::path::FieldPath;

/// The image map's file name, looked for beside the manifests.
pub const IMAGE_MAP_FILE: &str = "weir-images.conf";

/// One `IMAGE = PROGRAM` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageEntry {
    /// The image reference, as manifests write it (a tag or digest optional).
    pub image: String,
    /// The program: a name looked up beside `weir` and on PATH, or a path.
    pub program: String,
    /// Where the entry was written.
    pub pos: Option<SourcePos>,
}

/// Image → program entries; later entries win.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageMap(Vec<ImageEntry>);

impl ImageMap {
    /// Parses a map file; errors name the file and line.
    pub fn parse(file: &Path, text: &str) -> Result<Self, Vec<Diagnostic>> {
        let file: Arc<Path> = Arc::from(file);
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let pos = SourcePos {
                file: file.clone(),
                line: i + 1,
                column: 1,
            };
            match line.split_once('=') {
                Some((image, program))
                    if !image.trim().is_empty() && !program.trim().is_empty() =>
                {
                    entries.push(ImageEntry {
                        image: image.trim().to_owned(),
                        program: program.trim().to_owned(),
                        pos: Some(pos),
                    });
                }
                _ => errors.push(Diagnostic {
                    severity: Severity::Error,
                    pos,
                    object: None,
                    field: FieldPath::root(),
                    message: format!("expected `IMAGE = PROGRAM`, got {line:?}"),
                    embedded_only: false,
                }),
            }
        }
        if errors.is_empty() {
            Ok(Self(entries))
        } else {
            Err(errors)
        }
    }

    /// Adds an entry from the command line (`IMAGE=PROGRAM`).
    pub fn insert(&mut self, image: &str, program: &str) {
        self.0.push(ImageEntry {
            image: image.to_owned(),
            program: program.to_owned(),
            pos: None,
        });
    }

    /// Adds every entry of `other`, which then wins over this map's.
    pub fn merge(&mut self, other: ImageMap) {
        self.0.extend(other.0);
    }

    /// The program for `image`: an entry for the exact reference, else one
    /// for the image without its tag or digest.
    pub fn program_for(&self, image: &str) -> Option<&str> {
        let exact = self.0.iter().rev().find(|e| e.image == image);
        exact
            .or_else(|| {
                let bare = strip_tag(image);
                self.0.iter().rev().find(|e| e.image == bare)
            })
            .map(|e| e.program.as_str())
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[ImageEntry] {
        &self.0
    }
}

/// `repo/name:tag@sha256:...` → `repo/name` (a registry port is kept).
fn strip_tag(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves_with_or_without_tag() {
        let map = ImageMap::parse(
            Path::new("weir-images.conf"),
            "# comment\ncontainersol/k8s-deployment-strategies = my-app\n\nlocalhost:5000/x:1 = /bin/x # pinned\n",
        )
        .unwrap();
        assert_eq!(
            map.program_for("containersol/k8s-deployment-strategies"),
            Some("my-app")
        );
        assert_eq!(
            map.program_for("containersol/k8s-deployment-strategies:v2@sha256:abc"),
            Some("my-app")
        );
        assert_eq!(map.program_for("localhost:5000/x:1"), Some("/bin/x"));
        assert_eq!(map.program_for("localhost:5000/x:2"), None);
        assert_eq!(map.program_for("nginx"), None);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let errs = ImageMap::parse(Path::new("m.conf"), "a = b\njust-an-image\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "m.conf:2:1: error: expected `IMAGE = PROGRAM`, got \"just-an-image\""
        );
    }
}
