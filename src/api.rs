//! The MultiArchImage API (under construction).
pub fn crd_yaml() -> String {
    String::new()
}
