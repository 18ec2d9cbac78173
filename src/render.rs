//! Job rendering (under construction).
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {}
#[derive(Debug, Clone)]
pub struct BuilderImages {}
impl From<ImageArgs> for BuilderImages {
    fn from(_: ImageArgs) -> Self {
        BuilderImages {}
    }
}
pub fn render_yaml(_r: &(), _i: &BuilderImages) -> Result<String, String> {
    Ok(String::new())
}
