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

use std::path::Path;

use error::Error;
use render::{Renderer, UnitFile};
use resolve::Values;
use source::{KeyPath, Source};

/// Reads, validates and renders a spec: everything but writing. Every
/// problem is reported at once, and nothing is touched on disk.
pub fn render_spec(spec_path: &Path, values: &Values) -> Result<Vec<UnitFile>, Error> {
    let src = Source::read(spec_path)?;
    let decoded = src.decode::<spec::Spec>();
    let mut problems = decoded.problems.clone();
    // Validate whatever could be decoded, so that one wrong type does not
    // hide, say, a name collision elsewhere in the spec.
    let model = match &decoded.value {
        Some(spec) => match validate::validate(spec, &src, values) {
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
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    Ok(files)
}
