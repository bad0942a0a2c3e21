//! The dfs client: `put` (chunks uploaded in parallel to distinct servers, retried, metadata file
//! written, file committed), `get` (any live replica, verified, falling back to the next), `ls`, `rm`.
//! The command line (`switchyard dfs ...`) is a thin layer over these functions.

use crate::domain::{frame_in_place, sha256_hex, Sha256Stream, FRAME_ROOM, HEADER_ROOM};
use crate::fanout::{self, Fanout};
use crate::transfer;
use anyhow::Context as _;
use clap::Parser;
use futures::stream::{FuturesUnordered, StreamExt};
use rand::seq::SliceRandom;
use schemas::dfs::{
    ChunkServerAddr, ChunkServersReply, FileChunk, FileInfo, ListFilesReply, UploadChunk,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Default chunk size (capped by the server's max payload).
pub const DEFAULT_CHUNK: u64 = 4 * 1024 * 1024;
/// Attempts per replica (each on another server when there is one).
pub const MAX_ATTEMPTS: usize = 3;
/// Chunks in flight at once.
pub const PARALLEL: usize = 16;
/// Files at least this large get a progress bar.
const PROGRESS_FROM: u64 = 16 * 1024 * 1024;

/// Sends a request to the coordinator; an error reply becomes an error naming its code.
///
/// # Errors
/// No reply, or an error reply.
pub async fn coordinator(client: &async_nats::Client, body: &Value) -> anyhow::Result<Value> {
    let r = runtime::client::request_json(client, "dfs.coordinator", body).await;
    if r.status != 200 {
        let code = r.body["error"]["code"].as_str().unwrap_or("error");
        let msg = r.body["error"]["message"].as_str().unwrap_or_default();
        anyhow::bail!("{code}: {msg}");
    }
    Ok(r.body)
}

/// The largest chunk the connected NATS server lets through, with room for the header.
#[must_use]
pub fn max_chunk(client: &async_nats::Client) -> u64 {
    client.server_info().max_payload.saturating_sub(HEADER_ROOM) as u64
}

/// How to put a file.
#[derive(Debug, Clone)]
pub struct PutOptions {
    /// Replicas per chunk (default: the deployment's factor, 3).
    pub replicas: Option<u32>,
    /// Bytes per chunk (default 4 MiB, at most the server's max payload less the header room).
    pub chunk_size: Option<u64>,
    /// Where `<file_id>_metadata.json` goes.
    pub metadata_dir: PathBuf,
    /// Show a progress bar on large files.
    pub progress: bool,
}

impl Default for PutOptions {
    fn default() -> Self {
        Self {
            replicas: None,
            chunk_size: None,
            metadata_dir: PathBuf::from("."),
            progress: false,
        }
    }
}

fn bar(total: u64, show: bool, what: &str) -> indicatif::ProgressBar {
    if !show || total < PROGRESS_FROM {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// Stores one framed chunk on `replicas` distinct servers, starting at `servers[first]`.
///
/// The first attempt is one fanned-out publish to all of them (`crate::fanout`); a replica it did
/// not store is retried on the contract's per-server subject, walking on to servers no other
/// replica uses. Returns how many replicas were stored.
async fn upload_replicas(
    client: async_nats::Client,
    fanout: std::sync::Arc<Fanout>,
    servers: std::sync::Arc<Vec<ChunkServerAddr>>,
    header: UploadChunk,
    frame: bytes::Bytes,
    replicas: usize,
    first: usize,
) -> anyhow::Result<usize> {
    let (client, header) = (&client, &header);
    let n = servers.len();
    let wanted = replicas.min(n).max(1);
    let chosen: Vec<usize> = (0..wanted).map(|k| (first + k) % n).collect();
    let fanned_to: Vec<usize> = chosen
        .iter()
        .copied()
        .filter(|&i| !fanout.missed(&servers[i].chnk_srv_id))
        .collect();
    let mut fanned = std::collections::HashMap::new();
    for group in fanned_to.chunks(fanout::MAX_SERVERS) {
        let ids: Vec<&str> = group
            .iter()
            .map(|&i| servers[i].chnk_srv_id.as_str())
            .collect();
        fanned.extend(
            fanout
                .upload(&ids, frame.clone(), transfer::CHUNK_TIMEOUT)
                .await,
        );
    }
    // Each replica starts on its own server; retries walk on to servers no other replica uses.
    let mut spare: Vec<usize> = (wanted..n).map(|k| (first + k) % n).collect();
    spare.reverse();
    let spare = std::sync::Mutex::new(spare);
    let tries = chosen.iter().map(|&start| {
        let spare = &spare;
        let frame = &frame;
        let servers = &servers;
        // The fanned-out publish counts as the first attempt on the servers it named. A server that
        // did not answer it (slow, or dead) is asked directly next; one that refused moves on.
        let first_try = if fanned_to.contains(&start) {
            Some(fanned.remove(&servers[start].chnk_srv_id))
        } else {
            None
        };
        let fanout = &fanout;
        async move {
            let mut server = start;
            let (mut attempts, mut last) = match first_try {
                Some(Some(Ok(()))) => return Ok(()),
                Some(Some(Err(e))) => (1, Some(e)),
                Some(None) => {
                    // No answer: the same server, on its own subject (it may only be slow; a dead
                    // one answers "no responders" at once).
                    match transfer::upload_frame(client, &servers[start].chnk_srv_addr, frame.clone()).await {
                        Ok(()) => return Ok(()),
                        Err(e) => {
                            fanout.mark_missed(&servers[start].chnk_srv_id);
                            (2, Some(e))
                        }
                    }
                }
                None => (0, None),
            };
            while attempts < MAX_ATTEMPTS {
                if let Some(e) = &last {
                    tracing::warn!(chunk = %header.chunk_id, attempts, error = %e, "upload failed; retrying");
                    if let Some(next) = spare.lock().ok().and_then(|mut s| s.pop()) {
                        server = next;
                    }
                }
                attempts += 1;
                match transfer::upload_frame(client, &servers[server].chnk_srv_addr, frame.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_default())
        }
    });
    let results = futures::future::join_all(tries).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    if ok == 0 {
        let why = results
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_default();
        anyhow::bail!(
            "chunk {} could not be stored on any server: {why}",
            header.chunk_id
        );
    }
    Ok(ok)
}

/// Uploads a file and commits it; returns its id.
///
/// # Errors
/// The file cannot be read, no chunk server is live, a chunk could not be stored anywhere, or the
/// commit was refused.
pub async fn put(
    client: &async_nats::Client,
    path: &Path,
    options: &PutOptions,
) -> anyhow::Result<String> {
    let limit = max_chunk(client);
    let chunk_size = options.chunk_size.unwrap_or(DEFAULT_CHUNK.min(limit));
    anyhow::ensure!(chunk_size >= 1, "--chunk-size must be at least 1 byte");
    anyhow::ensure!(
        chunk_size <= limit,
        "--chunk-size {chunk_size} is over what the server's max_payload allows ({limit} bytes with room for the header)"
    );
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = file.metadata()?.len();
    let client_id = coordinator(client, &json!({"request_type": "GET_CLIENT_ID"})).await?
        ["client_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let servers: ChunkServersReply = serde_json::from_value(
        coordinator(client, &json!({"request_type": "GET_CHUNK_SERVERS"})).await?,
    )?;
    anyhow::ensure!(!servers.chunk_servers.is_empty(), "no chunk server is live");
    let mut servers = servers.chunk_servers;
    servers.shuffle(&mut rand::rng());
    let servers = std::sync::Arc::new(servers);
    let fanout = std::sync::Arc::new(Fanout::new(client).await.map_err(anyhow::Error::msg)?);
    let replicas = options.replicas.unwrap_or(3).clamp(1, 16) as usize;
    let file_id = uuid::Uuid::new_v4().to_string();
    let stem = uuid::Uuid::parse_str(&file_id)
        .map(|u| u.simple().to_string())
        .unwrap_or_default();
    let pb = bar(size, options.progress, "put");
    let mut hasher = Sha256Stream::default();
    let mut chunks: Vec<FileChunk> = Vec::new();
    let mut in_flight = FuturesUnordered::new();
    let mut offset = 0u64;
    let mut index = 0u32;
    while offset < size {
        let len = chunk_size.min(size - offset) as usize;
        // Read behind room for the frame's header, so that framing copies no bytes; the spare
        // capacity is read into directly (not zeroed first), on a blocking thread, where the
        // file's running hash and the chunk's hash are taken too.
        let (back, buf, sha) = tokio::task::spawn_blocking(move || {
            use std::io::Read as _;
            let mut buf = Vec::with_capacity(FRAME_ROOM + len);
            buf.resize(FRAME_ROOM, 0);
            let read = (&mut file).take(len as u64).read_to_end(&mut buf);
            let sha = sha256_hex(&buf[FRAME_ROOM..]);
            hasher.update(&buf[FRAME_ROOM..]);
            read.map(|n| ((file, hasher), buf, sha, n))
        })
        .await?
        .and_then(|(back, buf, sha, n)| {
            if n == len {
                Ok((back, buf, sha))
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file ended {} bytes early (was it changed while being put?)",
                        len - n
                    ),
                ))
            }
        })
        .with_context(|| format!("reading {}", path.display()))?;
        (file, hasher) = back;
        let chunk_id = format!("{stem}_{index}");
        chunks.push(FileChunk {
            chunk_id: chunk_id.clone(),
            chunk_index: index,
            size: len as u64,
            sha256: sha.clone(),
        });
        let header = UploadChunk {
            request_type: "UPLOAD_CHUNK".into(),
            chunk_id,
            chunk_index: index,
            chunk_size: len as u64,
            user_id: Some(client_id.clone()),
            file_id: Some(file_id.clone()),
            sha256: sha,
        };
        let frame = frame_in_place(buf, FRAME_ROOM, &serde_json::to_vec(&header)?);
        let first = index as usize % servers.len();
        let (pb, client, servers, fanout) =
            (pb.clone(), client.clone(), servers.clone(), fanout.clone());
        // A task of its own: uploads go on while the next chunk is read and hashed.
        in_flight.push(tokio::spawn(async move {
            let r = upload_replicas(client, fanout, servers, header, frame, replicas, first).await;
            pb.inc(len as u64);
            r
        }));
        if in_flight.len() >= PARALLEL {
            if let Some(r) = in_flight.next().await {
                r??;
            }
        }
        offset += len as u64;
        index += 1;
    }
    while let Some(r) = in_flight.next().await {
        r??;
    }
    pb.finish_and_clear();
    let metadata: Vec<Value> = chunks
        .iter()
        .map(|c| json!({"chunk_id": c.chunk_id, "chunk_index": c.chunk_index}))
        .collect();
    let meta_path = options
        .metadata_dir
        .join(format!("{file_id}_metadata.json"));
    tokio::fs::write(&meta_path, serde_json::to_vec_pretty(&metadata)?)
        .await
        .with_context(|| format!("writing {}", meta_path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "file".into());
    coordinator(
        client,
        &json!({
            "request_type": "COMMIT_FILE", "file_id": file_id, "name": name, "size": size,
            "sha256": hasher.finish_hex(), "chunks": chunks, "replicas": options.replicas,
        }),
    )
    .await?;
    Ok(file_id)
}

/// The file's metadata (`GET_FILE`).
///
/// # Errors
/// Unknown file or no coordinator.
pub async fn file_info(client: &async_nats::Client, file_id: &str) -> anyhow::Result<FileInfo> {
    Ok(serde_json::from_value(
        coordinator(
            client,
            &json!({"request_type": "GET_FILE", "file_id": file_id}),
        )
        .await?,
    )?)
}

/// Live replicas of each chunk of a file, as server subjects (shuffled).
///
/// # Errors
/// No coordinator.
pub async fn locations(
    client: &async_nats::Client,
    file_id: &str,
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let v = coordinator(
        client,
        &json!({"request_type": "GET_CHUNK_LOCATIONS", "file_id": file_id}),
    )
    .await?;
    let map: BTreeMap<String, Vec<ChunkServerAddr>> =
        serde_json::from_value(v["chunk_locations"].clone())?;
    let mut rng = rand::rng();
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let mut subjects: Vec<String> = v.into_iter().map(|s| s.chnk_srv_addr).collect();
            subjects.shuffle(&mut rng);
            (k, subjects)
        })
        .collect())
}

