//! Spec -> unit files. Data flows one way:
//!
//! 1. read and decode (`source.rs`, into the serde mirror `spec.rs`),
//!    collecting every problem with its location;
//! 2. collect every `{ etcd: KEY }` reference (`values.rs`), which the edge
//!    fetches once;
//! 3. validate into a typed model (`validate/`, `model.rs`), each value
//!    escaped for its systemd context on the way in (`escape.rs`);
//! 4. render the model (`render.rs`), then check fleet's line limit;
//! 5. write (`output.rs`): atomic, stale units removed, `--check`'s diff.
//!
//! Only the ends touch I/O: steps 2 to 4 are pure (validation reads the
//! clock once, for one-off schedules that have passed).

pub mod escape;
pub mod model;
pub mod output;
pub mod overview;
pub mod render;
pub mod source;
pub mod spec;
pub mod validate;
pub mod values;

use std::path::Path;

use crate::diag::Problem;
use crate::error::Error;
use overview::JobOverview;
use render::{Renderer, UnitFile};
use source::{Decoded, Source};
use values::{Refs, Values};

/// A spec read and decoded once, rendered as often as values change.
pub struct Loaded {
    pub src: Source,
    decoded: Decoded<spec::Spec>,
    refs: Refs,
}

/// Reads and decodes a spec. Decoding problems are kept and reported by
/// [`Loaded::render`], together with everything validation finds.
pub fn load(spec_path: &Path) -> Result<Loaded, Error> {
    Ok(Loaded::new(Source::read(spec_path)?))
}

impl Loaded {
    pub fn new(src: Source) -> Loaded {
        let decoded = src.decode();
        let refs = decoded
            .value
            .as_ref()
            .map(Refs::collect)
            .unwrap_or_default();
        Loaded { src, decoded, refs }
    }

    /// The spec, as far as it could be decoded.
    pub fn spec(&self) -> Option<&spec::Spec> {
        self.decoded.value.as_ref()
    }

    /// Every etcd key the spec references, and what each is needed for.
    pub fn refs(&self) -> &Refs {
        &self.refs
    }

    /// Problems with the endpoints `unitgen` would read values from.
    pub fn endpoint_problems(&self) -> Vec<Problem> {
        match self.spec() {
            Some(spec) => validate::etcd::endpoint_problems(spec, &self.src),
            None => Vec::new(),
        }
    }

    /// Validates and renders with `values`; nothing is touched on disk.
    /// Every problem is reported at once, in file order.
    pub fn render(&self, values: &Values) -> Result<Vec<UnitFile>, Error> {
        // Validate whatever could be decoded, so that one wrong type does not
        // hide, say, a name collision elsewhere in the spec.
        let (model, found) = match &self.decoded.value {
            Some(spec) => match validate::validate(spec, &self.src, values) {
                Ok(model) => (Some(model), Vec::new()),
                Err(found) => (None, found),
            },
            None => (None, Vec::new()),
        };
        let problems = self.with_decoding(found);
        match model {
            Some(model) if problems.is_empty() => self.files(&model),
            _ => Err(Error::Invalid(problems)),
        }
    }

    /// Decoding's problems and validation's (`found`), in file order; one
    /// that follows from a key decoding had to drop is left out.
    fn with_decoding(&self, found: Vec<Problem>) -> Vec<Problem> {
        let decoded = &self.decoded;
        let mut problems = decoded.problems.clone();
        problems.extend(found.into_iter().filter(|p| !decoded.affected(&p.path)));
        sorted(problems)
    }

    /// The unit files of a valid model; fleet's line limits are checked on
    /// the rendered text.
    fn files(&self, model: &model::Model) -> Result<Vec<UnitFile>, Error> {
        let files = Renderer::new().render(model)?;
        let long = validate::fleet::line_problems(&self.src, model, &files);
        if !long.is_empty() {
            return Err(Error::Invalid(sorted(long)));
        }
        Ok(files)
    }
}

impl Loaded {
    /// Validates and renders what `values` allow, for commands that need
    /// no etcd (`list`, `validate --offline`): with [`Values::unknown`],
    /// every rule that needs no value is applied, each job that needs no
    /// value is rendered, and the others are listed without files. Every
    /// problem is an error, as with [`Loaded::render`].
    pub fn render_known(&self, values: &Values) -> Result<Vec<JobOverview>, Error> {
        let Some(spec) = &self.decoded.value else {
            return Err(Error::Invalid(self.with_decoding(Vec::new())));
        };
        let mut partial = validate::validate_partial(spec, &self.src, values);
        let problems = self.with_decoding(std::mem::take(&mut partial.problems));
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let model = model::Model { jobs: partial.jobs };
        let files = self.files(&model)?;
        let mut by_job: std::collections::BTreeMap<String, Vec<UnitFile>> = Default::default();
        for file in files {
            by_job.entry(file.job.clone()).or_default().push(file);
        }
        let mut jobs = Vec::with_capacity(spec.jobs.len());
        for (name, job) in &spec.jobs {
            let Some(parts) = partial.parts.remove(name) else {
                return Err(Error::Invalid(vec![self.src.at_key(
                    &crate::diag::KeyPath::root().key("jobs").key(name),
                    crate::diag::Kind::Invalid,
                    "internal error: validation said nothing of this job; this is a bug in \
                     unitgen, please report it",
                )]));
            };
            jobs.push(JobOverview::new(name, job, &parts, by_job.remove(name)));
        }
        Ok(jobs)
    }
}

/// In file order, as an editor lists them; problems without a location last.
fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by_key(|p| p.location.map_or((usize::MAX, 0), |l| (l.line, l.col)));
    problems
}
