//! A template from Git synced into Catalyst Center (`../shared/contracts/catalyst-center.md`,
//! "Template authoring"): the file at the pinned commit becomes a committed version of the
//! template named after its path, in the project named after its repository, and the version's
//! comment names the commit. Idempotent: a version whose comment names the commit is reused,
//! so a sync retried after a worker died mid-way commits no second version.

use crate::DownstreamActivities;
use crate::catalyst::TemplateDraft;
use crate::http::DownstreamError;
use changeflow_workflows::github::{ResolvedSource, SyncTemplate, SyncedTemplate};

/// The version comment naming a source's commit (what a later sync looks for).
pub fn version_comment(source: &ResolvedSource) -> String {
    let review = source
        .pull_request
        .as_ref()
        .map(|pr| format!(" (pull request #{})", pr.number))
        .unwrap_or_default();
    format!(
        "git {}@{} {}{review}",
        source.repository, source.commit_sha, source.path
    )
}

fn language_of(path: &str) -> &'static str {
    if path.ends_with(".j2") {
        "JINJA"
    } else {
        "VELOCITY"
    }
}

impl DownstreamActivities {
    pub(crate) async fn sync(
        &self,
        request: SyncTemplate,
    ) -> Result<SyncedTemplate, DownstreamError> {
        let source = &request.source;
        let comment = version_comment(source);
        let marker = format!("@{} ", source.commit_sha);
        let project_name = source.repository.as_str();
        let template_name = source.path.as_str();
        let project = match self.catalyst.project(project_name).await? {
            Some(project) => project,
            None => {
                self.catalyst
                    .create_project(
                        project_name,
                        &format!("Templates synced from Git, {}", source.repository),
                    )
                    .await?;
                self.catalyst.project(project_name).await?.ok_or_else(|| {
                    DownstreamError::protocol(
                        crate::catalyst::SYSTEM,
                        format!("project {project_name} was created but cannot be found"),
                    )
                })?
            }
        };
        let existing = project
            .templates
            .iter()
            .find(|(name, _)| name == template_name)
            .map(|(_, id)| id.clone());
        if let Some(template_id) = &existing
            && let Some(version) = self
                .catalyst
                .template_versions(template_id)
                .await?
                .into_iter()
                .find(|v| v.comment.contains(&marker))
        {
            return Ok(SyncedTemplate {
                template_id: template_id.clone(),
                version_id: version.id,
                version: version.version,
                comment: version.comment,
                reused: true,
            });
        }
        let draft = TemplateDraft {
            name: template_name.to_string(),
            language: language_of(template_name).to_string(),
            content: self
                .github
                .source_text(&request.requested_by, source)
                .await?,
            description: format!(
                "{} {} (synced from Git by changeflow)",
                source.repository, source.path
            ),
        };
        let template_id = match existing {
            Some(id) => {
                self.catalyst
                    .update_template(&id, &project.id, project_name, &draft)
                    .await?;
                id
            }
            None => {
                self.catalyst
                    .create_template(&project.id, project_name, &draft)
                    .await?
            }
        };
        self.catalyst
            .commit_template(&template_id, &comment)
            .await?;
        let version = self
            .catalyst
            .template_versions(&template_id)
            .await?
            .into_iter()
            .rfind(|v| v.comment.contains(&marker))
            .ok_or_else(|| {
                DownstreamError::protocol(
                    crate::catalyst::SYSTEM,
                    format!("template {template_id} has no version named '{comment}' after committing it"),
                )
            })?;
        Ok(SyncedTemplate {
            template_id,
            version_id: version.id,
            version: version.version,
            comment: version.comment,
            reused: false,
        })
    }
}
