//! The `polis` client verbs (`polis images`, `polis image inspect`, …): docker's verbs,
//! flags and output, spoken to the daemon over the Engine API.

mod client;
mod format;
mod images;
mod system;

use clap::{Args, Subcommand};

/// Verbs at the top level, as docker has them.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Show the client's and the daemon's versions.
    Version(system::VersionArgs),
    /// Show system-wide information.
    Info(system::InfoArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Import a root filesystem tarball as an image.
    Import(images::ImportArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(images::TagArgs),
    /// Remove one or more images.
    Rmi(images::RmiArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default).
    Save(images::SaveArgs),
    /// Load an image from a tar archive or STDIN.
    Load(images::LoadArgs),
    /// Show the history of an image.
    History(images::HistoryArgs),
    /// Manage images.
    Image(ImageArgs),
}

#[derive(Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

/// `polis image <verb>`.
#[derive(Subcommand)]
enum ImageCommand {
    /// List images.
    #[command(visible_alias = "list")]
    Ls(images::ImagesArgs),
    /// Import a root filesystem tarball as an image.
    Import(images::ImportArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(images::TagArgs),
    /// Remove one or more images.
    #[command(visible_alias = "remove")]
    Rm(images::RmiArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default).
    Save(images::SaveArgs),
    /// Load an image from a tar archive or STDIN.
    Load(images::LoadArgs),
    /// Show the history of an image.
    History(images::HistoryArgs),
    /// Display detailed information on one or more images.
    Inspect(images::InspectArgs),
}

/// Runs one client verb against the daemon at `host` (from `-H`, or the environment);
/// returns the exit code.
pub fn main(host: Option<&str>, command: ClientCommand) -> i32 {
    let host = client::resolve_host(host);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(&host, command)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    }
}

async fn run(host: &str, command: ClientCommand) -> anyhow::Result<()> {
    use ClientCommand as C;
    match command {
        C::Version(a) => return system::version(host, a).await,
        C::Info(a) => return system::info(host, a).await,
        _ => {}
    }
    let c = client::Client::connect(host).await?;
    match command {
        C::Version(_) | C::Info(_) => Ok(()),
        C::Images(a) => images::list(&c, a).await,
        C::Import(a) => images::import(&c, a).await,
        C::Tag(a) => images::tag(&c, a).await,
        C::Rmi(a) => images::remove(&c, a).await,
        C::Save(a) => images::save(&c, a).await,
        C::Load(a) => images::load(&c, a).await,
        C::History(a) => images::history(&c, a).await,
        C::Image(ImageArgs { command }) => match command {
            ImageCommand::Ls(a) => images::list(&c, a).await,
            ImageCommand::Import(a) => images::import(&c, a).await,
            ImageCommand::Tag(a) => images::tag(&c, a).await,
            ImageCommand::Rm(a) => images::remove(&c, a).await,
            ImageCommand::Save(a) => images::save(&c, a).await,
            ImageCommand::Load(a) => images::load(&c, a).await,
            ImageCommand::History(a) => images::history(&c, a).await,
            ImageCommand::Inspect(a) => images::inspect(&c, a).await,
        },
    }
}