/// Downloads one chunk from the first replica that serves the right bytes.
///
/// # Errors
/// No replica did.
pub async fn fetch_chunk(
    client: &async_nats::Client,
    chunk: &FileChunk,
    replicas: &[String],
) -> anyhow::Result<bytes::Bytes> {
    let mut errors = Vec::new();
    for subject in replicas {
        match transfer::download(client, subject, &chunk.chunk_id, Some(&chunk.sha256)).await {
            Ok((_, bytes)) => return Ok(bytes),
            Err(e) => {
                tracing::warn!(chunk = %chunk.chunk_id, error = %e, "replica failed; trying the next");
                errors.push(e);
            }
        }
    }
    anyhow::bail!(
        "no live replica of chunk {} served good bytes ({})",
        chunk.chunk_id,
        if errors.is_empty() {
            "none is live".into()
        } else {
            errors.join("; ")
        }
    )
}

/// Downloads a file to `out`. Every chunk is checked against the SHA-256 recorded for it when the
/// file was committed (a replica that fails is skipped for the next), and the file against its
/// committed size; the file's own SHA-256 is not computed again, as the chunk checks already
/// cover every byte and a third pass of SHA-256 costs more than the transfer (`BENCHMARKS.md`).
///
/// # Errors
/// Unknown file, a chunk no replica serves, or a checksum mismatch.
pub async fn get(
    client: &async_nats::Client,
    file_id: &str,
    out: &Path,
    progress: bool,
) -> anyhow::Result<FileInfo> {
    let info = file_info(client, file_id).await?;
    let locs = locations(client, file_id).await?;
    let tmp = out.with_file_name(format!(
        ".{}.part",
        out.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    ));
    let piece = info.chunks.first().map_or(0, |c| c.size);
    let mut f = {
        let path = tmp.clone();
        tokio::task::spawn_blocking(move || crate::disk::OutFile::create(&path, piece))
            .await?
            .with_context(|| format!("creating {}", tmp.display()))?
    };
    let pb = bar(info.size, progress, "get");
    let mut written = 0u64;
    // Each download is a task of its own, so that downloads and their checks go on while earlier
    // chunks are written.
    let mut chunks = futures::stream::iter(info.chunks.iter())
        .map(|c| {
            let replicas = locs.get(&c.chunk_id).cloned().unwrap_or_default();
            let (client, c) = (client.clone(), c.clone());
            tokio::spawn(async move { fetch_chunk(&client, &c, &replicas).await })
        })
        .buffered(PARALLEL);
    while let Some(bytes) = chunks.next().await {
        let bytes = bytes??;
        let (offset, len) = (written, bytes.len() as u64);
        f = tokio::task::spawn_blocking(move || f.write_at(offset, &bytes).map(|()| f))
            .await?
            .with_context(|| format!("writing {}", tmp.display()))?;
        written += len;
        pb.inc(len);
    }
    drop(chunks);
    tokio::task::spawn_blocking(move || f.finish())
        .await?
        .with_context(|| format!("writing {}", tmp.display()))?;
    pb.finish_and_clear();
    if written != info.size {
        let _ = tokio::fs::remove_file(&tmp).await;
        anyhow::bail!(
            "file {file_id}: {written} bytes arrived, the file has {}",
            info.size
        );
    }
    tokio::fs::rename(&tmp, out)
        .await
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(info)
}

