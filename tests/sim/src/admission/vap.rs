//! ValidatingAdmissionPolicy (placeholder until CEL evaluation lands).

use super::Request;
use crate::error::ApiResult;
use crate::store::Store;

pub fn validate(_s: &Store, _req: &Request) -> ApiResult<()> {
    Ok(())
}
