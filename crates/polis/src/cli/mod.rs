//! The `polis` client verbs (`polis images`, `polis run`, `polis container ls`, …):
//! docker's verbs, flags, output and exit codes, spoken to the daemon over the Engine
//! API.

mod changes;
mod client;
mod containers;
mod cp;
mod credentials;
mod df;
mod events;
mod exec;
mod format;
mod images;
mod list;
mod login;
mod netopts;
mod network;
mod opts;
mod progress;
mod pull;
mod push;
mod stats;
mod stream;
mod system;
mod volume;

use clap::{Args, Subcommand};

/// Verbs at the top level, as docker has them.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Show the client's and the daemon's versions.
    Version(system::VersionArgs),
    /// Show system-wide information.
    Info(system::InfoArgs),
    /// Get real time events from the server.
    Events(events::EventsArgs),
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
    /// Download an image from a registry.
    Pull(pull::PullArgs),
    /// Upload an image to a registry.
    Push(push::PushArgs),
    /// Log in to a registry.
    Login(login::LoginArgs),
    /// Log out from a registry.
    Logout(login::LogoutArgs),
    /// Show the history of an image.
    History(images::HistoryArgs),
    /// Manage images.
    Image(ImageArgs),
    /// Create and run a new container from an image.
    Run(Box<containers::RunArgs>),
    /// Create a new container.
    Create(Box<containers::CreateArgs>),
    /// Start one or more stopped containers.
    Start(containers::StartArgs),
    /// Attach local standard input, output, and error streams to a running container.
    Attach(containers::AttachArgs),
    /// Stop one or more running containers.
    Stop(containers::StopArgs),
    /// Kill one or more running containers.
    Kill(containers::KillArgs),
    /// Restart one or more containers.
    Restart(containers::StopArgs),
    /// Pause all processes within one or more containers.
    Pause(containers::NamesArgs),
    /// Unpause all processes within one or more containers.
    Unpause(containers::NamesArgs),
    /// Remove one or more containers.
    Rm(containers::RmArgs),
    /// List containers.
    Ps(list::PsArgs),
    /// Return low-level information on Docker objects.
    Inspect(list::InspectArgs),
    /// Fetch the logs of a container.
    Logs(containers::LogsArgs),
    /// Block until one or more containers stop, then print their exit codes.
    Wait(containers::NamesArgs),
    /// Rename a container.
    Rename(containers::RenameArgs),
    /// Display the running processes of a container.
    Top(containers::TopArgs),
    /// Update configuration of one or more containers.
    Update(containers::UpdateArgs),
    /// Execute a command in a running container.
    Exec(exec::ExecArgs),
    /// Copy files/folders between a container and the local filesystem.
    Cp(cp::CpArgs),
    /// Export a container's filesystem as a tar archive.
    Export(changes::ExportArgs),
    /// Create a new image from a container's changes.
    Commit(changes::CommitArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(changes::DiffArgs),
    /// Display a live stream of container(s) resource usage statistics.
    Stats(stats::StatsArgs),
    /// Manage containers.
    Container(ContainerArgs),
    /// Manage networks.
    Network(network::NetworkArgs),
    /// Manage volumes.
    Volume(volume::VolumeArgs),
    /// Manage Docker.
    System(df::SystemArgs),
    /// List port mappings or a specific mapping for the container.
    Port(network::PortArgs),
}

#[derive(Args)]
pub struct ContainerArgs {
    #[command(subcommand)]
    command: ContainerCommand,
}

