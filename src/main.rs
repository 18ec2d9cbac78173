use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use multiarch_operator::{api, controller, merge, push, render, telemetry, validate};

/// Builds multi-architecture container images natively on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "multiarch-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the MultiArchImage CustomResourceDefinition as YAML.
    Crds,
    /// Print the Jobs a MultiArchImage would create, as YAML (a dry run).
    Render {
        /// The MultiArchImage manifest (YAML); `-` reads standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[command(flatten)]
        images: render::ImageArgs,
        #[command(flatten)]
        allowlists: validate::Allowlists,
    },
    /// Run the operator.
    Controller(controller::ControllerArgs),
    /// Assemble the per-platform images into one index and push it.
    Merge(merge::MergeArgs),
    /// Push a built image (and its cache) from OCI layouts, by digest: the
    /// last step of a BuildKit build pod.
    Push(push::PushArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => {
            print!("{}", api::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Render {
            file,
            images,
            allowlists,
        } => {
            let images = images.into();
            let allowlists = allowlists.with_operator_image(&images);
            match render_file(&file, &images, &allowlists) {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(message) => {
                    eprintln!("{message}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Controller(args) => {
            telemetry::init_logging(args.log_json);
            let runtime = tokio::runtime::Runtime::new().expect("start the async runtime");
            match runtime.block_on(controller::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "the operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Merge(args) => {
            let runtime = tokio::runtime::Runtime::new().expect("start the async runtime");
            let code = runtime.block_on(merge::run(args));
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Command::Push(args) => {
            let runtime = tokio::runtime::Runtime::new().expect("start the async runtime");
            let code = runtime.block_on(push::run(args));
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

fn render_file(
    file: &PathBuf,
    images: &render::BuilderImages,
    allowlists: &validate::Allowlists,
) -> Result<String, String> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| format!("reading standard input: {e}"))?
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?
    };
    let resources =
        validate::parse_manifests(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut out = String::new();
    for resource in &resources {
        let invalid = |e: validate::ValidationErrors| {
            let name = resource.metadata.name.as_deref().unwrap_or("<unnamed>");
            format!("{}: MultiArchImage {name} is invalid:\n{e}", file.display())
        };
        let valid = validate::validate_with(resource, allowlists).map_err(invalid)?;
        let yaml = render::render_yaml(resource, &valid, images);
        out.push_str(&yaml);
    }
    Ok(out)
}
