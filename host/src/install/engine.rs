//! The container engine that runs invocation images: Docker's Engine API, which Docker and
//! podman's service both speak. Files go in and outputs come out through the archive endpoints,
//! never bind mounts, so an engine on another machine works the same.

use super::executor::{Exit, Finished, Run};
use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, ImportImageOptionsBuilder,
    KillContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// Requests other than waiting for the run are answered within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The waiting request lasts as long as the run; the action's own deadline bounds it.
const RUN_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The container's state is asked first after this, then twice as long after each answer, up to
/// `STATE_POLL_MAX`: a run tool that exits at once is seen at once, a long run costs little.
const STATE_POLL_FIRST: Duration = Duration::from_millis(50);
const STATE_POLL_MAX: Duration = Duration::from_secs(2);
/// How long the run's last output may take to arrive once it has ended: a loaded machine
/// delivers it seconds late (seen at 2 s), and only a follow the engine leaves open waits it out.
const LOG_GRACE: Duration = Duration::from_secs(5);

pub struct Engine {
    docker: Docker,
    socket: String,
    runtime: tokio::runtime::Runtime,
}

/// Where an engine's socket is looked for, in order: `DOCKER_HOST`, Docker's, podman's rootful
/// and rootless sockets.
fn candidates() -> Vec<String> {
    if let Ok(host) = std::env::var("DOCKER_HOST")
        && !host.is_empty()
    {
        return vec![host];
    }
    let mut list = vec!["unix:///var/run/docker.sock".to_owned(), "unix:///run/podman/podman.sock".to_owned()];
    if let Some(runtime_dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        list.push(format!("unix://{}/podman/podman.sock", Path::new(&runtime_dir).display()));
    }
    list
}

impl Engine {
    pub fn connect() -> Result<Engine> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let candidates = candidates();
        let socket =
            candidates.iter().find(|c| !c.starts_with("unix://") || Path::new(&c["unix://".len()..]).exists()).cloned();
        let hint = "start one (for podman: `podman system service --time=0 unix:///run/podman/podman.sock &`) \
                    or set DOCKER_HOST=unix:///PATH/TO/engine.sock";
        let Some(socket) = socket else {
            bail!("no container engine found (tried {}); {hint}", candidates.join(", "));
        };
        let docker = match socket.strip_prefix("unix://") {
            Some(_) => Docker::connect_with_unix(&socket, REQUEST_TIMEOUT.as_secs(), bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_host(&socket),
        }
        .with_context(|| format!("connecting to the container engine at {socket}"))?;
        runtime
            .block_on(docker.ping())
            .map_err(|e| anyhow!("the container engine at {socket} does not answer ({e}); {hint}"))?;
        Ok(Engine { docker, socket, runtime })
    }

    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// Loads an image from an OCI image layout directory (one image) into the engine, unless the
    /// engine has it; the image is then known to it by its ID, the config's digest.
    pub fn load(&self, layout: &Path, image_id: &str) -> Result<()> {
        // The ID is the config's digest: an engine that knows it holds this very image already
        // (an upgrade, a second installation), and loading it again would only cost time.
        if self.runtime.block_on(self.docker.inspect_image(image_id)).is_ok() {
            return Ok(());
        }
        let mut archive = tempfile::tempfile().context("creating a temporary file for the image archive")?;
        {
            let mut builder = tar::Builder::new(&mut archive);
            builder.follow_symlinks(false);
            builder.append_dir_all(".", layout).with_context(|| format!("archiving {}", layout.display()))?;
            builder.finish()?;
        }
        let chunks = chunks_of(archive)?;
        let socket = &self.socket;
        self.runtime.block_on(async {
            let mut answers =
                self.docker.import_image_stream(ImportImageOptionsBuilder::new().quiet(true).build(), chunks, None);
            while let Some(answer) = answers.next().await {
                answer.map_err(|e| anyhow!("the engine at {socket} did not load the invocation image: {e}"))?;
            }
            self.docker.inspect_image(image_id).await.map_err(|e| {
                anyhow!("the engine at {socket} loaded the invocation image but does not know {image_id}: {e}")
            })
        })?;
        Ok(())
    }