/// `polis container <verb>`.
#[derive(Subcommand)]
enum ContainerCommand {
    /// Create and run a new container from an image.
    Run(Box<containers::RunArgs>),
    /// Create a new container.
    Create(Box<containers::CreateArgs>),
    /// Start one or more stopped containers.
    Start(containers::StartArgs),
    /// Attach local standard input, output, and error streams to a running container.
    Attach(containers::AttachArgs),
    /// Stop one or more running containers.
    Stop(containers::StopArgs),
    /// Kill one or more running containers.
    Kill(containers::KillArgs),
    /// Restart one or more containers.
    Restart(containers::StopArgs),
    /// Pause all processes within one or more containers.
    Pause(containers::NamesArgs),
    /// Unpause all processes within one or more containers.
    Unpause(containers::NamesArgs),
    /// Remove one or more containers.
    #[command(visible_alias = "remove")]
    Rm(containers::RmArgs),
    /// List containers.
    #[command(visible_aliases = ["list", "ps"])]
    Ls(list::PsArgs),
    /// Display detailed information on one or more containers.
    Inspect(list::ContainerInspectArgs),
    /// Fetch the logs of a container.
    Logs(containers::LogsArgs),
    /// Block until one or more containers stop, then print their exit codes.
    Wait(containers::NamesArgs),
    /// Rename a container.
    Rename(containers::RenameArgs),
    /// Display the running processes of a container.
    Top(containers::TopArgs),
    /// Update configuration of one or more containers.
    Update(containers::UpdateArgs),
    /// Execute a command in a running container.
    Exec(exec::ExecArgs),
    /// Copy files/folders between a container and the local filesystem.
    Cp(cp::CpArgs),
    /// Export a container's filesystem as a tar archive.
    Export(changes::ExportArgs),
    /// Create a new image from a container's changes.
    Commit(changes::CommitArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(changes::DiffArgs),
    /// Display a live stream of container(s) resource usage statistics.
    Stats(stats::StatsArgs),
    /// Remove all stopped containers.
    Prune(containers::PruneArgs),
    /// List port mappings or a specific mapping for the container.
    Port(network::PortArgs),
}

/// An exit with a code of its own (docker's `StatusError`): the message, when there is
/// one, is printed as it is.
#[derive(Debug)]
pub struct StatusError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for StatusError {}

/// An I/O error worded as Go words it ("no such file or directory").
pub fn io_error_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let text = nix::errno::Errno::from_raw(n).desc();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::new(),
            }
        }
        None => e.to_string(),
    }
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
    /// Download an image from a registry.
    Pull(pull::PullArgs),
    /// Upload an image to a registry.
    Push(push::PushArgs),
    /// Show the history of an image.
    History(images::HistoryArgs),
    /// Display detailed information on one or more images.
    Inspect(images::InspectArgs),
    /// Remove unused images.
    Prune(images::PruneArgs),
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
    let result = runtime.block_on(run(&host, command));
    // A read of stdin may still be blocked in the runtime's pool: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<StatusError>() {
            Some(s) => {
                if !s.message.is_empty() {
                    eprintln!("{}", s.message);
                }
                s.code
            }
            None => {
                eprintln!("{e:#}");
                1
            }
        },
    }
}