/// Live files.
///
/// # Errors
/// No coordinator.
pub async fn ls(client: &async_nats::Client) -> anyhow::Result<ListFilesReply> {
    Ok(serde_json::from_value(
        coordinator(client, &json!({"request_type": "LIST_FILES"})).await?,
    )?)
}

/// Deletes a file (its chunks are garbage collected).
///
/// # Errors
/// Unknown file or no coordinator.
pub async fn rm(client: &async_nats::Client, file_id: &str) -> anyhow::Result<()> {
    coordinator(
        client,
        &json!({"request_type": "DELETE_FILE", "file_id": file_id}),
    )
    .await?;
    Ok(())
}

#[derive(Parser)]
#[command(name = "switchyard dfs", about = "Chunked, replicated file storage")]
enum Cli {
    /// Upload a file; prints its id and writes <file_id>_metadata.json.
    Put {
        path: PathBuf,
        #[arg(long)]
        replicas: Option<u32>,
        #[arg(long)]
        chunk_size: Option<u64>,
    },
    /// Download a file.
    Get {
        file_id: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// List files.
    Ls,
    /// Delete a file.
    Rm { file_id: String },
}

/// Runs `switchyard dfs <args>` against `NATS_URL`.
///
/// # Errors
/// Bad arguments, an unreachable service, or the command's own failure.
pub async fn cli(args: Vec<String>) -> anyhow::Result<()> {
    let url = std::env::var("NATS_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    if matches!(
        args.first().map(String::as_str),
        None | Some("-h" | "--help" | "help")
    ) {
        print!("{}", run(None, args, Path::new("."), false).await?);
        return Ok(());
    }
    let client = runtime::ctx::connect_nats(&url, "switchyard-dfs").await?;
    // The connection is made in the background: wait for the server's INFO (chunk sizes depend on
    // its max_payload).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while client.server_info().max_payload == 0 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "NATS at {url} is not reachable"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = run(Some(&client), args, Path::new("."), true).await;
    client.flush().await?;
    print!("{}", out?);
    Ok(())
}

/// Runs one `dfs` command on `client` and returns what it prints: `put` the file id, `get` a line
/// saying where the bytes went, `ls` one tab-separated line per file, `rm` a confirmation.
/// `put` writes `<file_id>_metadata.json` into `metadata_dir`.
///
/// # Errors
/// Bad arguments, an unreachable service, or the command's own failure.
pub async fn run(
    client: Option<&async_nats::Client>,
    args: Vec<String>,
    metadata_dir: &Path,
    progress: bool,
) -> anyhow::Result<String> {
    let cmd = match Cli::try_parse_from(std::iter::once("switchyard dfs".to_string()).chain(args)) {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => return Ok(e.to_string()),
        Err(e) => anyhow::bail!("{e}"),
    };
    let client = client.ok_or_else(|| anyhow::anyhow!("not connected"))?;
    Ok(match cmd {
        Cli::Put {
            path,
            replicas,
            chunk_size,
        } => {
            let options = PutOptions {
                replicas,
                chunk_size,
                metadata_dir: metadata_dir.to_path_buf(),
                progress,
            };
            format!("{}\n", put(client, &path, &options).await?)
        }
        Cli::Get { file_id, output } => {
            let info = get(client, &file_id, &output, progress).await?;
            format!("{} bytes written to {}\n", info.size, output.display())
        }
        Cli::Ls => ls(client)
            .await?
            .files
            .iter()
            .map(|f| {
                format!(
                    "{}\t{}\t{}\t{}\n",
                    f.file_id,
                    f.size,
                    f.committed_at.to_rfc3339(),
                    f.name
                )
            })
            .collect(),
        Cli::Rm { file_id } => {
            rm(client, &file_id).await?;
            format!("deleted {file_id}\n")
        }
    })
}
