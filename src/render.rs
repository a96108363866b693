//! Model -> unit files. Pure: no I/O. Templates are embedded at compile
//! time, run in strict mode (an undefined variable is a bug, not an empty
//! string), and handlebars' HTML escaping is off: every value was already
//! escaped for systemd by `escape.rs`.

use handlebars::Handlebars;

use crate::error::Error;
use crate::model::{JobUnits, Model};

/// A rendered file: its name inside the output folder and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    pub name: String,
    pub job: String,
    pub contents: String,
}

const SERVICE: (&str, &str) = ("service.hbs", include_str!("../templates/service.hbs"));
const TIMER: (&str, &str) = ("timer.hbs", include_str!("../templates/timer.hbs"));

/// fleet (go-systemd's unit parser) rejects any line of this many bytes or more.
pub const FLEET_LINE_MAX: usize = 2048;

pub struct Renderer {
    hb: Handlebars<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    pub fn new() -> Self {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        for (name, text) in [SERVICE, TIMER] {
            hb.register_template_string(name, text)
                .unwrap_or_else(|e| panic!("embedded template {name} does not parse: {e}"));
        }
        Renderer { hb }
    }

    /// Every job's units, sorted by job name, each service before its timer.
    pub fn render(&self, model: &Model) -> Result<Vec<UnitFile>, Error> {
        let mut files = Vec::with_capacity(model.jobs.len() * 2);
        for job in &model.jobs {
            for (template, suffix) in [(SERVICE.0, "service"), (TIMER.0, "timer")] {
                files.push(UnitFile {
                    name: format!("{}.{suffix}", job.name),
                    job: job.name.clone(),
                    contents: self.one(template, job)?,
                });
            }
        }
        Ok(files)
    }

    fn one(&self, template: &'static str, job: &JobUnits) -> Result<String, Error> {
        self.hb.render(template, job).map_err(|e| Error::Template {
            template,
            message: e.to_string(),
        })
    }
}

/// The first line of `contents` that fleet would refuse, as (line number,
/// length). fleet checks physical lines, and again after joining
/// continuations, so logical lines count.
pub fn overlong_fleet_line(contents: &str) -> Option<(usize, usize)> {
    let mut logical = 0;
    let mut first = None;
    for (i, line) in contents.lines().enumerate() {
        logical += line.len();
        first.get_or_insert(i + 1);
        if logical >= FLEET_LINE_MAX {
            return first.map(|n| (n, logical));
        }
        if line.ends_with('\\') {
            continue;
        }
        logical = 0;
        first = None;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_line_limit_counts_continued_lines() {
        let ok = format!("[Unit]\nDescription={}\n", "x".repeat(2000));
        assert_eq!(overlong_fleet_line(&ok), None);
        let long = format!("[Unit]\nDescription={}\n", "x".repeat(2040));
        assert_eq!(overlong_fleet_line(&long), Some((2, 2052)));
        // 13 + 1102 + 1000 bytes: each physical line is short, the logical one is not.
        let continued = format!(
            "ExecStart=a \\\n{} \\\n{}\n",
            "y".repeat(1100),
            "z".repeat(1000)
        );
        assert_eq!(overlong_fleet_line(&continued), Some((1, 2115)));
    }
}
