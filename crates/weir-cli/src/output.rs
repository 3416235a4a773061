//! `-o`: the output formats a command accepts, kubectl's names and its
//! message for one it does not.

/// An output format other than the default (a table or text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// JSON, for scripts.
    Json,
    /// YAML.
    Yaml,
    /// The table with more columns.
    Wide,
    /// `KIND/NAME` per object.
    Name,
}

impl OutputFormat {
    fn name(self) -> &'static str {
        match self {
            OutputFormat::Json => "json",
            OutputFormat::Yaml => "yaml",
            OutputFormat::Wide => "wide",
            OutputFormat::Name => "name",
        }
    }

    /// Reads `-o`: absent is the default (`None`); a format the command
    /// does not offer is kubectl's error, naming those it does.
    pub fn choose(text: Option<&str>, allowed: &[OutputFormat]) -> Result<Option<Self>, String> {
        let Some(text) = text else {
            return Ok(None);
        };
        if let Some(format) = allowed.iter().find(|f| f.name() == text) {
            return Ok(Some(*format));
        }
        let mut names: Vec<&str> = allowed.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        Err(format!(
            "unable to match a printer suitable for the output format {text:?}, allowed formats are: {}",
            names.join(", ")
        ))
    }
}

/// [`OutputFormat::choose`] for a command's `-o`: an unknown format is
/// printed as an error and is the bad-input exit code.
pub fn output_arg(
    text: Option<&str>,
    allowed: &[OutputFormat],
) -> Result<Option<OutputFormat>, u8> {
    OutputFormat::choose(text, allowed).map_err(|e| {
        eprintln!("error: {e}");
        crate::exit::BAD_INPUT
    })
}

/// `-o` of a command whose only other format is JSON: whether JSON was asked for.
pub fn wants_json(text: Option<&str>) -> Result<bool, u8> {
    output_arg(text, &[OutputFormat::Json]).map(|f| f == Some(OutputFormat::Json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_chosen_from_those_offered() {
        use OutputFormat::*;
        assert_eq!(OutputFormat::choose(None, &[Json]), Ok(None));
        assert_eq!(OutputFormat::choose(Some("json"), &[Json]), Ok(Some(Json)));
        assert_eq!(
            OutputFormat::choose(Some("wide"), &[Wide, Yaml, Json]),
            Ok(Some(Wide))
        );
        assert_eq!(
            OutputFormat::choose(Some("yaml"), &[Wide, Yaml, Json]).unwrap(),
            Some(Yaml)
        );
        assert_eq!(
            OutputFormat::choose(Some("xml"), &[Wide, Yaml, Json]).unwrap_err(),
            "unable to match a printer suitable for the output format \"xml\", allowed formats are: json, wide, yaml"
        );
        assert!(OutputFormat::choose(Some("yaml"), &[Json]).is_err());
    }
}
