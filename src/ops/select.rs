//! Which models a command is about: the ids it names, each of which models.yaml must declare
//! (an unknown one gets the closest declared id), or every declared model when it names none.
//! `update`, `outdated` and `show` pick their models through here.

use miette::Result;

use crate::names::ModelId;
use crate::project::Project;

/// The named models (each must be declared), or every declared model when none is named.
pub(crate) fn select_ids(project: &Project, named: &[String]) -> Result<Vec<ModelId>> {
    if named.is_empty() {
        return Ok(project.manifest.models.keys().cloned().collect());
    }
    named
        .iter()
        .map(|id| project.manifest.declared(id))
        .collect()
}