    /// Runs the invocation image once: a container created, given its files, started, its
    /// output streamed, waited for, its outputs taken, and removed whatever happened.
    pub fn run(&self, run: &Run, interrupted: &tokio::sync::Notify) -> Result<Finished> {
        let name = format!("ferry-{}", run.id.to_ascii_lowercase());
        let env: Vec<String> = run.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let labels = BTreeMap::from([("io.ferry.run".to_owned(), run.id.clone())]);
        let body = ContainerCreateBody {
            image: Some(run.image.clone()),
            entrypoint: Some(vec!["/cnab/app/run".to_owned()]),
            cmd: Some(Vec::new()),
            env: Some(env),
            labels: Some(labels.into_iter().collect()),
            ..Default::default()
        };
        let docker = &self.docker;
        let socket = &self.socket;
        self.runtime.block_on(async {
            docker
                .create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), body)
                .await
                .map_err(|e| anyhow!("the engine at {socket} could not create a container of {}: {e}", run.image))?;
            let outcome = self.run_created(&name, run, interrupted).await;
            let removed = docker
                .remove_container(&name, Some(RemoveContainerOptionsBuilder::new().force(true).v(true).build()))
                .await;
            match (outcome, removed) {
                (Ok(finished), Ok(())) => Ok(finished),
                // An engine that went away cannot remove anything either: the lost run is the news.
                (Ok(finished @ Finished { exit: Exit::Lost(_), .. }), Err(_)) => Ok(finished),
                (Ok(_), Err(e)) => Err(anyhow!("container {name} was not removed from the engine at {socket}: {e}")),
                (Err(e), _) => Err(e),
            }
        })
    }

    async fn run_created(&self, name: &str, run: &Run, interrupted: &tokio::sync::Notify) -> Result<Finished> {
        let docker = &self.docker;
        // One upload: the /cnab files and, when ferry placed the bundle's images, the artifacts,
        // streamed from a temporary file (a disk image does not pass through memory).
        let options = UploadToContainerOptionsBuilder::new().path("/").build();
        let archive = files_archive(&run.files, run.artifacts.as_deref())?;
        docker
            .upload_to_container(name, Some(options), bollard::body_try_stream(chunks_of(archive)?))
            .await
            .context("placing the /cnab files in the container")?;
        docker.start_container(name, None).await.with_context(|| format!("starting container {name}"))?;

        // Following the logs and waiting last as long as the run.
        let long = docker.clone().with_timeout(RUN_TIMEOUT);
        let logs = async {
            let options = LogsOptionsBuilder::new().follow(true).stdout(true).stderr(true).build();
            let mut stream = long.logs(name, Some(options));
            while let Some(Ok(line)) = stream.next().await {
                match line {
                    LogOutput::StdErr { message } => {
                        let _ = std::io::stderr().write_all(&message);
                    }
                    other if run.stdout_to_stderr => {
                        let _ = std::io::stderr().write_all(other.as_ref());
                    }
                    other => {
                        let _ = std::io::stdout().write_all(other.as_ref());
                        let _ = std::io::stdout().flush();
                    }
                }
            }
        };
        let wait = || async {
            let mut waits = long.wait_container(name, None);
            match waits.next().await {
                Some(Ok(answer)) => Exit::Code(answer.status_code),
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Exit::Code(code),
                Some(Err(e)) => Exit::Lost(e.to_string()),
                None => Exit::Lost("the engine ended the wait without an exit status".into()),
            }
        };
        let waited = wait();
        // podman 4 can leave a wait or a followed log open after a container that ended at once,
        // and answers a wait only every 250 ms: the container's state, asked too, ends it. A
        // container that has ended is waited for again, which an engine answers at once.
        let polled = async {
            let mut pause = STATE_POLL_FIRST;
            loop {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(STATE_POLL_MAX);
                let ended = match docker.inspect_container(name, None).await {
                    Ok(inspected) => matches!(
                        inspected.state.and_then(|s| s.status),
                        Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
                    ),
                    // podman's own state between the end of the process and its cleanup, which
                    // Docker's API (and so bollard) does not have.
                    Err(e) => e.to_string().contains("unknown variant `stopped`"),
                };
                if ended {
                    return wait().await;
                }
            }
        };
        let status = async {
            tokio::select! {
                exit = waited => exit,
                exit = polled => exit,
            }
        };
        let ended = async {
            let mut logs = std::pin::pin!(logs);
            let mut status = std::pin::pin!(status);
            tokio::select! {
                exit = &mut status => {
                    // What the run printed last may still be on its way: a moment for it, then on.
                    let _ = tokio::time::timeout(LOG_GRACE, &mut logs).await;
                    exit
                }
                () = &mut logs => status.await,
            }
        };
        let exit = tokio::select! {
            exit = ended => exit,
            () = interrupted.notified() => {
                let kill = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
                let _ = docker.kill_container(name, Some(kill)).await;
                Exit::Canceled
            }
        };
        let outputs = match exit {
            Exit::Code(_) if !run.outputs.is_empty() => self.outputs(name, run).await?,
            _ => BTreeMap::new(),
        };
        Ok(Finished { exit, outputs, remarks: Vec::new() })
    }

    /// The files under /cnab/app/outputs, each at most `run.output_cap` bytes.
    async fn outputs(&self, name: &str, run: &Run) -> Result<BTreeMap<String, Vec<u8>>> {
        let options = DownloadFromContainerOptionsBuilder::new().path("/cnab/app/outputs").build();
        let mut stream = self.docker.download_from_container(name, Some(options));
        let mut archive = Vec::new();
        // The archive holds every output: the cap per output times the number wanted bounds it.
        let bound = run.output_cap.saturating_mul(run.outputs.len() as u64 + 1).saturating_add(1 << 20);
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                // No outputs directory: the run wrote none.
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                    return Ok(BTreeMap::new());
                }
                Err(e) => return Err(anyhow!("reading /cnab/app/outputs from container {name}: {e}")),
            };
            if (archive.len() + chunk.len()) as u64 > bound {
                bail!("the outputs in /cnab/app/outputs are larger than {bound} bytes in all");
            }
            archive.extend_from_slice(&chunk);
        }
        super::outputs::read_archive(&archive, &run.outputs, run.output_cap)
    }
}

