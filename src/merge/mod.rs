//! `multiarch-operator merge`: assemble and push the image index.
//! (Being built: see the merge issue.)

/// Command line of `multiarch-operator merge`, fixed by DESIGN.md.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// PLATFORM=REPO@sha256:DIGEST, once per platform, in index order.
    #[arg(long = "platform-image", required = true)]
    pub platform_images: Vec<String>,
    /// REPO:TAG to push the index to; repeatable.
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
    /// A docker config.json with registry credentials.
    #[arg(long)]
    pub registry_config: Option<std::path::PathBuf>,
    /// HOST:PORT of a registry reached over plain HTTP; repeatable.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Also write the index digest to this file (the Job passes /dev/termination-log).
    #[arg(long)]
    pub digest_file: Option<std::path::PathBuf>,
}

/// Runs the merge; returns the process exit code.
pub async fn run(_args: MergeArgs) -> i32 {
    eprintln!("merge: not implemented yet");
    2
}
