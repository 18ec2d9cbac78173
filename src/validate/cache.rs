//! `spec.cache`: the repository follows the one repository grammar of
//! `crate::reference`, and every per-platform cache name made from it must
//! be a valid repository and tag too.

use super::Report;
use crate::api::MultiArchImageSpec;
use crate::platform::Platform;
use crate::reference;
use crate::render::cache::{buildah_cache_repository, buildkit_cache_ref};

pub(super) fn check_cache(spec: &MultiArchImageSpec, platforms: &[Platform], report: &mut Report) {
    if !spec.cache.enabled {
        return;
    }
    let field = if spec.cache.repository.is_some() {
        "spec.cache.repository"
    } else {
        "spec.image"
    };
    if let Some(repository) = &spec.cache.repository {
        if let Err(e) = reference::parse_repository(repository) {
            report("spec.cache.repository", e.to_string());
            return;
        }
    } else if reference::parse_repository(&spec.image).is_err() {
        return; // spec.image reports it.
    }
    for platform in platforms {
        let names = [
            buildah_cache_repository(spec, platform).map(|r| {
                reference::parse_repository(&r)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }),
            buildkit_cache_ref(spec, platform).map(|r| reference::parse(&r).map(|_| ())),
        ];
        if let Some(Some(Err(why))) = names.into_iter().find(|n| matches!(n, Some(Err(_)))) {
            report(
                field,
                format!(
                    "the cache of {platform} would be invalid ({why}); \
                     set a shorter spec.cache.repository or spec.cache.enabled: false"
                ),
            );
            return;
        }
    }
}