/// A tar of `files` (absolute paths in the container), with the directories above them, an
/// empty, writable /cnab/app/outputs and, when given, a directory of images as
/// /cnab/app/artifacts; in a temporary file.
fn files_archive(files: &[(String, Vec<u8>)], artifacts: Option<&Path>) -> Result<std::fs::File> {
    let mut builder = tar::Builder::new(tempfile::tempfile().context("creating a temporary file for /cnab")?);
    builder.follow_symlinks(false);
    let mut dirs = std::collections::BTreeSet::from(["cnab".to_owned(), "cnab/app".to_owned()]);
    for (path, _) in files {
        let relative = path.trim_start_matches('/');
        let mut parent = Path::new(relative).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_string_lossy().into_owned());
            parent = p.parent();
        }
    }
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h
    };
    for dir in &dirs {
        builder.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), dir, std::io::empty())?;
    }
    // The run tool may run as any user; it must be able to write its outputs.
    builder.append_data(&mut header(tar::EntryType::Directory, 0o777, 0), "cnab/app/outputs", std::io::empty())?;
    for (path, content) in files {
        let mut h = header(tar::EntryType::Regular, 0o644, content.len() as u64);
        builder.append_data(&mut h, path.trim_start_matches('/'), content.as_slice())?;
    }
    if let Some(artifacts) = artifacts {
        builder
            .append_dir_all("cnab/app/artifacts", artifacts)
            .with_context(|| format!("archiving {} for /cnab/app/artifacts", artifacts.display()))?;
    }
    Ok(builder.into_inner()?)
}

/// A file's bytes from its start, as a request body.
fn chunks_of(
    mut file: std::fs::File,
) -> Result<impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static> {
    std::io::Seek::rewind(&mut file)?;
    Ok(futures_util::stream::unfold(file, |mut file| async move {
        let mut buffer = vec![0; 1 << 20];
        match file.read(&mut buffer) {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(bytes::Bytes::from(buffer)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    }))
}
