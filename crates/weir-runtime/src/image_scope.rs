//! Which program runs each Deployment's images: the image map applied
//! *with* the Deployment, never one applied with other manifests. An
//! unrelated directory whose `weir-images.conf` maps the walkthrough's
//! image to another program changes nothing for the walkthrough's pods;
//! a Deployment applied again keeps its programs unless the map applied
//! with it says otherwise, and each such change is reported.

use weir_api::images::ImageMap;

/// One image of a Deployment that now runs another program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramChange {
    /// The image.
    pub image: String,
    /// The program it ran.
    pub from: String,
    /// The program it runs now.
    pub to: String,
}

impl ProgramChange {
    /// The event message saying so.
    pub fn message(&self) -> String {
        format!(
            "image {} now runs {} (was {}): the image map applied with this Deployment says so",
            self.image, self.to, self.from
        )
    }
}

/// A Deployment's programs after an apply: for each of its container
/// `images`, the program the map `applied` with it names, else the one it
/// had (`previous`); with the changes from `previous`. Images neither
/// names are left out (the runtime's `--image` flags may still map them).
pub fn programs_after_apply(
    previous: Option<&ImageMap>,
    applied: &ImageMap,
    images: &[&str],
) -> (ImageMap, Vec<ProgramChange>) {
    let mut programs = ImageMap::default();
    let mut changes = Vec::new();
    for image in images {
        let before = previous.and_then(|p| p.program_for(image));
        let Some(program) = applied.program_for(image).or(before) else {
            continue;
        };
        if let Some(from) = before
            && from != program
        {
            changes.push(ProgramChange {
                image: (*image).to_owned(),
                from: from.to_owned(),
                to: program.to_owned(),
            });
        }
        if programs.program_for(image).is_none() {
            programs.insert(image, program);
        }
    }
    (programs, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> ImageMap {
        let mut m = ImageMap::default();
        for (image, program) in entries {
            m.insert(image, program);
        }
        m
    }

    #[test]
    fn programs_come_from_the_map_applied_with_the_deployment() {
        const IMAGE: &str = "containersol/k8s-deployment-strategies";
        struct Case {
            name: &'static str,
            previous: Option<ImageMap>,
            applied: ImageMap,
            want: Option<&'static str>,
            changed: bool,
        }
        let cases = [
            Case {
                name: "first apply with its map",
                previous: None,
                applied: map(&[(IMAGE, "my-app")]),
                want: Some("my-app"),
                changed: false,
            },
            Case {
                name: "applied again without a map: keeps its program",
                previous: Some(map(&[(IMAGE, "my-app")])),
                applied: ImageMap::default(),
                want: Some("my-app"),
                changed: false,
            },
            Case {
                name: "applied again with the same map",
                previous: Some(map(&[(IMAGE, "my-app")])),
                applied: map(&[(IMAGE, "my-app")]),
                want: Some("my-app"),
                changed: false,
            },
            Case {
                name: "its own map says otherwise: changed, and reported",
                previous: Some(map(&[(IMAGE, "my-app")])),
                applied: map(&[(IMAGE, "my-app-next")]),
                want: Some("my-app-next"),
                changed: true,
            },
            Case {
                name: "a map for other images only",
                previous: Some(map(&[(IMAGE, "my-app")])),
                applied: map(&[("nginx", "evil.sh")]),
                want: Some("my-app"),
                changed: false,
            },
            Case {
                name: "no map anywhere",
                previous: None,
                applied: ImageMap::default(),
                want: None,
                changed: false,
            },
        ];
        for case in cases {
            let images = [IMAGE];
            let (programs, changes) =
                programs_after_apply(case.previous.as_ref(), &case.applied, &images);
            assert_eq!(programs.program_for(IMAGE), case.want, "{}", case.name);
            assert_eq!(!changes.is_empty(), case.changed, "{}", case.name);
            // Only the Deployment's own images are kept.
            assert_eq!(programs.program_for("nginx"), None, "{}", case.name);
        }
    }
}