async fn run(host: &str, command: ClientCommand) -> anyhow::Result<()> {
    use ClientCommand as C;
    match command {
        C::Version(a) => return system::version(host, a).await,
        C::Info(a) => return system::info(host, a).await,
        C::Logout(a) => return login::logout(a),
        _ => {}
    }
    let c = client::Client::connect(host).await?;
    match command {
        C::Version(_) | C::Info(_) | C::Logout(_) => Ok(()),
        C::Login(a) => login::login(&c, a).await,
        C::Images(a) => images::list(&c, a).await,
        C::Import(a) => images::import(&c, a).await,
        C::Tag(a) => images::tag(&c, a).await,
        C::Rmi(a) => images::remove(&c, a).await,
        C::Save(a) => images::save(&c, a).await,
        C::Load(a) => images::load(&c, a).await,
        C::Pull(a) => pull::pull(&c, a).await,
        C::Push(a) => push::push(&c, a).await,
        C::History(a) => images::history(&c, a).await,
        C::Image(ImageArgs { command }) => match command {
            ImageCommand::Ls(a) => images::list(&c, a).await,
            ImageCommand::Import(a) => images::import(&c, a).await,
            ImageCommand::Tag(a) => images::tag(&c, a).await,
            ImageCommand::Rm(a) => images::remove(&c, a).await,
            ImageCommand::Save(a) => images::save(&c, a).await,
            ImageCommand::Load(a) => images::load(&c, a).await,
            ImageCommand::Pull(a) => pull::pull(&c, a).await,
            ImageCommand::Push(a) => push::push(&c, a).await,
            ImageCommand::History(a) => images::history(&c, a).await,
            ImageCommand::Inspect(a) => images::inspect(&c, a).await,
            ImageCommand::Prune(a) => images::prune(&c, a).await,
        },
        C::Run(a) => containers::run(&c, *a).await,
        C::Create(a) => containers::create(&c, *a).await,
        C::Start(a) => containers::start(&c, a).await,
        C::Attach(a) => containers::attach(&c, a).await,
        C::Stop(a) => containers::stop(&c, a).await,
        C::Kill(a) => containers::kill(&c, a).await,
        C::Restart(a) => containers::restart(&c, a).await,
        C::Pause(a) => containers::pause(&c, a).await,
        C::Unpause(a) => containers::unpause(&c, a).await,
        C::Rm(a) => containers::remove(&c, a).await,
        C::Ps(a) => list::ps(&c, a).await,
        C::Inspect(a) => list::inspect(&c, a).await,
        C::Logs(a) => containers::logs(&c, a).await,
        C::Wait(a) => containers::wait(&c, a).await,
        C::Rename(a) => containers::rename(&c, a).await,
        C::Top(a) => containers::top(&c, a).await,
        C::Update(a) => containers::update(&c, a).await,
        C::Exec(a) => exec::exec(&c, a).await,
        C::Cp(a) => cp::cp(&c, a).await,
        C::Export(a) => changes::export(&c, a).await,
        C::Commit(a) => changes::commit(&c, a).await,
        C::Diff(a) => changes::diff(&c, a).await,
        C::Stats(a) => stats::stats(&c, a).await,
        C::Events(a) => events::events(&c, a).await,
        C::Container(ContainerArgs { command }) => container(&c, command).await,
        C::Network(a) => network::network(&c, a).await,
        C::Volume(a) => volume::volume(&c, a).await,
        C::System(a) => df::system(&c, a).await,
        C::Port(a) => network::port(&c, a).await,
    }
}

async fn container(c: &client::Client, command: ContainerCommand) -> anyhow::Result<()> {
    use ContainerCommand as K;
    match command {
        K::Run(a) => containers::run(c, *a).await,
        K::Create(a) => containers::create(c, *a).await,
        K::Start(a) => containers::start(c, a).await,
        K::Attach(a) => containers::attach(c, a).await,
        K::Stop(a) => containers::stop(c, a).await,
        K::Kill(a) => containers::kill(c, a).await,
        K::Restart(a) => containers::restart(c, a).await,
        K::Pause(a) => containers::pause(c, a).await,
        K::Unpause(a) => containers::unpause(c, a).await,
        K::Rm(a) => containers::remove(c, a).await,
        K::Ls(a) => list::ps(c, a).await,
        K::Inspect(a) => list::container_inspect(c, a).await,
        K::Logs(a) => containers::logs(c, a).await,
        K::Wait(a) => containers::wait(c, a).await,
        K::Rename(a) => containers::rename(c, a).await,
        K::Top(a) => containers::top(c, a).await,
        K::Update(a) => containers::update(c, a).await,
        K::Exec(a) => exec::exec(c, a).await,
        K::Cp(a) => cp::cp(c, a).await,
        K::Export(a) => changes::export(c, a).await,
        K::Commit(a) => changes::commit(c, a).await,
        K::Diff(a) => changes::diff(c, a).await,
        K::Stats(a) => stats::stats(c, a).await,
        K::Prune(a) => containers::prune(c, a).await,
        K::Port(a) => network::port(c, a).await,
    }
}
