//! unitgen: a YAML spec of backup jobs becomes fleet/systemd `.service` +
//! `.timer` pairs.
//!
//! Data flows one way: read ([`source`]), decode ([`spec`]), resolve
//! ([`resolve`]), validate ([`validate`]), render ([`render`]), write
//! ([`output`]). Only the ends touch I/O.

pub mod app;
pub mod cli;
pub mod error;
pub mod escape;
pub mod etcd;
pub mod job;
pub mod model;
pub mod output;
pub mod render;
pub mod resolve;
pub mod runner;
pub mod schedule;
pub mod secret;
pub mod source;
pub mod spec;
pub mod timespan;
pub mod validate;
pub mod watch;

use std::path::Path;

use error::Error;
use render::{Renderer, UnitFile};
use resolve::Values;
use source::{KeyPath, Source};

/// A spec read and decoded once, rendered as often as values change.
pub struct Loaded {
    pub src: Source,
    decoded: source::Decoded<spec::Spec>,
}

/// Reads and decodes a spec. Decoding problems are kept and reported by
/// [`Loaded::render`], together with everything validation finds.
pub fn load(spec_path: &Path) -> Result<Loaded, Error> {
    let src = Source::read(spec_path)?;
    let decoded = src.decode::<spec::Spec>();
    Ok(Loaded { src, decoded })
}

/// Reads, validates and renders a spec with `values`: everything but
/// writing. Every problem is reported at once, and nothing is touched.
pub fn render_spec(spec_path: &Path, values: &Values) -> Result<Vec<UnitFile>, Error> {
    load(spec_path)?.render(values)
}

impl Loaded {
    /// The spec, as far as it could be decoded.
    pub fn spec(&self) -> Option<&spec::Spec> {
        self.decoded.value.as_ref()
    }

    /// Validates and renders with `values`; nothing is touched on disk.
    pub fn render(&self, values: &Values) -> Result<Vec<UnitFile>, Error> {
        let src = &self.src;
        let decoded = &self.decoded;
        let mut problems = decoded.problems.clone();
        // Validate whatever could be decoded, so that one wrong type does not
        // hide, say, a name collision elsewhere in the spec.
        let model = match &decoded.value {
            Some(spec) => match validate::validate(spec, src, values) {
                Ok(model) => Some(model),
                Err(found) => {
                    problems.extend(found.into_iter().filter(|p| !decoded.affected(&p.path)));
                    None
                }
            },
            None => None,
        };
        let model = match model {
            Some(model) if problems.is_empty() => model,
            _ => {
                // In file order, as an editor lists them.
                problems.sort_by_key(|p| p.location.map_or((usize::MAX, 0), |l| (l.line, l.col)));
                return Err(Error::Invalid(problems));
            }
        };
        let files = Renderer::new().render(&model)?;
        fleet_line_check(src, &model, &files)?;
        Ok(files)
    }
}

fn fleet_line_check(src: &Source, model: &model::Model, files: &[UnitFile]) -> Result<(), Error> {
    let fleet_jobs: std::collections::HashSet<&str> = model
        .jobs
        .iter()
        .filter(|j| j.fleet)
        .map(|j| j.name.as_str())
        .collect();
    let problems: Vec<_> = files
        .iter()
        .filter(|f| fleet_jobs.contains(f.job.as_str()))
        .filter_map(|f| {
            let (line, len) = render::overlong_fleet_line(&f.contents)?;
            Some(src.at_key(
                &KeyPath::root().key("jobs").key(&f.job),
                format!(
                    "line {line} of {} would be {len} bytes, but fleet rejects lines of {} bytes or more; \
                     shorten the values on it, or use `target: systemd`",
                    f.name,
                    render::FLEET_LINE_MAX
                ),
            ))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(problems))
    }
}
